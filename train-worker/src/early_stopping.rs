//! The median stopping rule (Google Vizier's): a trial that reports intermediate scores
//! (`logger.report(score, step)`, see [`duma_domain::report`]) stops at a report when the best
//! score it has reported so far is below the median, over the COMPLETED trials of its sub job
//! that reached that step, of their running averages up to it. Never at a trial's first report,
//! and only once [`MIN_COMPLETED`] trials give the median: an unpromising trial ends early and
//! the time it would have taken goes to new trials.

/// Completed trials that must have reached a step before a trial can be stopped there.
pub const MIN_COMPLETED: usize = 3;
/// Reports a trial makes before it can be stopped.
pub const MIN_REPORTS: usize = 2;

/// One trial's view of the rule: the completed trials' curves, and its own reports so far.
#[derive(Debug, Clone)]
pub struct MedianRule {
    completed: Vec<Vec<(f64, f64)>>,
    reports: Vec<(f64, f64)>,
}

impl MedianRule {
    /// `completed`: each COMPLETED trial's reports, `(step, score)` in the order written.
    pub fn new(completed: Vec<Vec<(f64, f64)>>) -> Self {
        Self {
            completed,
            reports: Vec::new(),
        }
    }

    /// Takes a report; returns why the trial must stop, when it must.
    pub fn report(&mut self, step: f64, score: f64) -> Option<String> {
        self.reports.push((step, score));
        if self.reports.len() < MIN_REPORTS {
            return None;
        }
        let mut averages: Vec<f64> = self
            .completed
            .iter()
            .filter(|curve| curve.iter().any(|(s, _)| *s >= step))
            .filter_map(|curve| {
                let upto: Vec<f64> = curve
                    .iter()
                    .filter(|(s, _)| *s <= step)
                    .map(|(_, v)| *v)
                    .collect();
                (!upto.is_empty()).then(|| upto.iter().sum::<f64>() / upto.len() as f64)
            })
            .collect();
        if averages.len() < MIN_COMPLETED {
            return None;
        }
        averages.sort_by(f64::total_cmp);
        let n = averages.len();
        let median = (averages[(n - 1) / 2] + averages[n / 2]) / 2.0;
        let best = self
            .reports
            .iter()
            .map(|(_, v)| *v)
            .fold(f64::NEG_INFINITY, f64::max);
        (best < median).then(|| {
            format!(
                "stopped early at step {step}: its best intermediate score {best} is below \
                 {median}, the median of {n} completed trials' running averages at that step \
                 (budget EARLY_STOPPING: MEDIAN)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Curves that rise to `top` over steps 1..=5.
    fn rising(top: f64) -> Vec<(f64, f64)> {
        (1..=5)
            .map(|s| (f64::from(s), top * f64::from(s) / 5.0))
            .collect()
    }

    #[test]
    fn a_trial_behind_the_median_stops_and_one_ahead_goes_on() {
        let completed = vec![rising(0.8), rising(0.9), rising(1.0)];
        // Running averages at step 2: 0.24, 0.27, 0.30: the median is 0.27.
        let mut behind = MedianRule::new(completed.clone());
        assert_eq!(behind.report(1.0, 0.05), None, "never at the first report");
        let reason = behind.report(2.0, 0.1).expect("behind the median");
        assert!(
            reason.contains("step 2") && reason.contains("0.27"),
            "{reason}"
        );

        let mut ahead = MedianRule::new(completed);
        for step in 1..=5 {
            assert_eq!(ahead.report(f64::from(step), 0.3 * f64::from(step)), None);
        }
    }

    #[test]
    fn too_few_completed_trials_at_a_step_stop_nothing() {
        // Three completed trials, one of which never reached step 4.
        let short: Vec<(f64, f64)> = rising(1.0).into_iter().take(3).collect();
        let mut rule = MedianRule::new(vec![rising(0.8), rising(0.9), short]);
        rule.report(1.0, 0.0);
        assert_eq!(rule.report(4.0, 0.0), None, "only two reached step 4");
        let mut alone = MedianRule::new(Vec::new());
        alone.report(1.0, 0.0);
        assert_eq!(alone.report(2.0, 0.0), None);
    }
}
