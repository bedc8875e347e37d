//! The train worker's slots: each claims a TRAIN lease of a sub job and runs the trials the
//! sub job's advisor proposes until the advisor says the budget is spent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use duma_common::config::{OnnxSettings, PythonSettings, WorkerSettings};
use duma_common::db::models::Model;
use duma_common::db::train_jobs::{SubTrainJob, TrainJob};
use duma_common::db::trials::{self, SavedParams};
use duma_common::db::workers::{self, Lease};
use duma_common::db::{PgPool, datasets, models, train_jobs};
use duma_common::ops::Probe;
use duma_common::redis::events::Event;
use duma_common::redis::rpc::{RpcClient, RpcError};
use duma_common::store::ObjectStore;
use duma_common::worker::WorkerHost;
use duma_common::worker::gpus::{GpuGrant, Gpus};
use duma_domain::TrialLog;
use duma_domain::dependencies::Dependencies;
use duma_domain::protocol::{AdvisorReply, AdvisorRequest, TrialOutcome, advisor_target};
use duma_domain::{EarlyStopping, JobStatus, TrainJobId, TrialId, WorkerId};
use duma_runtime::python::KillSwitch;
use duma_runtime::sandbox::Devices;
use duma_runtime::{Template, TemplateResolver};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::early_stopping::MedianRule;
use crate::metrics::TrainMetrics;
use crate::train_and_val;
use duma_common::store::ObjectCache;

/// How long a train worker waits for its advisor's answer (milliseconds, normally): a reply lost
/// to a Redis restart is asked for again after this, and the advisor hands the same trial over.
const ADVISOR_TIMEOUT: Duration = Duration::from_secs(3);
/// Back-off when no advisor answers (none holds the sub job yet).
const ADVISOR_RETRY: Duration = Duration::from_millis(250);
/// Idle slots look for work at least this often, besides being woken by events.
pub(crate) const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// Environments waiting to be built ahead of their model's first trial; more are dropped (they
/// are then built at that trial, as without prebuilding): uploads cannot queue unbounded work.
const PREBUILDS_WAITING: usize = 8;
/// Back-off of a lease give-back that Postgres refused: from the first to the last.
const GIVE_BACK_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

pub struct TrainWorker {
    pub id: WorkerId,
    pub pool: PgPool,
    pub store: ObjectStore,
    pub rpc: RpcClient,
    pub settings: WorkerSettings,
    pub metrics: TrainMetrics,
    pub cache: ObjectCache,
    pub resolver: TemplateResolver,
    /// Woken when a train job is created.
    pub work_available: Notify,
    /// Woken when an evaluation is asked for.
    pub evaluations_available: Notify,
    /// Trials of one user running at once, platform-wide (`admin.quota_concurrent_trials`).
    trials_per_user: u32,
    cancellations: Mutex<HashMap<TrainJobId, CancellationToken>>,
    /// Dependency sets of uploaded models, for [`TrainWorker::run_prebuilds`].
    prebuilds: tokio::sync::mpsc::Sender<Dependencies>,
    prebuilds_waiting: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Dependencies>>,
    /// The GPUs this worker lends to trials (`train_worker.gpus`).
    gpus: Gpus,
    /// Slots claim one at a time, so the GPUs a claim counts free are still free when it takes
    /// them.
    claiming: tokio::sync::Mutex<()>,
}

/// What a slot needs to run trials of one sub job, loaded once per lease.
struct SubJobContext {
    sub_job: SubTrainJob,
    train_job: TrainJob,
    model: Model,
    template: Template,
    train_data: PathBuf,
    val_data: PathBuf,
}

enum Prepared {
    Ready(Box<SubJobContext>),
    /// The sub job or its train job ended meanwhile.
    Gone,
    /// The template cannot run (dependencies, import, knob config): the sub job is ERRORED.
    Failed(String),
}

enum TrialResult {
    Completed {
        score: f64,
        params: Vec<u8>,
        logs: Vec<TrialLog>,
    },
    Failed {
        error: String,
        logs: Vec<TrialLog>,
    },
    /// Stopped early (budget `EARLY_STOPPING`), scored with its last report.
    Stopped {
        score: f64,
        logs: Vec<TrialLog>,
    },
    Abandoned,
}

impl TrainWorker {
    pub fn new(
        host: &WorkerHost,
        store: ObjectStore,
        rpc: RpcClient,
        python: PythonSettings,
        onnx: OnnxSettings,
        trials_per_user: u32,
    ) -> anyhow::Result<Self> {
        let (id, pool, settings) = (host.id, host.pool.clone(), host.settings.clone());
        let metrics = TrainMetrics::register(&host.registry)?;
        let cache = ObjectCache::new(&settings.cache_dir.join("objects"), store.clone())?;
        let resolver = TemplateResolver::new(
            cache.clone(),
            &python,
            &onnx,
            settings.cache_dir.join("runners"),
        );
        let (prebuilds, prebuilds_waiting) = tokio::sync::mpsc::channel(PREBUILDS_WAITING);
        Ok(Self {
            id,
            pool,
            store,
            rpc,
            settings,
            metrics,
            cache,
            resolver,
            work_available: Notify::new(),
            evaluations_available: Notify::new(),
            trials_per_user,
            cancellations: Mutex::default(),
            prebuilds,
            prebuilds_waiting: tokio::sync::Mutex::new(prebuilds_waiting),
            gpus: host.gpus.clone(),
            claiming: tokio::sync::Mutex::new(()),
        })
    }

    /// Reacts to lifecycle events: new jobs wake idle slots, stopped jobs cancel their trials.
    pub fn on_event(&self, event: &Event) {
        match event {
            // After a re-subscription a creation may have been missed: idle slots look again.
            Event::TrainJobCreated { .. } => self.work_available.notify_waiters(),
            Event::EvaluationCreated => self.evaluations_available.notify_waiters(),
            Event::Resync => {
                self.work_available.notify_waiters();
                self.evaluations_available.notify_waiters();
            }
            Event::TrainJobStopped { train_job_id } => {
                if let Some(token) = self.lock_cancellations().remove(train_job_id) {
                    token.cancel();
                }
            }
            Event::ModelUploaded { dependencies }
                if self.prebuilds.try_send(dependencies.clone()).is_err() =>
            {
                self.metrics
                    .env_prebuilds
                    .with_label_values(&["dropped"])
                    .inc();
            }
            _ => {}
        }
    }

    /// Builds the environments of uploaded models one at a time, until `shutdown`: a model's
    /// first trial (or its first serving, on this host) then starts without installing anything.
    /// Every worker of a host hears the upload; the first to take the environment's install lock
    /// builds it and the others find it built.
    pub async fn run_prebuilds(&self, shutdown: CancellationToken) {
        let mut waiting = self.prebuilds_waiting.lock().await;
        loop {
            let dependencies = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = waiting.recv() => match next {
                    Some(dependencies) => dependencies,
                    None => return,
                },
            };
            let started = Instant::now();
            let venvs = self.resolver.venvs.clone();
            let build = tokio::task::spawn_blocking(move || venvs.interpreter(&dependencies));
            let built = tokio::select! {
                // An install under way finishes on its own; its lock keeps it whole.
                _ = shutdown.cancelled() => return,
                built = build => built,
            };
            let outcome = match built {
                Ok(Ok(_)) => {
                    tracing::info!(
                        seconds = started.elapsed().as_secs_f64(),
                        "environment ready"
                    );
                    "ready"
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "building an uploaded model's environment failed");
                    "failed"
                }
                Err(error) => {
                    tracing::warn!(%error, "the environment build panicked");
                    "failed"
                }
            };
            self.metrics
                .env_prebuilds
                .with_label_values(&[outcome])
                .inc();
        }
    }

    fn lock_cancellations(
        &self,
    ) -> parking_lot::MutexGuard<'_, HashMap<TrainJobId, CancellationToken>> {
        self.cancellations.lock()
    }

    fn cancellation(&self, job: TrainJobId, shutdown: &CancellationToken) -> CancellationToken {
        self.lock_cancellations()
            .entry(job)
            .or_insert_with(|| shutdown.child_token())
            .clone()
    }

    /// One slot: claim work, run it, repeat until shutdown. `probe` is beaten once per round and
    /// while a trial runs (each trial has its own deadline, `task_timeout_secs`).
    pub async fn run_slot(self: Arc<Self>, probe: &Probe, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            probe.beat();
            match self.claim().await {
                Ok(Some((lease, grant))) => {
                    let devices = Devices::lent(&self.gpus, &grant);
                    let worked = self.work_on(&lease, devices, probe, &shutdown).await;
                    // The GPUs go back with the lease.
                    drop(grant);
                    if let Err(error) = worked {
                        let reason = format!("the worker running this trial failed: {error:#}");
                        tracing::warn!(error = format!("{error:#}"), lease_id = %lease.id, "giving the lease back");
                        self.give_back(&lease, &reason, probe, &shutdown).await;
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.work_available.notified() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim work");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
            }
        }
    }

    /// Claims a TRAIN lease whose trials need no more GPUs than are free here, and takes them
    /// for as long as the lease is worked on.
    async fn claim(&self) -> anyhow::Result<Option<(Lease, GpuGrant)>> {
        let _turn = self.claiming.lock().await;
        let mut db = self.pool.get().await?;
        let claimed = workers::claim_train(
            &mut db,
            self.id,
            self.settings.lease_ttl(),
            self.trials_per_user,
            self.gpus.free_count(),
        )
        .await?;
        let Some(lease) = claimed else {
            return Ok(None);
        };
        let grant = match workers::gpus_needed(&db, &lease).await {
            Ok(needed) => self.gpus.take(needed).ok_or_else(|| {
                // Cannot happen while claims take turns.
                anyhow::anyhow!("the claim needed {needed} GPUs, more than are free here")
            }),
            Err(error) => Err(error.into()),
        };
        match grant {
            Ok(grant) => Ok(Some((lease, grant))),
            Err(error) => {
                // Never keep a lease nobody works on: the heartbeat would renew it for good.
                workers::release(&db, lease.id, self.id).await?;
                Err(error)
            }
        }
    }

    /// Gives back a lease whose work failed midway (its trial ERRORED with `reason`), retrying
    /// until Postgres takes it: the heartbeat keeps renewing a lease this worker holds, so one
    /// left behind would be served by nobody, for good. (A stopping worker deregisters instead.)
    async fn give_back(
        &self,
        lease: &Lease,
        reason: &str,
        probe: &Probe,
        shutdown: &CancellationToken,
    ) {
        let mut backoff = GIVE_BACK_RETRY.0;
        loop {
            probe.beat();
            let given = match self.pool.get().await {
                Ok(db) => workers::abandon(&db, lease, reason)
                    .await
                    .map_err(anyhow::Error::from),
                Err(error) => Err(error.into()),
            };
            match given {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), lease_id = %lease.id, "cannot give the lease back yet; retrying in {backoff:?}");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(GIVE_BACK_RETRY.1);
        }
    }

    /// The local copy of dataset `id` (cached by checksum).
    pub(crate) async fn dataset_file(
        &self,
        db: &impl duma_common::db::GenericClient,
        id: duma_domain::DatasetId,
    ) -> anyhow::Result<PathBuf> {
        let dataset = datasets::by_id(db, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("dataset {id} is gone"))?;
        self.cache
            .fetch(&dataset.store_path, &dataset.sha256, "")
            .await
    }

    async fn load_context(&self, lease: &Lease) -> anyhow::Result<Prepared> {
        let sub_id = lease
            .sub_train_job_id
            .ok_or_else(|| anyhow::anyhow!("TRAIN lease without a sub job"))?;
        let db = self.pool.get().await?;
        let Some(sub_job) = train_jobs::sub_job_by_id(&db, sub_id).await? else {
            return Ok(Prepared::Gone);
        };
        let Some(train_job) = train_jobs::by_id(&db, sub_job.train_job_id).await? else {
            return Ok(Prepared::Gone);
        };
        if !sub_job.status.is_live() || !train_job.status.is_live() {
            return Ok(Prepared::Gone);
        }
        let model = models::by_id(&db, sub_job.model_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("model vanished"))?;
        let (Some(train), Some(val)) = (train_job.train_dataset_id, train_job.val_dataset_id)
        else {
            return Ok(Prepared::Failed(
                "this version serves an uploaded model: there is nothing to train".to_owned(),
            ));
        };
        let train_data = self.dataset_file(&db, train).await?;
        let val_data = self.dataset_file(&db, val).await?;
        if train_job.metadata.is_none() && train_job.task.starts_with("TABULAR_") {
            let (path, args, task) = (
                train_data.clone(),
                train_job.train_args.clone(),
                train_job.task.clone(),
            );
            let read = tokio::task::spawn_blocking(move || {
                duma_runtime::tabular_metadata(&path, &args, &task)
            })
            .await?;
            // A dataset the trials will refuse in words is no reason to fail here.
            if let Ok(metadata) = read {
                train_jobs::record_metadata(&db, train_job.id, &metadata).await?;
            }
        }
        drop(db);
        let template = match self.template(&model).await? {
            Ok(template) => template,
            Err(reason) => return Ok(Prepared::Failed(reason)),
        };
        Ok(Prepared::Ready(Box::new(SubJobContext {
            sub_job,
            train_job,
            model,
            template,
            train_data,
            val_data,
        })))
    }

    /// The runnable template of a model; the first time an uploaded Python template is met, its
    /// knob config is read in Python and recorded for the advisor. `Err(reason)` when the
    /// template cannot run.
    async fn template(&self, model: &Model) -> anyhow::Result<Result<Template, String>> {
        let template = match self.resolver.resolve(&model.template_source()).await? {
            Ok(template) => template,
            Err(reason) => return Ok(Err(reason)),
        };
        if let (Template::Python(python), None) = (&template, &model.knob_config) {
            let reading = python.clone();
            let kill = KillSwitch::new();
            let switch = kill.clone();
            let read = tokio::task::spawn_blocking(move || reading.knob_config(&switch));
            // Importing the template runs its code: bounded like a trial.
            let Ok(read) = tokio::time::timeout(self.settings.task_timeout(), read).await else {
                kill.fire();
                return Ok(Err(format!(
                    "template {} did not give its knob config within the {}s timeout",
                    model.name, self.settings.task_timeout_secs
                )));
            };
            match read? {
                Ok(config) => {
                    let db = self.pool.get().await?;
                    models::set_knob_config(&db, model.id, &config).await?;
                    tracing::info!(
                        model = model.name,
                        knobs = config.0.len(),
                        "read the knob config of a Python template"
                    );
                }
                Err(error) => {
                    return Ok(Err(format!("template {} is invalid: {error}", model.name)));
                }
            }
        }
        Ok(Ok(template))
    }

    /// Runs trials of the lease's sub job until its advisor says it is done, the job stops, or
    /// the worker shuts down.
    async fn work_on(
        &self,
        lease: &Lease,
        devices: Devices,
        probe: &Probe,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        // Fetching datasets and building a template's virtualenv may take minutes.
        let context = match probe.hold(self.load_context(lease)).await? {
            Prepared::Ready(mut context) => {
                context.template = context.template.clone().with_devices(devices);
                context
            }
            Prepared::Gone => return self.leave(lease).await,
            Prepared::Failed(reason) => {
                tracing::warn!(sub_train_job_id = ?lease.sub_train_job_id, reason, "the template cannot run");
                if let Some(sub_job) = lease.sub_train_job_id {
                    let mut db = self.pool.get().await?;
                    train_jobs::end_sub_job(&mut db, sub_job, JobStatus::Errored, Some(&reason))
                        .await?;
                }
                return Ok(());
            }
        };
        let cancel = self.cancellation(context.train_job.id, shutdown);
        let target = advisor_target(context.sub_job.id);
        let propose = AdvisorRequest::Propose {
            worker_id: self.id,
            lease_id: Some(lease.id),
        };
        // The advisor logs its proposals under the lease they serve.
        let trace = lease.id;
        let mut last_trial_end: Option<Instant> = None;
        loop {
            probe.beat();
            if cancel.is_cancelled() {
                let db = self.pool.get().await?;
                workers::release(&db, lease.id, self.id).await?;
                return Ok(());
            }
            let reply = match self
                .rpc
                .call_json::<_, AdvisorReply>(&target, &propose, &trace, ADVISOR_TIMEOUT)
                .await
            {
                Ok(reply) => reply,
                Err(
                    RpcError::Timeout(_)
                    | RpcError::Expired
                    | RpcError::Unsent(_)
                    | RpcError::Unavailable(_),
                ) => {
                    // No advisor holds the sub job right now (one will take it over), or the
                    // sub job ended meanwhile.
                    self.pause(&cancel, ADVISOR_RETRY).await;
                    if !self.still_live(&context).await? {
                        return self.leave(lease).await;
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            match reply {
                AdvisorReply::Done => return self.leave(lease).await,
                AdvisorReply::Wait { retry_ms } => {
                    // Trials of other workers must finish first; the last one may end the sub job.
                    self.pause(&cancel, Duration::from_millis(retry_ms)).await;
                    if !self.still_live(&context).await? {
                        return self.leave(lease).await;
                    }
                }
                AdvisorReply::Ack => anyhow::bail!("the advisor acknowledged a proposal request"),
                AdvisorReply::Trial { trial_id, proposal } => {
                    if let Some(end) = last_trial_end {
                        self.metrics.trial_gap.observe(end.elapsed().as_secs_f64());
                    }
                    let outcome = self
                        .run_trial(&context, trial_id, &proposal, probe, &cancel)
                        .await?;
                    last_trial_end = Some(Instant::now());
                    if let Some(outcome) = outcome {
                        let feedback = AdvisorRequest::Feedback {
                            trial_id,
                            knobs: proposal.knobs,
                            outcome,
                        };
                        // Best effort: a restarted advisor rebuilds from the trial rows anyway.
                        if let Err(error) = self
                            .rpc
                            .call_json::<_, AdvisorReply>(
                                &target,
                                &feedback,
                                &trace,
                                ADVISOR_TIMEOUT,
                            )
                            .await
                        {
                            tracing::debug!(%error, "feedback not delivered");
                        }
                    }
                }
            }
        }
    }

    /// The sub job needs no more trials from this slot: its lease goes away.
    async fn leave(&self, lease: &Lease) -> anyhow::Result<()> {
        let db = self.pool.get().await?;
        workers::delete_lease(&db, lease.id, Some(self.id)).await?;
        Ok(())
    }

    async fn pause(&self, cancel: &CancellationToken, duration: Duration) {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(duration) => {}
        }
    }

    async fn still_live(&self, context: &SubJobContext) -> anyhow::Result<bool> {
        let db = self.pool.get().await?;
        Ok(train_jobs::sub_job_by_id(&db, context.sub_job.id)
            .await?
            .is_some_and(|s| s.status.is_live()))
    }

    /// Runs one trial and records its end; `None` if it was abandoned (job stopped).
    async fn run_trial(
        &self,
        context: &SubJobContext,
        trial_id: TrialId,
        proposal: &duma_domain::Proposal,
        probe: &Probe,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Option<TrialOutcome>> {
        let started = Instant::now();
        self.metrics.trials_started.inc();
        tracing::info!(%trial_id, trial_no = proposal.trial_no, model = context.model.name, "trial started");
        let result = self
            .train_and_evaluate(context, proposal, probe, cancel)
            .await;
        let db = self.pool.get().await?;
        let outcome = match result {
            TrialResult::Abandoned => {
                trials::mark_errored_because(&db, trial_id, "cancelled: the train job was stopped")
                    .await?;
                None
            }
            TrialResult::Completed {
                score,
                params,
                logs,
            } => {
                let stored = self
                    .store
                    .put_bytes(&format!("params/{trial_id}"), Bytes::from(params))
                    .await?;
                let saved = SavedParams {
                    path: stored.path.clone(),
                    sha256: stored.sha256,
                    size_bytes: i64::try_from(stored.size_bytes).unwrap_or(i64::MAX),
                };
                trials::insert_logs(&db, trial_id, &logs).await?;
                if trials::complete(&db, trial_id, Some(score), Some(&saved)).await? {
                    self.metrics.trials_completed.inc();
                    tracing::info!(%trial_id, score, seconds = started.elapsed().as_secs_f64(), "trial completed");
                    Some(TrialOutcome::Completed { score })
                } else {
                    // The trial was ended meanwhile (job stopped, lease lost): keep nothing.
                    self.store.delete(&stored.path).await?;
                    None
                }
            }
            TrialResult::Stopped { score, logs } => {
                trials::insert_logs(&db, trial_id, &logs).await?;
                if trials::stop(&db, trial_id, score).await? {
                    self.metrics.trials_stopped.inc();
                    tracing::info!(%trial_id, score, seconds = started.elapsed().as_secs_f64(), "trial stopped early");
                    Some(TrialOutcome::Stopped { score })
                } else {
                    None
                }
            }
            TrialResult::Failed { error, mut logs } => {
                self.metrics.trials_errored.inc();
                tracing::warn!(%trial_id, error, "trial errored");
                logs.push(TrialLog::message(&format!("error: {error}")));
                trials::insert_logs(&db, trial_id, &logs).await?;
                trials::mark_errored(&db, trial_id).await?;
                Some(TrialOutcome::Errored { error })
            }
        };
        self.metrics
            .trial_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    /// The intermediate scores the completed trials of the sub job reported.
    async fn completed_reports(
        &self,
        context: &SubJobContext,
    ) -> anyhow::Result<Vec<Vec<(f64, f64)>>> {
        let db = self.pool.get().await?;
        Ok(trials::reports_of_completed(&db, context.sub_job.id).await?)
    }

    /// The saved parameters of `trial`.
    async fn shared_params(&self, trial: TrialId) -> anyhow::Result<Vec<u8>> {
        let db = self.pool.get().await?;
        let saved = trials::by_id(&db, trial)
            .await?
            .and_then(|t| t.params)
            .ok_or_else(|| anyhow::anyhow!("they were not saved"))?;
        Ok(self.store.get_bytes(&saved.path).await?.to_vec())
    }

    async fn train_and_evaluate(
        &self,
        context: &SubJobContext,
        proposal: &duma_domain::Proposal,
        probe: &Probe,
        cancel: &CancellationToken,
    ) -> TrialResult {
        // Rafiki's SHARE_PARAMS: the parameters of the trial the advisor chose to start from.
        let shared_params = match proposal.shared_params_trial() {
            None => None,
            Some(trial) => match self.shared_params(trial).await {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    return TrialResult::Failed {
                        error: format!("the parameters of trial {trial} to start from: {error}"),
                        logs: Vec::new(),
                    };
                }
            },
        };
        // The median stopping rule, against this sub job's completed trials (the final train
        // of the best knobs always runs to the end).
        let early_stopping = match context.train_job.budget.early_stopping {
            EarlyStopping::Median if !proposal.is_final_train() => {
                match self.completed_reports(context).await {
                    Ok(curves) => Some(MedianRule::new(curves)),
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "no early stopping for this trial: the completed trials' reports"
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let template = context.template.clone();
        let kill = KillSwitch::new();
        let switch = kill.clone();
        let knobs = proposal.knobs.clone();
        let train_args = context.train_job.train_args.clone();
        let val_path = context.val_data.clone();
        let train_path = if proposal.trains_on_train_and_val() {
            let (train, val) = (context.train_data.clone(), val_path.clone());
            match tokio::task::spawn_blocking(move || train_and_val::joined(&train, &val)).await {
                Ok(Ok(path)) => path,
                Ok(Err(error)) => {
                    return TrialResult::Failed {
                        error,
                        logs: Vec::new(),
                    };
                }
                Err(panic) => {
                    return TrialResult::Failed {
                        error: format!("joining the train and validation datasets: {panic}"),
                        logs: Vec::new(),
                    };
                }
            }
        } else {
            context.train_data.clone()
        };
        let evaluate = proposal.to_eval;
        // Training is CPU-bound: a blocking thread. A cancelled or timed-out trial is abandoned
        // (its thread finishes in the background and its result is dropped).
        let work = tokio::task::spawn_blocking(move || {
            let mut log = duma_runtime::TrialLogger::new();
            if let Some(mut rule) = early_stopping {
                let stop = switch.clone();
                log.watch(move |payload| {
                    let (step, score) = duma_domain::report::parse(payload)?;
                    let reason = rule.report(step, score)?;
                    stop.fire();
                    Some(reason)
                });
            }
            let result = (|| {
                let mut model = template.build(&knobs, &switch)?;
                model.train_from(&train_path, &train_args, shared_params.as_deref(), &mut log)?;
                let score = if evaluate {
                    model.evaluate(&val_path, &mut log)?
                } else {
                    0.0
                };
                Ok::<_, duma_runtime::TemplateError>((score, model.dump_parameters()?))
            })();
            // Stopped early: scored with the report that stopped it, the last one kept.
            let stopped_at = log.stopped().and_then(|_| {
                log.records()
                    .iter()
                    .rev()
                    .filter(|r| r.kind == duma_domain::TrialLogKind::Metrics)
                    .find_map(|r| duma_domain::report::parse(&r.payload))
                    .map(|(_, score)| score)
            });
            let logs: Vec<TrialLog> = log.drain().into_iter().map(TrialLog::from).collect();
            (result, logs, stopped_at)
        });
        // The trial is bounded by its timeout: waiting for it is progress.
        let finished = probe.hold(async {
            tokio::select! {
                _ = cancel.cancelled() => None,
                _ = tokio::time::sleep(self.settings.task_timeout()) => Some(None),
                joined = work => Some(Some(joined)),
            }
        });
        match finished.await {
            None => {
                kill.fire();
                TrialResult::Abandoned
            }
            Some(None) => {
                kill.fire();
                TrialResult::Failed {
                    error: format!(
                        "the trial ran longer than the {}s timeout",
                        self.settings.task_timeout_secs
                    ),
                    logs: Vec::new(),
                }
            }
            Some(Some(joined)) => match joined {
                Ok((_, logs, Some(score))) => TrialResult::Stopped { score, logs },
                Ok((Ok((score, params)), logs, None)) if score.is_finite() => {
                    TrialResult::Completed {
                        score,
                        params,
                        logs,
                    }
                }
                Ok((Ok((score, _)), logs, None)) => TrialResult::Failed {
                    error: format!("evaluate returned {score}, not a finite number"),
                    logs,
                },
                Ok((Err(error), logs, None)) => TrialResult::Failed {
                    error: error.to_string(),
                    logs,
                },
                Err(panic) => TrialResult::Failed {
                    error: format!("the template panicked: {panic}"),
                    logs: Vec::new(),
                },
            },
        }
    }
}
