//! Uniform random search.

use duma_domain::{KnobConfig, KnobError, Knobs};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::Advisor;
use super::space::Space;

/// Draws every proposal uniformly from the space: log-uniformly on `is_exp` knobs, uniformly over
/// categorical values and over the choices at each position of an arch knob; fixed knobs keep
/// their value and policy knobs are off. Scores are ignored.
#[derive(Debug)]
pub struct RandomAdvisor {
    space: Space,
    rng: StdRng,
}

impl RandomAdvisor {
    /// Fails when the config is invalid (see [`KnobConfig::validate`]).
    pub fn new(config: &KnobConfig, seed: u64) -> Result<Self, KnobError> {
        Ok(Self {
            space: Space::new(config)?,
            rng: StdRng::seed_from_u64(seed),
        })
    }
}

impl Advisor for RandomAdvisor {
    fn propose(&mut self) -> Option<Knobs> {
        Some(self.space.knobs(&self.space.sample_uniform(&mut self.rng)))
    }

    fn feedback(&mut self, _: &Knobs, _: f64) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::space::tests::all_kinds;
    use super::*;
    use duma_domain::KnobValue;
    use serde_json::json;

    fn proposals(config: &KnobConfig, seed: u64, count: usize) -> Vec<Knobs> {
        let mut advisor = RandomAdvisor::new(config, seed).unwrap();
        (0..count).map(|_| advisor.propose().unwrap()).collect()
    }

    #[test]
    fn log_scale_floats_are_log_uniform() {
        let config: KnobConfig = serde_json::from_value(json!({
            "lr": {"type": "FloatKnob", "min": 1e-5, "max": 1e-1, "is_exp": true},
        }))
        .unwrap();
        let lrs: Vec<f64> = proposals(&config, 11, 1000)
            .iter()
            .map(|k| match k["lr"] {
                KnobValue::Float(v) => v,
                ref other => panic!("not a float: {other:?}"),
            })
            .collect();
        assert!(lrs.iter().all(|v| (1e-5..=1e-1).contains(v)));
        let below = lrs.iter().filter(|v| **v < 1e-3).count();
        assert!((430..=570).contains(&below), "{below} of 1000 below 1e-3");
        let below_1e4 = lrs.iter().filter(|v| **v < 1e-4).count();
        assert!(
            (180..=320).contains(&below_1e4),
            "{below_1e4} of 1000 below 1e-4"
        );
    }

    #[test]
    fn integers_respect_bounds_and_scale() {
        let config: KnobConfig = serde_json::from_value(json!({
            "units": {"type": "IntegerKnob", "min": 1, "max": 1000, "is_exp": true},
            "depth": {"type": "IntegerKnob", "min": 2, "max": 5},
        }))
        .unwrap();
        let all = proposals(&config, 5, 1000);
        let int = |k: &Knobs, name: &str| match k[name] {
            KnobValue::Int(v) => v,
            ref other => panic!("not an integer: {other:?}"),
        };
        let units: Vec<i64> = all.iter().map(|k| int(k, "units")).collect();
        assert!(units.iter().all(|v| (1..=1000).contains(v)));
        // Log-uniform on [0.5, 1000.5]: ln(63)/ln(2001) ≈ 55% fall below 32 (linear: 3%).
        let small = units.iter().filter(|v| **v < 32).count();
        assert!((470..=620).contains(&small), "{small} of 1000 below 32");
        let mut seen = [0usize; 4];
        for k in &all {
            let depth = int(k, "depth");
            assert!((2..=5).contains(&depth));
            seen[(depth - 2) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (190..=310).contains(n)), "{seen:?}");
    }

    #[test]
    fn categorical_and_arch_choices_are_uniform() {
        let config = all_kinds();
        let all = proposals(&config, 9, 900);
        let mut kernels = std::collections::BTreeMap::<String, usize>::new();
        for knobs in &all {
            config.check(knobs).unwrap();
            assert_eq!(knobs["max_epochs"], KnobValue::Int(10));
            assert_eq!(knobs["early_stop"], KnobValue::Bool(false));
            *kernels.entry(format!("{:?}", knobs["kernel"])).or_default() += 1;
        }
        assert_eq!(kernels.len(), 3);
        assert!(
            kernels.values().all(|n| (240..=360).contains(n)),
            "{kernels:?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_proposals() {
        let config = all_kinds();
        assert_eq!(proposals(&config, 42, 50), proposals(&config, 42, 50));
        assert_ne!(proposals(&config, 42, 50), proposals(&config, 43, 50));
    }
}
