//! Knobs: the hyperparameter space of a model template (Rafiki's six knob types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One concrete knob value. JSON `1` is an integer and `1.0` a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KnobValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<KnobValue>),
}

/// Concrete values for every knob of a template, as proposed for one trial.
pub type Knobs = BTreeMap<String, KnobValue>;

/// Platform behaviours a template can opt into (Rafiki's `PolicyKnob`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Policy {
    EarlyStop,
    ShareParams,
    SkipTrain,
    QuickEval,
    Downscale,
}

/// The space one knob's values come from. Tags are the Python class names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Knob {
    #[serde(rename = "FixedKnob")]
    Fixed { value: KnobValue },
    #[serde(rename = "CategoricalKnob")]
    Categorical { values: Vec<KnobValue> },
    /// Integers in `[min, max]`; `is_exp` samples on a log scale.
    #[serde(rename = "IntegerKnob")]
    Integer {
        min: i64,
        max: i64,
        #[serde(default)]
        is_exp: bool,
    },
    /// Floats in `[min, max]`; `is_exp` samples on a log scale.
    #[serde(rename = "FloatKnob")]
    Float {
        min: f64,
        max: f64,
        #[serde(default)]
        is_exp: bool,
    },
    /// True when the platform applies the policy to this trial.
    #[serde(rename = "PolicyKnob")]
    Policy { policy: Policy },
    /// A model architecture: one list of choices per position.
    #[serde(rename = "ArchKnob")]
    Arch { items: Vec<Vec<KnobValue>> },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KnobError {
    #[error("knob `{knob}`: {reason}")]
    InvalidSpace { knob: String, reason: String },
    #[error("knob `{knob}` is missing a value")]
    Missing { knob: String },
    #[error("knob `{knob}` is not in the knob config")]
    Unknown { knob: String },
    #[error("knob `{knob}`: value {value} is outside its space")]
    OutOfSpace { knob: String, value: String },
}

/// A template's knob space: knob name → knob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KnobConfig(pub BTreeMap<String, Knob>);

impl KnobConfig {
    /// Checks that every space is non-empty and well-formed.
    pub fn validate(&self) -> Result<(), KnobError> {
        for (name, knob) in &self.0 {
            let invalid = |reason: &str| {
                Err(KnobError::InvalidSpace {
                    knob: name.clone(),
                    reason: reason.to_owned(),
                })
            };
            match knob {
                Knob::Categorical { values } if values.is_empty() => {
                    return invalid("a categorical knob needs at least one value");
                }
                Knob::Integer { min, max, is_exp } => {
                    if min > max {
                        return invalid("min is greater than max");
                    }
                    if *is_exp && *min <= 0 {
                        return invalid("a log-scale knob needs min > 0");
                    }
                }
                Knob::Float { min, max, is_exp } => {
                    if !(min.is_finite() && max.is_finite()) || min > max {
                        return invalid("min and max must be finite with min <= max");
                    }
                    if *is_exp && *min <= 0.0 {
                        return invalid("a log-scale knob needs min > 0");
                    }
                }
                Knob::Arch { items } if items.is_empty() || items.iter().any(Vec::is_empty) => {
                    return invalid("an arch knob needs at least one choice at every position");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// True when no knob leaves a choice to an advisor: only fixed and policy knobs.
    pub fn is_fixed(&self) -> bool {
        self.0
            .values()
            .all(|k| matches!(k, Knob::Fixed { .. } | Knob::Policy { .. }))
    }

    /// Checks that `knobs` holds exactly one value, within its space, for every knob.
    pub fn check(&self, knobs: &Knobs) -> Result<(), KnobError> {
        if let Some(unknown) = knobs.keys().find(|k| !self.0.contains_key(*k)) {
            return Err(KnobError::Unknown {
                knob: unknown.clone(),
            });
        }
        for (name, knob) in &self.0 {
            let value = knobs
                .get(name)
                .ok_or_else(|| KnobError::Missing { knob: name.clone() })?;
            let fits = match (knob, value) {
                (Knob::Fixed { value: fixed }, v) => fixed == v,
                (Knob::Categorical { values }, v) => values.contains(v),
                (Knob::Integer { min, max, .. }, KnobValue::Int(v)) => (min..=max).contains(&v),
                (Knob::Float { min, max, .. }, KnobValue::Float(v)) => (min..=max).contains(&v),
                (Knob::Float { min, max, .. }, KnobValue::Int(v)) => {
                    (min..=max).contains(&&(*v as f64))
                }
                (Knob::Policy { .. }, KnobValue::Bool(_)) => true,
                (Knob::Arch { items }, KnobValue::List(chosen)) => {
                    chosen.len() == items.len()
                        && chosen
                            .iter()
                            .zip(items)
                            .all(|(c, options)| options.contains(c))
                }
                _ => false,
            };
            if !fits {
                return Err(KnobError::OutOfSpace {
                    knob: name.clone(),
                    value: serde_json::to_string(value).unwrap_or_default(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> KnobConfig {
        serde_json::from_value(json!({
            "max_epochs": {"type": "FixedKnob", "value": 10},
            "kernel": {"type": "CategoricalKnob", "values": ["rbf", "linear"]},
            "depth": {"type": "IntegerKnob", "min": 2, "max": 16},
            "learning_rate": {"type": "FloatKnob", "min": 1e-5, "max": 1e-1, "is_exp": true},
            "early_stop": {"type": "PolicyKnob", "policy": "EARLY_STOP"},
            "cells": {"type": "ArchKnob", "items": [[1, 2], ["a", "b"]]},
        }))
        .unwrap()
    }

    #[test]
    fn knob_config_round_trips_through_json() {
        let config = sample();
        config.validate().unwrap();
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(serde_json::from_value::<KnobConfig>(json).unwrap(), config);
        assert!(!config.is_fixed());
    }

    #[test]
    fn values_are_checked_against_their_space() {
        let config = sample();
        let mut knobs: Knobs = serde_json::from_value(json!({
            "max_epochs": 10, "kernel": "rbf", "depth": 3, "learning_rate": 0.001,
            "early_stop": true, "cells": [2, "a"],
        }))
        .unwrap();
        config.check(&knobs).unwrap();
        knobs.insert("depth".into(), KnobValue::Int(17));
        assert!(matches!(
            config.check(&knobs),
            Err(KnobError::OutOfSpace { .. })
        ));
        knobs.remove("depth");
        assert_eq!(
            config.check(&knobs),
            Err(KnobError::Missing {
                knob: "depth".into()
            })
        );
    }

    #[test]
    fn malformed_spaces_are_rejected() {
        let bad: KnobConfig = serde_json::from_value(
            json!({"lr": {"type": "FloatKnob", "min": 0.0, "max": 1.0, "is_exp": true}}),
        )
        .unwrap();
        assert!(bad.validate().is_err());
        let fixed: KnobConfig = serde_json::from_value(json!({
            "a": {"type": "FixedKnob", "value": "x"},
            "p": {"type": "PolicyKnob", "policy": "SKIP_TRAIN"},
        }))
        .unwrap();
        assert!(fixed.is_fixed());
    }
}
