//! The route table: inference job → the RPC targets of its served trials. Cached in memory,
//! filled from Postgres on first use, and invalidated by lifecycle events — not read per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use duma_common::db::{PgPool, deployments, inference_jobs, prediction_keys, train_jobs};
use duma_common::redis::events::Event;
use duma_domain::InferenceJobId;
use duma_domain::protocol::serving_target;
use sha2::Digest;
use tokio::sync::Semaphore;

use duma_domain::ensemble::Combine;

/// Where one inference job's queries go.
pub struct Route {
    /// Best trial first.
    pub targets: Vec<String>,
    /// The train job's task: it decides how the trials' answers combine, and whether image
    /// uploads are taken.
    pub task: String,
    pub combine: Combine,
    /// Requests in flight for the job; a full bound answers 503 instead of queueing.
    pub in_flight: Arc<Semaphore>,
    /// SHA-256 digests of the app's prediction keys; empty when the app is open to anyone.
    pub key_digests: Vec<Vec<u8>>,
    /// The app version it serves.
    pub app_version: i32,
    /// Every served trial has a ready replica (the job is RUNNING), not only STARTED.
    pub running: bool,
    /// The Open Inference Protocol's `platform`: `onnxruntime_onnx`, or `duma_<template kind>`.
    pub platform: String,
    /// An ONNX model's tensors (`duma_runtime::onnx::Signature` as JSON), when the job serves
    /// one ONNX model.
    pub signature: Option<serde_json::Value>,
    /// What a trained tabular version takes and answers (`train_jobs.metadata`).
    pub metadata: Option<serde_json::Value>,
}

impl Route {
    /// Whether a request carrying `key` (if any) may use this route.
    pub fn admits(&self, key: Option<&str>) -> bool {
        if self.key_digests.is_empty() {
            return true;
        }
        key.is_some_and(|key| self.key_digests.contains(&prediction_keys::digest(key)))
    }
}

/// Where a deployment's traffic goes (`routes` of its row).
pub struct DeploymentRoutes {
    pub name: String,
    pub service_level: String,
    /// `(app version, inference job, percent)`; the percents sum to 100.
    pub primaries: Vec<(i32, InferenceJobId, u32)>,
    pub shadow: Option<(i32, InferenceJobId)>,
}

impl DeploymentRoutes {
    /// The version a request goes to: by its routing key when it has one (the same key always
    /// gets the same version while the weights stay), else at random, in proportion to the
    /// weights.
    pub fn choose(&self, routing_key: Option<&str>) -> (i32, InferenceJobId) {
        let bucket = match routing_key {
            Some(key) => {
                let digest = sha2::Sha256::digest(key.as_bytes());
                u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % 100
            }
            None => (uuid::Uuid::new_v4().as_u128() % 100) as u64,
        } as u32;
        let mut upto = 0;
        for (version, job, weight) in &self.primaries {
            upto += weight;
            if bucket < upto {
                return (*version, *job);
            }
        }
        let (version, job, _) = self.primaries[self.primaries.len() - 1];
        (version, job)
    }
}

pub struct RouteTable {
    pool: PgPool,
    max_in_flight: usize,
    routes: RwLock<HashMap<InferenceJobId, Arc<Route>>>,
    /// Which live job holds each of nginx's per-job ports (`admin.inference_job_ports`).
    ports: RwLock<HashMap<u16, InferenceJobId>>,
    deployments: RwLock<HashMap<String, CachedDeployment>>,
    /// Counts deployment changes heard: routes loaded while one came in are kept stale.
    deployment_changes: AtomicU64,
}

/// A deployment's routes as last loaded; `stale` once it changed.
struct CachedDeployment {
    routes: Arc<DeploymentRoutes>,
    stale: AtomicBool,
    /// A request is loading the new routes.
    reloading: Arc<AtomicBool>,
}

/// Held by the request reloading a deployment's routes: done or dropped, another may reload.
struct Reloading(Arc<AtomicBool>);

impl Drop for Reloading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl CachedDeployment {
    fn fresh(routes: Arc<DeploymentRoutes>) -> Self {
        Self {
            routes,
            stale: AtomicBool::new(false),
            reloading: Arc::default(),
        }
    }

    fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }
}

impl RouteTable {
    pub fn new(pool: PgPool, max_in_flight: usize) -> Self {
        Self {
            pool,
            max_in_flight,
            routes: RwLock::default(),
            ports: RwLock::default(),
            deployments: RwLock::default(),
            deployment_changes: AtomicU64::new(0),
        }
    }

    /// The routes of a deployment that serves; `None` if it does not exist or serves nothing yet.
    ///
    /// After a change the cached routes are stale but still served (the versions they name keep
    /// answering while they drain) until one request has loaded the new ones — with the routes of
    /// their inference jobs — so a switch costs one lookup, not one per request in flight.
    pub async fn deployment(&self, name: &str) -> anyhow::Result<Option<Arc<DeploymentRoutes>>> {
        let (stale, _reloading) = match self.deployments.read().get(name) {
            Some(cached) if !cached.stale.load(Ordering::Acquire) => {
                return Ok(Some(cached.routes.clone()));
            }
            // Another request is loading the new routes: keep serving these meanwhile.
            Some(cached) if cached.reloading.swap(true, Ordering::AcqRel) => {
                return Ok(Some(cached.routes.clone()));
            }
            // This request loads them; should it be cancelled midway, another one will.
            Some(cached) => (
                Some(cached.routes.clone()),
                Some(Reloading(cached.reloading.clone())),
            ),
            None => (None, None),
        };
        let changes = self.deployment_changes.load(Ordering::Acquire);
        let loaded = self.load_deployment(name).await;
        let mut cache = self.deployments.write();
        match loaded {
            Ok(Some(routes)) => {
                let cached = CachedDeployment::fresh(routes.clone());
                if self.deployment_changes.load(Ordering::Acquire) != changes {
                    // A change came in while loading: these may predate it.
                    cached.stale.store(true, Ordering::Release);
                }
                cache.insert(name.to_owned(), cached);
                Ok(Some(routes))
            }
            Ok(None) => {
                cache.remove(name);
                Ok(None)
            }
            Err(error) => match stale {
                Some(routes) => {
                    tracing::warn!(%error, "reloading a deployment failed; serving its last routes");
                    Ok(Some(routes))
                }
                None => Err(error),
            },
        }
    }

    async fn load_deployment(&self, name: &str) -> anyhow::Result<Option<Arc<DeploymentRoutes>>> {
        let deployment = {
            let db = self.pool.get().await?;
            deployments::by_name(&db, name).await?
        };
        let Some(deployment) = deployment else {
            return Ok(None);
        };
        let primaries: Vec<_> = deployment
            .routes
            .iter()
            .filter(|r| !r.shadow && r.weight > 0)
            .map(|r| (r.app_version, r.inference_job_id, r.weight))
            .collect();
        if primaries.is_empty() {
            return Ok(None);
        }
        // The versions' own routes, before any request needs them.
        for route in &deployment.routes {
            self.get(route.inference_job_id).await?;
        }
        Ok(Some(Arc::new(DeploymentRoutes {
            name: deployment.name.clone(),
            service_level: deployment.service_level.clone(),
            primaries,
            shadow: deployment
                .routes
                .iter()
                .find(|r| r.shadow)
                .map(|r| (r.app_version, r.inference_job_id)),
        })))
    }

    /// The live job that holds nginx's `port`, if any.
    pub async fn job_at_port(&self, port: u16) -> anyhow::Result<Option<InferenceJobId>> {
        if let Some(id) = self.ports.read().get(&port) {
            return Ok(Some(*id));
        }
        let db = self.pool.get().await?;
        let id = inference_jobs::live_at_port(&db, port).await?;
        if let Some(id) = id {
            self.ports.write().insert(port, id);
        }
        Ok(id)
    }

    /// The route of a live job; `None` if the job does not exist or is not STARTED/RUNNING.
    pub async fn get(&self, id: InferenceJobId) -> anyhow::Result<Option<Arc<Route>>> {
        if let Some(route) = self.routes.read().get(&id) {
            return Ok(Some(route.clone()));
        }
        let db = self.pool.get().await?;
        let Some(job) = inference_jobs::by_id(&db, id).await? else {
            return Ok(None);
        };
        if !job.status.is_live() {
            return Ok(None);
        }
        let (task, app_version, metadata) = train_jobs::by_id(&db, job.train_job_id)
            .await?
            .map(|train_job| (train_job.task, train_job.app_version, train_job.metadata))
            .unwrap_or_default();
        let (kind, signature) = inference_jobs::served_model_kind(&db, id).await?;
        let platform = match kind.as_deref() {
            Some("onnx") => "onnxruntime_onnx".to_owned(),
            Some(kind) => format!("duma_{kind}"),
            None => "duma".to_owned(),
        };
        let targets = inference_jobs::served_trials(&db, id)
            .await?
            .iter()
            .map(|t| serving_target(id, t.trial_id))
            .collect();
        let key_digests = prediction_keys::digests_for_inference_job(&db, id).await?;
        let route = Arc::new(Route {
            targets,
            combine: Combine::for_task(&task),
            task,
            in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
            key_digests,
            app_version,
            running: job.status == duma_domain::JobStatus::Running,
            platform,
            signature,
            metadata,
        });
        self.routes.write().insert(id, route.clone());
        Ok(Some(route))
    }

    pub fn on_event(&self, event: &Event) {
        let id = match event {
            Event::InferenceJobCreated { inference_job_id }
            | Event::InferenceJobChanged { inference_job_id }
            | Event::InferenceJobStopped { inference_job_id } => *inference_job_id,
            Event::Resync | Event::PredictionKeysChanged => return self.clear(),
            Event::DeploymentChanged { name } => {
                self.deployment_changes.fetch_add(1, Ordering::AcqRel);
                if let Some(cached) = self.deployments.read().get(name) {
                    cached.mark_stale();
                }
                return;
            }
            _ => return,
        };
        self.routes.write().remove(&id);
        // A stopped job's port may go to the next job created.
        self.ports.write().retain(|_, holder| *holder != id);
    }

    /// Forgets everything (events may have been missed).
    pub fn clear(&self) {
        self.routes.write().clear();
        self.ports.write().clear();
        self.deployment_changes.fetch_add(1, Ordering::AcqRel);
        for cached in self.deployments.read().values() {
            cached.mark_stale();
        }
    }
}
