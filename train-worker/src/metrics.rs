use prometheus::{Histogram, IntCounter, IntCounterVec, Registry};

/// What operators watch on a train worker.
#[derive(Clone)]
pub struct TrainMetrics {
    pub trials_started: IntCounter,
    pub trials_completed: IntCounter,
    pub trials_errored: IntCounter,
    /// Trials ended early by the budget's `EARLY_STOPPING` rule.
    pub trials_stopped: IntCounter,
    pub trial_duration: Histogram,
    /// Time between one trial's end and the next trial's start on the same slot.
    pub trial_gap: Histogram,
    /// Environments built ahead of a model's first trial, by outcome.
    pub env_prebuilds: IntCounterVec,
}

impl TrainMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            trials_started: prometheus::register_int_counter_with_registry!(
                "duma_trials_started_total",
                "Trials this worker started",
                registry
            )?,
            trials_completed: prometheus::register_int_counter_with_registry!(
                "duma_trials_completed_total",
                "Trials this worker completed",
                registry
            )?,
            trials_errored: prometheus::register_int_counter_with_registry!(
                "duma_trials_errored_total",
                "Trials that ended ERRORED on this worker",
                registry
            )?,
            trials_stopped: prometheus::register_int_counter_with_registry!(
                "duma_trials_stopped_early_total",
                "Trials this worker stopped early (budget EARLY_STOPPING)",
                registry
            )?,
            trial_duration: prometheus::register_histogram_with_registry!(
                "duma_trial_duration_seconds",
                "Wall time of a trial (data, train, evaluate, save)",
                prometheus::exponential_buckets(0.01, 2.5, 14)?,
                registry
            )?,
            trial_gap: prometheus::register_histogram_with_registry!(
                "duma_trial_gap_seconds",
                "Platform overhead: one trial's end to the next trial's start on a slot",
                prometheus::exponential_buckets(0.0005, 2.0, 16)?,
                registry
            )?,
            env_prebuilds: prometheus::register_int_counter_vec_with_registry!(
                "duma_python_env_prebuilds_total",
                "Python environments built when their model was uploaded, by outcome (ready: \
                 built or already there; failed; dropped: too many waiting)",
                &["outcome"],
                registry
            )?,
        })
    }
}
