//! The advisor of a config with nothing to choose: one proposal, then none.

use duma_domain::{Knob, KnobConfig, KnobError, Knobs};

use super::Advisor;
use super::space::Space;

/// Proposes the fixed values (policy knobs off) once; feedback for that trial, as when state is
/// rebuilt after a restart, also uses up the proposal.
#[derive(Debug, Clone)]
pub struct FixedAdvisor {
    proposal: Option<Knobs>,
}

impl FixedAdvisor {
    /// Fails when the config is invalid or leaves a choice (see [`KnobConfig::is_fixed`]).
    pub fn new(config: &KnobConfig) -> Result<Self, KnobError> {
        let chooses = |knob: &Knob| !matches!(knob, Knob::Fixed { .. } | Knob::Policy { .. });
        if let Some((name, _)) = config.0.iter().find(|(_, knob)| chooses(knob)) {
            return Err(KnobError::InvalidSpace {
                knob: name.clone(),
                reason: "the fixed advisor cannot choose a value".to_owned(),
            });
        }
        let space = Space::new(config)?;
        Ok(Self {
            proposal: Some(space.knobs(&[])),
        })
    }
}

impl Advisor for FixedAdvisor {
    fn propose(&mut self) -> Option<Knobs> {
        self.proposal.take()
    }

    fn feedback(&mut self, _: &Knobs, _: f64) {
        self.proposal = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use duma_domain::KnobValue;
    use serde_json::json;

    fn fixed_config() -> KnobConfig {
        serde_json::from_value(json!({
            "epochs": {"type": "FixedKnob", "value": 3},
            "optimizer": {"type": "FixedKnob", "value": "adam"},
            "early_stop": {"type": "PolicyKnob", "policy": "EARLY_STOP"},
        }))
        .unwrap()
    }

    #[test]
    fn proposes_the_fixed_values_exactly_once() {
        let config = fixed_config();
        let mut advisor = FixedAdvisor::new(&config).unwrap();
        let knobs = advisor.propose().unwrap();
        config.check(&knobs).unwrap();
        assert_eq!(knobs["epochs"], KnobValue::Int(3));
        assert_eq!(knobs["optimizer"], KnobValue::Str("adam".into()));
        assert_eq!(knobs["early_stop"], KnobValue::Bool(false));
        assert!(advisor.propose().is_none());
        advisor.feedback(&knobs, 0.9);
        assert!(advisor.propose().is_none());
    }

    #[test]
    fn a_rebuilt_advisor_has_nothing_left_to_propose() {
        let config = fixed_config();
        let mut first = FixedAdvisor::new(&config).unwrap();
        let knobs = first.propose().unwrap();
        let mut rebuilt = FixedAdvisor::new(&config).unwrap();
        rebuilt.feedback(&knobs, 0.5);
        assert!(rebuilt.propose().is_none());
    }

    #[test]
    fn a_config_with_choices_is_refused() {
        let config: KnobConfig = serde_json::from_value(json!({
            "epochs": {"type": "FixedKnob", "value": 3},
            "depth": {"type": "IntegerKnob", "min": 1, "max": 4},
        }))
        .unwrap();
        assert!(matches!(
            FixedAdvisor::new(&config),
            Err(KnobError::InvalidSpace { knob, .. }) if knob == "depth"
        ));
    }
}
