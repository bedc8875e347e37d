use serde::{Deserialize, Serialize};

use super::Knobs;

/// The key of [`Proposal::meta`] naming the trial whose parameters a trial starts from.
pub const SHARED_PARAMS_TRIAL: &str = "shared_params_trial_id";
/// The key of [`Proposal::meta`] saying what a trial is for (Rafiki's): `SEARCH` or
/// `FINAL_TRAIN` (the best knobs found, trained and evaluated in full: every policy off).
pub const PROPOSAL_TYPE: &str = "proposal_type";
pub const FINAL_TRAIN: &str = "FINAL_TRAIN";
pub const SEARCH: &str = "SEARCH";
/// The key of [`Proposal::meta`] naming the trial a final-train trial takes its knobs from.
pub const FINAL_TRAIN_OF: &str = "final_train_of_trial_id";
/// The key of [`Proposal::meta`] saying what a final-train trial trains on, when it is not the
/// train dataset alone: [`TRAIN_VAL`] (the budget's `FINAL_TRAIN`).
pub const TRAINED_ON: &str = "trained_on";
pub const TRAIN_VAL: &str = "TRAIN_VAL";

/// What an advisor proposes for one trial (Rafiki's `Proposal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// 1-based, unique within a sub train job.
    pub trial_no: u32,
    pub knobs: Knobs,
    /// Evaluate the trained model on the validation set.
    #[serde(default = "yes")]
    pub to_eval: bool,
    /// Keep the trained parameters (needed to serve the trial).
    #[serde(default = "yes")]
    pub to_save_params: bool,
    #[serde(default)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

impl Proposal {
    /// The trial whose saved parameters this one starts from (Rafiki's `SHARE_PARAMS`).
    pub fn shared_params_trial(&self) -> Option<crate::TrialId> {
        self.meta.get(SHARED_PARAMS_TRIAL)?.as_str()?.parse().ok()
    }

    /// Whether this trial trains the best knobs found in full (Rafiki's final train).
    pub fn is_final_train(&self) -> bool {
        self.meta
            .get(PROPOSAL_TYPE)
            .and_then(serde_json::Value::as_str)
            == Some(FINAL_TRAIN)
    }

    /// Whether this trial trains on the train and validation datasets together.
    pub fn trains_on_train_and_val(&self) -> bool {
        self.meta
            .get(TRAINED_ON)
            .and_then(serde_json::Value::as_str)
            == Some(TRAIN_VAL)
    }

    /// Marks this trial as `kind` (`SEARCH` or `FINAL_TRAIN`).
    pub fn set_type(&mut self, kind: &str) {
        self.meta.insert(
            PROPOSAL_TYPE.to_owned(),
            serde_json::Value::String(kind.to_owned()),
        );
    }

    /// Starts this trial from the parameters of `trial`.
    pub fn share_params_of(&mut self, trial: crate::TrialId) {
        self.meta.insert(
            SHARED_PARAMS_TRIAL.to_owned(),
            serde_json::Value::String(trial.to_string()),
        );
    }

    pub fn new(trial_no: u32, knobs: Knobs) -> Self {
        Self {
            trial_no,
            knobs,
            to_eval: true,
            to_save_params: true,
            meta: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KnobValue;

    #[test]
    fn proposal_round_trips_and_defaults_flags() {
        let mut knobs = Knobs::new();
        knobs.insert("lr".into(), KnobValue::Float(0.01));
        let proposal = Proposal::new(3, knobs);
        let json = serde_json::to_string(&proposal).unwrap();
        assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), proposal);
        let minimal: Proposal = serde_json::from_str(r#"{"trial_no":1,"knobs":{}}"#).unwrap();
        assert!(minimal.to_eval && minimal.to_save_params);
    }
}
