//! A train job's budget, with Rafiki's keys and defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Trials per model; -1 means unlimited (then `TIME_HOURS` ends the job).
    #[serde(rename = "MODEL_TRIAL_COUNT", default = "unlimited")]
    pub model_trial_count: i64,
    /// Wall-clock hours from the job's start.
    #[serde(rename = "TIME_HOURS", default = "default_time_hours")]
    pub time_hours: f64,
    #[serde(rename = "GPU_COUNT", default)]
    pub gpu_count: i64,
}

fn unlimited() -> i64 {
    -1
}

fn default_time_hours() -> f64 {
    0.1
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            model_trial_count: unlimited(),
            time_hours: default_time_hours(),
            gpu_count: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid budget: {0}")]
pub struct BudgetError(pub String);

impl Budget {
    pub fn validate(&self) -> Result<(), BudgetError> {
        if self.model_trial_count == 0 || self.model_trial_count < -1 {
            return Err(BudgetError(
                "MODEL_TRIAL_COUNT must be positive or -1 (unlimited)".into(),
            ));
        }
        if !(self.time_hours.is_finite() && self.time_hours > 0.0) {
            return Err(BudgetError("TIME_HOURS must be a positive number".into()));
        }
        if self.gpu_count < 0 {
            return Err(BudgetError("GPU_COUNT must not be negative".into()));
        }
        Ok(())
    }

    /// `None` when the trial count is unlimited.
    pub fn trial_limit(&self) -> Option<u32> {
        u32::try_from(self.model_trial_count).ok()
    }

    pub fn time_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.time_hours * 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_keys_take_rafiki_defaults() {
        let budget: Budget = serde_json::from_value(json!({"MODEL_TRIAL_COUNT": 5})).unwrap();
        assert_eq!(
            budget,
            Budget {
                model_trial_count: 5,
                time_hours: 0.1,
                gpu_count: 0
            }
        );
        assert_eq!(budget.trial_limit(), Some(5));
        let json = serde_json::to_value(budget).unwrap();
        assert_eq!(
            json,
            json!({"MODEL_TRIAL_COUNT": 5, "TIME_HOURS": 0.1, "GPU_COUNT": 0})
        );
        assert_eq!(Budget::default().trial_limit(), None);
    }

    #[test]
    fn nonsense_is_rejected() {
        assert!(serde_json::from_value::<Budget>(json!({"TRIALS": 5})).is_err());
        let zero: Budget = serde_json::from_value(json!({"TIME_HOURS": 0})).unwrap();
        assert!(zero.validate().is_err());
        let negative: Budget = serde_json::from_value(json!({"MODEL_TRIAL_COUNT": -5})).unwrap();
        assert!(negative.validate().is_err());
    }
}
