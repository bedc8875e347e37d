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
    /// Whether trials that report intermediate scores may be stopped early (Duma's key; Rafiki
    /// has none). Left out of the JSON when it is the default, so Rafiki's budgets read back as
    /// they were given.
    #[serde(
        rename = "EARLY_STOPPING",
        default,
        skip_serializing_if = "EarlyStopping::is_default"
    )]
    pub early_stopping: EarlyStopping,
    /// Whether every sub job ends with its best knobs retrained on train+val (Duma's key; left
    /// out of the JSON when it is the default).
    #[serde(
        rename = "FINAL_TRAIN",
        default,
        skip_serializing_if = "FinalTrain::is_default"
    )]
    pub final_train: FinalTrain,
}

/// Which sub jobs end with a final train of their best knobs (every policy off), and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FinalTrain {
    /// Those whose template has a cheap-search policy (`EARLY_STOP`, `QUICK_EVAL`,
    /// `DOWNSCALE`), on the train dataset (Rafiki's).
    #[default]
    #[serde(rename = "AUTO")]
    Auto,
    /// Every sub job, on the train and validation datasets together (CSV datasets: `TABULAR_*`
    /// tasks). Scored on the validation dataset it trained on, so its score is optimistic; the
    /// trial says so in `proposal.meta.trained_on`.
    #[serde(rename = "TRAIN_VAL")]
    TrainVal,
}

impl FinalTrain {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How trials that report intermediate scores (`logger.report`) are stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EarlyStopping {
    /// The median stopping rule: a trial stops at a report when its best score so far is below
    /// the median of the running averages, up to that step, of at least three COMPLETED trials
    /// of its sub job that reached it (never at its first report).
    #[default]
    #[serde(rename = "MEDIAN")]
    Median,
    /// Every trial trains to the end.
    #[serde(rename = "OFF")]
    Off,
}

impl EarlyStopping {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// An inference job's budget (Rafiki's `InferenceBudgetOption`): only `GPU_COUNT`, the GPUs each
/// replica of each served trial gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceBudget {
    #[serde(rename = "GPU_COUNT", default)]
    pub gpu_count: i64,
}

impl InferenceBudget {
    pub fn validate(&self) -> Result<(), BudgetError> {
        validate_gpu_count(self.gpu_count)
    }
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
            early_stopping: EarlyStopping::default(),
            final_train: FinalTrain::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid budget: {0}")]
pub struct BudgetError(pub String);

/// The most trials a budget may ask for per model.
pub const MAX_MODEL_TRIAL_COUNT: i64 = 100_000;
/// The longest a train job may run: one year.
pub const MAX_TIME_HOURS: f64 = 8_760.0;
/// The most GPUs a trial or a served model may ask for (the most one machine holds).
pub const MAX_GPU_COUNT: i64 = 16;

fn validate_gpu_count(gpu_count: i64) -> Result<(), BudgetError> {
    if !(0..=MAX_GPU_COUNT).contains(&gpu_count) {
        return Err(BudgetError(format!(
            "GPU_COUNT must be from 0 to {MAX_GPU_COUNT}: the GPUs each trial or served model \
             gets, all on one worker"
        )));
    }
    Ok(())
}

impl Budget {
    /// The GPUs each trial needs (validated: 0 to [`MAX_GPU_COUNT`]).
    pub fn gpus(&self) -> u32 {
        u32::try_from(self.gpu_count).unwrap_or(0)
    }
}

impl InferenceBudget {
    /// The GPUs each served replica needs (validated: 0 to [`MAX_GPU_COUNT`]).
    pub fn gpus(&self) -> u32 {
        u32::try_from(self.gpu_count).unwrap_or(0)
    }
}

impl Budget {
    /// Checks the budget of a train job for `task`.
    pub fn validate_for(&self, task: &str) -> Result<(), BudgetError> {
        self.validate()?;
        if self.final_train == FinalTrain::TrainVal && !task.starts_with("TABULAR_") {
            return Err(BudgetError(format!(
                "FINAL_TRAIN TRAIN_VAL joins CSV datasets, those of TABULAR_* tasks; task {task} \
                 has other formats (use AUTO)"
            )));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), BudgetError> {
        if self.model_trial_count == 0
            || self.model_trial_count < -1
            || self.model_trial_count > MAX_MODEL_TRIAL_COUNT
        {
            return Err(BudgetError(format!(
                "MODEL_TRIAL_COUNT must be from 1 to {MAX_MODEL_TRIAL_COUNT}, or -1 (unlimited)"
            )));
        }
        if !(self.time_hours.is_finite()
            && self.time_hours > 0.0
            && self.time_hours <= MAX_TIME_HOURS)
        {
            return Err(BudgetError(format!(
                "TIME_HOURS must be a positive number of hours, at most {MAX_TIME_HOURS}"
            )));
        }
        validate_gpu_count(self.gpu_count)
    }

    /// `None` when the trial count is unlimited.
    pub fn trial_limit(&self) -> Option<u32> {
        u32::try_from(self.model_trial_count).ok()
    }

    /// The job's wall-clock limit. Saturates instead of panicking on a budget that was stored
    /// before [`Budget::validate`] bounded it.
    pub fn time_limit(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.time_hours * 3600.0)
            .unwrap_or(std::time::Duration::MAX)
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
                gpu_count: 0,
                early_stopping: EarlyStopping::Median,
                final_train: FinalTrain::Auto,
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
    fn early_stopping_is_median_unless_turned_off_and_shown_only_then() {
        let off: Budget = serde_json::from_value(json!({"EARLY_STOPPING": "OFF"})).unwrap();
        assert_eq!(off.early_stopping, EarlyStopping::Off);
        assert_eq!(serde_json::to_value(off).unwrap()["EARLY_STOPPING"], "OFF");
        let error = serde_json::from_value::<Budget>(json!({"EARLY_STOPPING": "ASHA"}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("MEDIAN") && error.contains("OFF"), "{error}");
    }

    #[test]
    fn a_final_train_on_train_and_val_is_for_tabular_tasks() {
        let budget: Budget = serde_json::from_value(json!({"FINAL_TRAIN": "TRAIN_VAL"})).unwrap();
        assert!(budget.validate_for("TABULAR_REGRESSION").is_ok());
        let error = budget.validate_for("IMAGE_CLASSIFICATION").unwrap_err().0;
        assert!(error.contains("TABULAR_"), "{error}");
        assert_eq!(
            serde_json::to_value(budget).unwrap()["FINAL_TRAIN"],
            "TRAIN_VAL"
        );
        assert!(
            serde_json::to_value(Budget::default())
                .unwrap()
                .get("FINAL_TRAIN")
                .is_none()
        );
    }

    #[test]
    fn an_inference_budget_has_gpu_count_only_within_bounds() {
        for gpus in [0, 2, MAX_GPU_COUNT] {
            let ok: InferenceBudget = serde_json::from_value(json!({"GPU_COUNT": gpus})).unwrap();
            assert!(ok.validate().is_ok());
            assert_eq!(i64::from(ok.gpus()), gpus);
        }
        assert!(
            serde_json::from_value::<InferenceBudget>(json!({"MODEL_TRIAL_COUNT": 1})).is_err()
        );
        for absurd in [-1, MAX_GPU_COUNT + 1] {
            let gpus: InferenceBudget =
                serde_json::from_value(json!({"GPU_COUNT": absurd})).unwrap();
            assert!(gpus.validate().unwrap_err().0.contains("GPU_COUNT"));
        }
    }

    #[test]
    fn nonsense_is_rejected() {
        assert!(serde_json::from_value::<Budget>(json!({"TRIALS": 5})).is_err());
        let zero: Budget = serde_json::from_value(json!({"TIME_HOURS": 0})).unwrap();
        assert!(zero.validate().is_err());
        let negative: Budget = serde_json::from_value(json!({"MODEL_TRIAL_COUNT": -5})).unwrap();
        assert!(negative.validate().is_err());
        for absurd in [
            json!({"TIME_HOURS": 1e10}),
            json!({"TIME_HOURS": 1e300}),
            json!({"MODEL_TRIAL_COUNT": 1_000_000_000_000_i64}),
            json!({"GPU_COUNT": 100_000}),
            json!({"GPU_COUNT": 17}),
            json!({"GPU_COUNT": -1}),
        ] {
            let budget: Budget = serde_json::from_value(absurd.clone()).unwrap();
            let err = budget.validate().unwrap_err();
            let key = absurd.as_object().unwrap().keys().next().unwrap().clone();
            assert!(err.0.contains(&key), "{absurd}: {err}");
        }
    }

    #[test]
    fn a_stored_absurd_time_limit_saturates_instead_of_panicking() {
        let budget = Budget {
            time_hours: 1e300,
            ..Budget::default()
        };
        assert_eq!(budget.time_limit(), std::time::Duration::MAX);
    }
}
