//! The admin: Duma's REST control plane (Rafiki's admin API).
//!
//! | module | what |
//! |---|---|
//! | [`routes`] | the route table |
//! | [`handlers`] | one module per resource |
//! | [`jobs`] | job operations several handlers share (find, stop) |
//! | [`auth`] | tokens, passwords, the [`auth::Caller`] extractor and role checks |
//! | [`params`] | Rafiki's merged parameters (JSON / form / query) |
//! | [`uploads`] | streamed multipart uploads and `dataset_url` downloads |
//! | `requests` | request bodies, as the OpenAPI document describes them |
//! | [`views`] | response bodies |
//! | [`openapi`] | the OpenAPI document, from the handlers' annotations |
//! | `quotas` | per-user limits on stored bytes and live jobs |
//! | errors | `duma_common::api_error`: the error table shared with the predictor |
//! | [`seed`] | superadmin and built-in models at start |
//! | [`reconciler`] | dead workers, expired leases, job status roll-up |

pub mod auth;
mod dashboard;
pub mod handlers;
pub mod jobs;
pub mod onnx_inspection;
pub mod openapi;
pub mod params;
mod prometheus_api;
mod quotas;
pub mod reconciler;
mod requests;
pub mod routes;
pub mod seed;
pub mod state;
pub mod uploads;
pub mod views;

use actix_web::dev::Server;
use actix_web::{HttpServer, web};
use duma_common::Settings;
use duma_common::ops::{self, Liveness, OpsData, Readiness};
use duma_common::redis::Redis;
use duma_common::store::ObjectStore;
use duma_common::tasks;
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// A reconciler tick that has not finished for this long fails `/health` and stops the admin.
const RECONCILER_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The admin server, bound and ready to run. Binding to port 0 picks a free port
/// ([`Application::port`] tells which), so tests never race for ports.
pub struct Application {
    server: Server,
    port: u16,
    reconciler: reconciler::Reconciler,
    reconcile_interval: std::time::Duration,
    liveness: Liveness,
}

impl Application {
    /// Connects to Postgres, Redis and the object store, seeds the superadmin and the built-in
    /// models, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate_secrets()?;
        let pool = duma_common::db::pool(&settings.database)?;
        let redis = Redis::connect(&settings.redis).await?;
        let store = ObjectStore::open(&settings.object_store).await?;
        seed::seed(&settings, &pool).await?;
        let listener = ops::listen(&settings.admin.host, settings.admin.port)?;
        let port = listener.local_addr()?.port();
        let registry = Registry::new();
        let drain = std::time::Duration::from_millis(settings.predictor.deadline_ms)
            + std::time::Duration::from_secs(1);
        let reconciler =
            reconciler::Reconciler::new(pool.clone(), redis.clone(), &registry, drain)?;
        let reconcile_interval =
            std::time::Duration::from_millis(settings.admin.reconcile_interval_ms);
        let liveness = Liveness::default();
        let ops = OpsData::new(
            registry,
            Readiness {
                postgres: Some(pool.clone()),
                redis: Some(redis.clone()),
                liveness: liveness.clone(),
                pending: Default::default(),
            },
        )?;
        let state = web::Data::new(AppState::new(settings, pool, redis, store));
        let server = HttpServer::new(move || {
            ops.clone()
                .app()
                .wrap(actix_web::middleware::from_fn(params::refuse_nul_in_path))
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            port,
            reconciler,
            reconcile_interval,
            liveness,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`; the HTTP server, the reconciler and the watchdog over the
    /// reconciler's progress are supervised together: if one ends, the admin stops.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "admin listening");
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        let server_stop = stop.clone();
        let server = self.server;
        tasks.spawn(async move {
            ops::stop_on(server, server_stop)
                .await
                .map_err(|e| e.context("http server"))
        });
        let probe = self.liveness.probe("reconciler", RECONCILER_STALL);
        let (reconciler, interval, reconcile_stop) =
            (self.reconciler, self.reconcile_interval, stop.clone());
        tasks.spawn(async move {
            reconciler.run(interval, &probe, reconcile_stop).await;
            Ok(())
        });
        tasks.spawn(tasks::watchdog(self.liveness, stop.clone()));
        tasks::supervise(tasks, stop).await
    }
}

/// Serves the admin until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}
