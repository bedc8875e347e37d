use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

/// What operators watch on a train worker.
#[derive(Clone)]
pub struct TrainMetrics {
    pub trials_started: IntCounter,
    pub trials_completed: IntCounter,
    pub trials_errored: IntCounter,
    pub trial_duration: Histogram,
    /// Time between one trial's end and the next trial's start on the same slot.
    pub trial_gap: Histogram,
}

impl TrainMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| -> prometheus::Result<Histogram> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        Ok(Self {
            trials_started: counter("duma_trials_started_total", "Trials this worker started")?,
            trials_completed: counter(
                "duma_trials_completed_total",
                "Trials this worker completed",
            )?,
            trials_errored: counter(
                "duma_trials_errored_total",
                "Trials that ended ERRORED on this worker",
            )?,
            trial_duration: histogram(
                "duma_trial_duration_seconds",
                "Wall time of a trial (data, train, evaluate, save)",
                prometheus::exponential_buckets(0.01, 2.5, 14)?,
            )?,
            trial_gap: histogram(
                "duma_trial_gap_seconds",
                "Platform overhead: one trial's end to the next trial's start on a slot",
                prometheus::exponential_buckets(0.0005, 2.0, 16)?,
            )?,
        })
    }
}
