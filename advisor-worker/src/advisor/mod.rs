//! Hyperparameter advisors: they propose knob values for the trials of a sub train job and learn
//! from the scores the trials achieve (higher is better).
//!
//! | advisor | for | how |
//! |---|---|---|
//! | [`FixedAdvisor`] | only fixed and policy knobs | one proposal, then none |
//! | [`BayesianAdvisor`] | numeric, categorical and arch knobs | Gaussian process + expected improvement |
//!
//! [`make_advisor`] picks one. [`RandomAdvisor`] (uniform sampling) is the floor the
//! benchmark measures the Bayesian advisor against. Every advisor is deterministic for a given
//! seed, works in the unit hypercube of the knob space (see `space`), and proposes only knobs that
//! pass [`KnobConfig::check`]. `scripts/bench-advisor` measures the Bayesian advisor against
//! random search.

mod bayesian;
mod fixed;
mod gp;
mod normal;
mod random;
mod space;

use duma_domain::{KnobConfig, Knobs};

pub use bayesian::BayesianAdvisor;
pub use fixed::FixedAdvisor;
pub use random::RandomAdvisor;

/// Proposes knob values and learns from scores (higher is better).
pub trait Advisor: Send + Sync {
    /// The next knobs to try; None when this advisor has nothing more to propose (the fixed
    /// advisor after its one proposal).
    fn propose(&mut self) -> Option<Knobs>;
    /// The score a proposal achieved. Called for past trials too when state is rebuilt after a
    /// restart.
    fn feedback(&mut self, knobs: &Knobs, score: f64);
    /// A proposal that will never be scored (its trial errored): it no longer counts as in
    /// flight.
    fn abandon(&mut self, _knobs: &Knobs) {}
    /// A proposal made before a restart whose trial still runs: it counts as in flight, as if
    /// this advisor had just proposed it.
    fn resume(&mut self, _knobs: &Knobs) {}
}

/// Which advisor a knob config gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisorKind {
    Fixed,
    Bayesian,
}

/// Only fixed and policy knobs → Fixed (exactly one proposal); anything else → Bayesian. Each
/// position of an arch knob is a categorical coordinate of the GP (Rafiki searched them with
/// ENAS; uniform random search was Duma's stand-in until the Bayesian advisor beat it on the
/// arch problem of `scripts/bench-advisor`).
pub fn advisor_kind(config: &KnobConfig) -> AdvisorKind {
    if config.is_fixed() {
        AdvisorKind::Fixed
    } else {
        AdvisorKind::Bayesian
    }
}

/// The advisor [`advisor_kind`] picks, seeded with `seed`.
///
/// Templates are validated on upload; a config that fails [`KnobConfig::validate`] anyway gets an
/// advisor that proposes nothing.
pub fn make_advisor(config: &KnobConfig, seed: u64) -> Box<dyn Advisor> {
    let advisor: Result<Box<dyn Advisor>, _> = match advisor_kind(config) {
        AdvisorKind::Fixed => FixedAdvisor::new(config).map(|a| Box::new(a) as _),
        AdvisorKind::Bayesian => BayesianAdvisor::new(config, seed).map(|a| Box::new(a) as _),
    };
    advisor.unwrap_or_else(|error| {
        tracing::warn!(%error, "invalid knob config: the advisor proposes nothing");
        Box::new(NothingToPropose)
    })
}

struct NothingToPropose;

impl Advisor for NothingToPropose {
    fn propose(&mut self) -> Option<Knobs> {
        None
    }

    fn feedback(&mut self, _: &Knobs, _: f64) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::space::tests::all_kinds;
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> KnobConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn fixed_spaces_get_one_proposal_and_every_other_the_bayesian_advisor() {
        let fixed = parse(json!({
            "epochs": {"type": "FixedKnob", "value": 3},
            "skip": {"type": "PolicyKnob", "policy": "SKIP_TRAIN"},
        }));
        assert_eq!(advisor_kind(&fixed), AdvisorKind::Fixed);
        assert_eq!(advisor_kind(&KnobConfig::default()), AdvisorKind::Fixed);
        let numeric = parse(json!({
            "epochs": {"type": "FixedKnob", "value": 3},
            "skip": {"type": "PolicyKnob", "policy": "SKIP_TRAIN"},
            "lr": {"type": "FloatKnob", "min": 1e-4, "max": 1.0, "is_exp": true},
            "depth": {"type": "IntegerKnob", "min": 1, "max": 8},
            "kernel": {"type": "CategoricalKnob", "values": ["rbf", "linear"]},
        }));
        assert_eq!(advisor_kind(&numeric), AdvisorKind::Bayesian);
        assert_eq!(advisor_kind(&all_kinds()), AdvisorKind::Bayesian);
        let arch_only = parse(json!({"cells": {"type": "ArchKnob", "items": [[1, 2]]}}));
        assert_eq!(advisor_kind(&arch_only), AdvisorKind::Bayesian);
    }

    #[test]
    fn every_advisor_proposes_knobs_that_fit_the_config() {
        let config = all_kinds();
        let mut advisors: Vec<Box<dyn Advisor>> = vec![
            make_advisor(&config, 1),
            Box::new(RandomAdvisor::new(&config, 2).unwrap()),
            Box::new(BayesianAdvisor::new(&config, 3).unwrap()),
        ];
        for advisor in &mut advisors {
            for trial in 0..60 {
                let knobs = advisor.propose().unwrap();
                config.check(&knobs).unwrap();
                advisor.feedback(&knobs, f64::from(trial % 7));
            }
        }
        let mut fixed = make_advisor(
            &parse(json!({
                "epochs": {"type": "FixedKnob", "value": 3},
                "skip": {"type": "PolicyKnob", "policy": "SKIP_TRAIN"},
            })),
            4,
        );
        let knobs = fixed.propose().unwrap();
        assert_eq!(knobs["epochs"], duma_domain::KnobValue::Int(3));
        assert_eq!(knobs["skip"], duma_domain::KnobValue::Bool(false));
        assert!(fixed.propose().is_none());
    }

    #[test]
    fn an_invalid_config_gets_no_proposal() {
        let invalid = parse(json!({"kernel": {"type": "CategoricalKnob", "values": []}}));
        assert!(make_advisor(&invalid, 1).propose().is_none());
    }
}
