//! The advisor of one sub train job: its budget, its trial numbering and the tuning state,
//! rebuilt from the trial rows whenever an advisor (re)takes the sub job.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use duma_common::db::models::Model;
use duma_common::db::train_jobs::{self, SubTrainJob, TrainJob};
use duma_common::db::trials::Trial;
use duma_common::db::{GenericClient, PgPool, models, trials, workers};
use duma_domain::FinalTrain as BudgetFinalTrain;
use duma_domain::proposal::{FINAL_TRAIN, FINAL_TRAIN_OF, SEARCH, TRAIN_VAL, TRAINED_ON};
use duma_domain::protocol::{AdvisorReply, TrialOutcome};
use duma_domain::{
    JobStatus, Knob, KnobConfig, KnobValue, LeaseId, Policy, Proposal, SubTrainJobId, TemplateKind,
    TrialId, TrialStatus, WorkerId,
};

use crate::advisor::{Advisor, AdvisorKind, advisor_kind, make_advisor};

/// This many trials failing in a row end the sub job as ERRORED.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;
/// What a worker is told when the budget is spent but trials are still in flight.
const RETRY_MS: u64 = 500;

pub struct SubJobAdvisor {
    pub lease_id: LeaseId,
    pub sub_job: SubTrainJob,
    pub train_job: TrainJob,
    model: Model,
    advisor: Box<dyn Advisor>,
    /// At most this many trials (budget, or 1 for fixed knobs); `None`: until the deadline.
    trial_limit: Option<u32>,
    deadline: DateTime<Utc>,
    next_no: u32,
    created: u32,
    in_flight: HashSet<TrialId>,
    /// The trial last handed to each slot (TRAIN lease), while it is in flight.
    handed: HashMap<LeaseId, (TrialId, Proposal)>,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// The template's `SHARE_PARAMS` policy knobs: set, with the best saved trial's parameters
    /// handed over, once one exists.
    share_params: Vec<String>,
    /// The template's `EARLY_STOP`, `QUICK_EVAL` and `DOWNSCALE` policy knobs (cheap search):
    /// set for search trials; the budget then ends with a final-train trial (Rafiki's), the best
    /// knobs trained and evaluated in full with them off.
    cheap_search: Vec<String>,
    /// The template's `SKIP_TRAIN` policy knobs, for templates that share parameters too: every
    /// other search trial, once shared parameters exist, evaluates them without training
    /// (Rafiki's ENAS evaluation trials).
    skip_train: Vec<String>,
    /// With a time budget only: when the final-train trial is due.
    final_from: DateTime<Utc>,
    /// The final-train trial, once proposed (the advisor's model never learns from it).
    final_trial: Option<TrialId>,
}

/// What taking a sub job over found.
pub enum Loaded {
    Ready(Box<SubJobAdvisor>),
    /// The sub job or its train job ended, or vanished.
    Gone,
    /// An uploaded template whose knob config a train worker has not read yet.
    AwaitingKnobConfig,
    /// The sub job cannot be advised; it becomes ERRORED with this reason.
    Unadvisable(String),
}

impl SubJobAdvisor {
    /// Loads a sub job and replays its trials into a fresh advisor.
    pub async fn load(
        db: &impl GenericClient,
        lease_id: LeaseId,
        sub_job_id: SubTrainJobId,
    ) -> anyhow::Result<Loaded> {
        let Some(sub_job) = train_jobs::sub_job_by_id(db, sub_job_id).await? else {
            return Ok(Loaded::Gone);
        };
        let Some(train_job) = train_jobs::by_id(db, sub_job.train_job_id).await? else {
            return Ok(Loaded::Gone);
        };
        if !sub_job.status.is_live() || !train_job.status.is_live() {
            return Ok(Loaded::Gone);
        }
        let model = models::by_id(db, sub_job.model_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("model vanished"))?;
        let config = match knob_config(&model) {
            Ok(config) => config,
            Err(loaded) => return Ok(loaded),
        };
        let kind = advisor_kind(&config);
        let history = trials::list_by_sub_job(db, sub_job_id).await?;
        // Seeded per sub job and history, so a replacement advisor does not replay the same
        // random sequence its predecessor already explored.
        let mut advisor = make_advisor(&config, seed(sub_job_id) ^ history.len() as u64);
        let trial_limit = match kind {
            AdvisorKind::Fixed => Some(1),
            _ => train_job.budget.trial_limit(),
        };
        let deadline = chrono::Duration::from_std(train_job.budget.time_limit())
            .ok()
            .and_then(|limit| train_job.datetime_started.checked_add_signed(limit))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let final_from = deadline
            - chrono::Duration::from_std(train_job.budget.time_limit() / 10).unwrap_or_default();
        let (mut next_no, mut consecutive_failures) = (1, 0);
        let mut in_flight = HashSet::new();
        let mut handed = HashMap::new();
        let mut final_trial = None;
        for trial in &history {
            next_no = next_no.max(u32::try_from(trial.no).unwrap_or(0) + 1);
            if trial.proposal.is_final_train() {
                final_trial = Some(trial.id);
                if !trial.status.is_finished() {
                    in_flight.insert(trial.id);
                    if let Some(lease) = trial.lease_id {
                        handed.insert(lease, (trial.id, trial.proposal.clone()));
                    }
                }
                continue;
            }
            match trial.status {
                // A trial stopped early is scored with its last report: the advisor learns it
                // like a completed one (it was stopped for being behind, and its score says so).
                TrialStatus::Completed | TrialStatus::Stopped => {
                    if let Some(score) = trial.score {
                        advisor.feedback(&trial.proposal.knobs, score);
                    }
                    consecutive_failures = 0;
                }
                TrialStatus::Errored => consecutive_failures += 1,
                TrialStatus::Pending | TrialStatus::Running => {
                    advisor.resume(&trial.proposal.knobs);
                    in_flight.insert(trial.id);
                    if let Some(lease) = trial.lease_id {
                        handed.insert(lease, (trial.id, trial.proposal.clone()));
                    }
                }
            }
        }
        let created = u32::try_from(history.len()).unwrap_or(u32::MAX);
        // The final train is the last trial: nothing follows it.
        let trial_limit = if final_trial.is_some() {
            Some(created)
        } else {
            trial_limit
        };
        // The fixed advisor proposes once in its life: a replayed trial was that proposal.
        if kind == AdvisorKind::Fixed && created > 0 {
            let _ = advisor.propose();
        }
        let state = Self {
            lease_id,
            sub_job,
            train_job,
            model,
            advisor,
            trial_limit,
            deadline,
            next_no,
            created,
            in_flight,
            handed,
            consecutive_failures,
            last_error: None,
            share_params: policy_knobs(&config, Policy::ShareParams),
            cheap_search: [Policy::EarlyStop, Policy::QuickEval, Policy::Downscale]
                .into_iter()
                .flat_map(|policy| policy_knobs(&config, policy))
                .collect(),
            skip_train: policy_knobs(&config, Policy::SkipTrain),
            final_from,
            final_trial,
        };
        tracing::info!(sub_train_job_id = %sub_job_id, trials = state.created, ?kind, "advising sub job");
        Ok(Loaded::Ready(Box::new(state)))
    }

    fn budget_spent(&self) -> bool {
        self.trial_limit.is_some_and(|limit| self.created >= limit) || Utc::now() >= self.deadline
    }

    /// Handles a request for the next trial from the slot of `worker_id` holding `lease_id`.
    pub async fn propose(
        &mut self,
        pool: &PgPool,
        worker_id: WorkerId,
        lease_id: Option<LeaseId>,
    ) -> anyhow::Result<AdvisorReply> {
        if let Some(lease) = lease_id
            && let Some(reply) = self.hand_over_again(pool, lease).await?
        {
            return Ok(reply);
        }
        if self.budget_spent() {
            return Ok(self.spent_reply());
        }
        let db = pool.get().await?;
        let proposal = match self.final_train(&db).await? {
            FinalTrain::Wait => return Ok(AdvisorReply::Wait { retry_ms: RETRY_MS }),
            FinalTrain::Propose(proposal) => proposal,
            FinalTrain::NotNow => {
                let Some(knobs) = self.advisor.propose() else {
                    self.trial_limit = Some(self.created);
                    return Ok(self.spent_reply());
                };
                self.search_proposal(&db, knobs).await?
            }
        };
        let trial = match trials::insert_running(
            &db,
            self.sub_job.id,
            self.model.id,
            Some(worker_id),
            lease_id,
            &proposal,
        )
        .await
        {
            Ok(Some(trial)) => trial,
            // The job was stopped meanwhile: no more trials.
            Ok(None) => {
                self.trial_limit = Some(self.created);
                return Ok(self.spent_reply());
            }
            Err(e) if e.is_duplicate_of(trials::NUMBER_TAKEN) => {
                // Another advisor numbered trials meanwhile (a lease handover): resync and retry.
                let taken = trials::list_by_sub_job(&db, self.sub_job.id).await?;
                self.next_no = taken
                    .iter()
                    .map(|t| u32::try_from(t.no).unwrap_or(0))
                    .max()
                    .unwrap_or(0)
                    + 1;
                self.created = u32::try_from(taken.len()).unwrap_or(u32::MAX);
                return Ok(AdvisorReply::Wait { retry_ms: 0 });
            }
            Err(e) => return Err(e.into()),
        };
        self.next_no += 1;
        self.created += 1;
        self.in_flight.insert(trial.id);
        if proposal.is_final_train() {
            self.final_trial = Some(trial.id);
        }
        if let Some(lease) = lease_id {
            self.handed.insert(lease, (trial.id, proposal.clone()));
        }
        if self.sub_job.status == JobStatus::Started {
            if let Some(sub) =
                train_jobs::set_sub_job_status(&db, self.sub_job.id, JobStatus::Running, None)
                    .await?
            {
                self.sub_job = sub;
            }
            let mut db = db;
            let tx = db.transaction().await?;
            train_jobs::roll_up(&tx, self.train_job.id).await?;
            tx.commit().await?;
        }
        Ok(AdvisorReply::Trial {
            trial_id: trial.id,
            proposal,
        })
    }

    /// A search trial of `knobs`: the cheap-search policies (`EARLY_STOP`, `QUICK_EVAL`,
    /// `DOWNSCALE`) on where the template has them; with `SHARE_PARAMS` (Rafiki's GLOBAL_BEST)
    /// the parameters of the best trial so far to start from, and then, every other trial,
    /// `SKIP_TRAIN` on: those parameters evaluated with the new knobs, untrained.
    async fn search_proposal(
        &self,
        db: &impl GenericClient,
        knobs: duma_domain::Knobs,
    ) -> anyhow::Result<Proposal> {
        let mut proposal = Proposal::new(self.next_no, knobs);
        if !self.cheap_search.is_empty() {
            for name in &self.cheap_search {
                proposal.knobs.insert(name.clone(), KnobValue::Bool(true));
            }
            proposal.set_type(SEARCH);
        }
        if !self.share_params.is_empty()
            && let Some(best) = trials::best_with_params(db, self.sub_job.id).await?
        {
            for name in &self.share_params {
                proposal.knobs.insert(name.clone(), KnobValue::Bool(true));
            }
            proposal.share_params_of(best.id);
            if self.next_no.is_multiple_of(2) {
                for name in &self.skip_train {
                    proposal.knobs.insert(name.clone(), KnobValue::Bool(true));
                }
            }
        }
        Ok(proposal)
    }

    /// Rafiki's final train, for templates with a cheap-search policy, and for every template
    /// when the budget's `FINAL_TRAIN` is `TRAIN_VAL` (then on train+val): the budget's last
    /// trial (or, with a time budget only, the first proposal in its last tenth) trains the best
    /// knobs found so far with every policy off, once every search trial has ended.
    async fn final_train(&mut self, db: &impl GenericClient) -> anyhow::Result<FinalTrain> {
        let on_train_and_val = self.train_job.budget.final_train == BudgetFinalTrain::TrainVal;
        if (self.cheap_search.is_empty() && !on_train_and_val) || self.final_trial.is_some() {
            return Ok(FinalTrain::NotNow);
        }
        let due = match self.trial_limit {
            Some(limit) => self.created + 1 == limit,
            None => Utc::now() >= self.final_from,
        };
        if !due {
            return Ok(FinalTrain::NotNow);
        }
        if !self.in_flight.is_empty() {
            return Ok(FinalTrain::Wait);
        }
        let Some(best) = trials::best_with_params(db, self.sub_job.id).await? else {
            return Ok(FinalTrain::NotNow); // nothing scored yet: search on
        };
        let mut proposal = Proposal::new(self.next_no, best.proposal.knobs.clone());
        for name in self
            .cheap_search
            .iter()
            .chain(&self.share_params)
            .chain(&self.skip_train)
        {
            proposal.knobs.insert(name.clone(), KnobValue::Bool(false));
        }
        proposal.set_type(FINAL_TRAIN);
        proposal.meta.insert(
            FINAL_TRAIN_OF.to_owned(),
            serde_json::Value::String(best.id.to_string()),
        );
        if on_train_and_val {
            proposal.meta.insert(
                TRAINED_ON.to_owned(),
                serde_json::Value::String(TRAIN_VAL.to_owned()),
            );
        }
        // Nothing follows it.
        self.trial_limit = Some(self.created + 1);
        Ok(FinalTrain::Propose(proposal))
    }

    /// The trial last handed to the slot holding `lease`, if it is still RUNNING: a slot asks
    /// only when it runs nothing, so that trial's reply was lost on the way (Redis restarted, or
    /// the advisor died before replying) and the slot gets the same trial again — left alone,
    /// it would stay RUNNING under a live worker, and the sub job would wait for it for good.
    async fn hand_over_again(
        &mut self,
        pool: &PgPool,
        lease: LeaseId,
    ) -> anyhow::Result<Option<AdvisorReply>> {
        let Some((trial_id, proposal)) = self.handed.remove(&lease) else {
            return Ok(None);
        };
        if !self.in_flight.contains(&trial_id) {
            return Ok(None);
        }
        let db = pool.get().await?;
        let still_running = trials::by_id(&db, trial_id)
            .await?
            .is_some_and(|t| t.status == TrialStatus::Running);
        if !still_running {
            return Ok(None); // it ended; `reconcile` learns how
        }
        tracing::info!(sub_train_job_id = %self.sub_job.id, %trial_id, lease_id = %lease, "handing a trial over again: its slot never received it");
        self.handed.insert(lease, (trial_id, proposal.clone()));
        Ok(Some(AdvisorReply::Trial { trial_id, proposal }))
    }

    fn spent_reply(&self) -> AdvisorReply {
        if self.in_flight.is_empty() {
            AdvisorReply::Done
        } else {
            AdvisorReply::Wait { retry_ms: RETRY_MS }
        }
    }

    /// Learns from a finished trial.
    pub fn feedback(
        &mut self,
        trial_id: TrialId,
        knobs: &duma_domain::Knobs,
        outcome: &TrialOutcome,
    ) {
        if let TrialOutcome::Errored { error } = outcome {
            self.last_error = Some(error.clone());
        }
        if !self.in_flight.remove(&trial_id) {
            return; // already accounted for (by `reconcile`, a replay or a duplicate)
        }
        // The final train is no search point: the advisor's model never held it.
        let searched = self.final_trial != Some(trial_id);
        match outcome {
            TrialOutcome::Completed { score } | TrialOutcome::Stopped { score } => {
                if searched {
                    self.advisor.feedback(knobs, *score);
                }
                self.consecutive_failures = 0;
            }
            TrialOutcome::Errored { .. } => {
                if searched {
                    self.advisor.abandon(knobs);
                }
                self.consecutive_failures += 1;
            }
        }
    }

    /// Re-reads the trials in flight (some may have been ended by a stop or a lost worker) and
    /// ends the sub job when it is done. Returns false when this advisor should drop it.
    pub async fn reconcile(&mut self, pool: &PgPool) -> anyhow::Result<bool> {
        let db = pool.get().await?;
        let Some(sub_job) = train_jobs::sub_job_by_id(&db, self.sub_job.id).await? else {
            return Ok(false);
        };
        if !sub_job.status.is_live() {
            return Ok(false);
        }
        if !self.in_flight.is_empty() {
            // A trial's row is written before its feedback is sent, so a finished trial is often
            // seen here first: its outcome is learnt here, and the feedback that follows finds
            // nothing in flight and is ignored — each outcome is learnt exactly once.
            let rows: HashMap<TrialId, Trial> = trials::list_by_sub_job(&db, self.sub_job.id)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect();
            let finished: Vec<TrialId> = self
                .in_flight
                .iter()
                .filter(|id| rows.get(id).is_none_or(|t| t.status.is_finished()))
                .copied()
                .collect();
            let holders = if finished.is_empty() {
                HashSet::new()
            } else {
                workers::holders_of_sub_job(&db, self.sub_job.id).await?
            };
            for id in finished {
                let Some(trial) = rows.get(&id) else {
                    // The row vanished (the job was deleted): nothing to learn.
                    self.in_flight.remove(&id);
                    continue;
                };
                match (trial.status, trial.score) {
                    (TrialStatus::Completed, Some(score)) => {
                        let outcome = TrialOutcome::Completed { score };
                        self.feedback(id, &trial.proposal.knobs, &outcome);
                    }
                    (TrialStatus::Stopped, Some(score)) => {
                        let outcome = TrialOutcome::Stopped { score };
                        self.feedback(id, &trial.proposal.knobs, &outcome);
                    }
                    (TrialStatus::Errored, _) => {
                        self.in_flight.remove(&id);
                        self.advisor.abandon(&trial.proposal.knobs);
                        // A worker that still holds a lease of this sub job saw the template
                        // fail. A trial whose worker died (its lease was reclaimed with it) failed
                        // through the platform's fault, not the model's: it does not count.
                        if trial.worker_id.is_some_and(|w| holders.contains(&w)) {
                            self.consecutive_failures += 1;
                        }
                    }
                    _ => {
                        self.in_flight.remove(&id);
                        self.advisor.abandon(&trial.proposal.knobs);
                    }
                }
            }
        }
        drop(db);
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            let reason = format!(
                "{} trials in a row failed; last error: {}",
                self.consecutive_failures,
                self.last_error.as_deref().unwrap_or("see the trials' logs")
            );
            self.finish(pool, JobStatus::Errored, Some(&reason)).await?;
            return Ok(false);
        }
        if self.budget_spent() && self.in_flight.is_empty() {
            self.finish(pool, JobStatus::Stopped, None).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Ends the sub job, removes its leases, and rolls its status up to the train job.
    pub async fn finish(
        &self,
        pool: &PgPool,
        status: JobStatus,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut db = pool.get().await?;
        train_jobs::end_sub_job(&mut db, self.sub_job.id, status, error).await?;
        tracing::info!(sub_train_job_id = %self.sub_job.id, %status, trials = self.created, "sub job ended");
        Ok(())
    }
}

/// The knob space of a model: the one recorded with it (uploads, or a built-in template whose
/// knobs were pinned), else the built-in template's own.
/// Whether the budget's final-train trial is due now.
enum FinalTrain {
    /// Not due (no cheap-search policy, already proposed, budget left, or nothing scored yet).
    NotNow,
    /// Due once the search trials in flight end.
    Wait,
    Propose(Proposal),
}

/// The names of the policy knobs of `config` for `policy`.
fn policy_knobs(config: &KnobConfig, policy: Policy) -> Vec<String> {
    config
        .0
        .iter()
        .filter(|(_, knob)| matches!(knob, Knob::Policy { policy: p } if *p == policy))
        .map(|(name, _)| name.clone())
        .collect()
}

fn knob_config(model: &Model) -> Result<KnobConfig, Loaded> {
    let config = match (&model.knob_config, model.template_kind) {
        (Some(config), _) => config.clone(),
        (None, TemplateKind::Native) => duma_runtime::builtin_template(&model.model_class)
            .map(|t| t.knob_config())
            .ok_or_else(|| {
                Loaded::Unadvisable(format!("no built-in template `{}`", model.model_class))
            })?,
        (None, TemplateKind::Python) => return Err(Loaded::AwaitingKnobConfig),
        (None, TemplateKind::Onnx) => {
            return Err(Loaded::Unadvisable(format!(
                "{} is an ONNX model: it can be served, not trained",
                model.name
            )));
        }
    };
    config
        .validate()
        .map_err(|e| Loaded::Unadvisable(format!("invalid knob config of {}: {e}", model.name)))?;
    Ok(config)
}

/// The part of an advisor's seed that comes from its sub job (`load` mixes in the number of trials
/// already made, so a replacement advisor does not replay its predecessor's sequence).
fn seed(id: SubTrainJobId) -> u64 {
    let bytes = id.0.as_bytes();
    u64::from_le_bytes(bytes[8..16].try_into().unwrap_or([0; 8]))
}
