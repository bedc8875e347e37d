//! A knob config seen as a unit hypercube: every choice an advisor makes is one coordinate.
//!
//! Numeric knobs (Float, Integer) map `[0, 1]` linearly onto their range, or onto the log of it
//! for `is_exp` knobs; an integer knob's range is widened by half a step on each side so that every
//! integer owns an equal share of the axis. Categorical knobs and each position of an arch knob
//! are categorical coordinates holding a choice index. Fixed knobs keep their value and policy
//! knobs are off: neither is a choice.

use duma_domain::{Knob, KnobConfig, KnobError, KnobValue, Knobs};
use rand::RngExt;

/// A point of the space: one entry per coordinate; categorical ones hold the choice index.
pub(crate) type Point = Vec<f64>;

/// One coordinate of the hypercube.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Coordinate {
    /// A value in `[0, 1]`.
    Numeric,
    /// A choice index in `0..choices`.
    Categorical { choices: usize },
}

/// How one knob's value is made from (and read back into) coordinates.
#[derive(Debug, Clone)]
enum Slot {
    Constant(KnobValue),
    Numeric {
        coordinate: usize,
        axis: Axis,
    },
    Categorical {
        coordinate: usize,
        values: Vec<KnobValue>,
    },
    Arch {
        first: usize,
        items: Vec<Vec<KnobValue>>,
    },
}

/// `[0, 1]` onto `[lo, hi]`, then `exp` for log-scale knobs; integers round and clamp.
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    kind: AxisKind,
}

#[derive(Debug, Clone, Copy)]
enum AxisKind {
    Float { min: f64, max: f64 },
    Integer { min: i64, max: i64 },
}

impl Axis {
    fn float(min: f64, max: f64, log: bool) -> Self {
        let (lo, hi) = if log {
            (min.ln(), max.ln())
        } else {
            (min, max)
        };
        Self {
            lo,
            hi,
            log,
            kind: AxisKind::Float { min, max },
        }
    }

    fn integer(min: i64, max: i64, log: bool) -> Self {
        let (lo, hi) = (min as f64 - 0.5, max as f64 + 0.5);
        let (lo, hi) = if log { (lo.ln(), hi.ln()) } else { (lo, hi) };
        Self {
            lo,
            hi,
            log,
            kind: AxisKind::Integer { min, max },
        }
    }

    fn value(&self, u: f64) -> KnobValue {
        let t = self.lo + u.clamp(0.0, 1.0) * (self.hi - self.lo);
        let v = if self.log { t.exp() } else { t };
        match self.kind {
            // `as` saturates, and the clamp keeps rounding error inside the space.
            AxisKind::Integer { min, max } => KnobValue::Int((v.round() as i64).clamp(min, max)),
            AxisKind::Float { min, max } => KnobValue::Float(v.clamp(min, max)),
        }
    }

    fn coordinate(&self, value: &KnobValue) -> Option<f64> {
        let v = match value {
            KnobValue::Int(i) => *i as f64,
            KnobValue::Float(f) => *f,
            _ => return None,
        };
        let t = if self.log { v.ln() } else { v };
        let u = if self.hi > self.lo {
            (t - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        };
        u.is_finite().then(|| u.clamp(0.0, 1.0))
    }
}

/// A validated knob config as a unit hypercube.
#[derive(Debug, Clone)]
pub(crate) struct Space {
    slots: Vec<(String, Slot)>,
    coordinates: Vec<Coordinate>,
}

impl Space {
    pub(crate) fn new(config: &KnobConfig) -> Result<Self, KnobError> {
        config.validate()?;
        let mut coordinates = Vec::new();
        let mut slots = Vec::with_capacity(config.0.len());
        for (name, knob) in &config.0 {
            let next = coordinates.len();
            let slot = match knob {
                Knob::Fixed { value } => Slot::Constant(value.clone()),
                Knob::Policy { .. } => Slot::Constant(KnobValue::Bool(false)),
                Knob::Categorical { values } => {
                    coordinates.push(Coordinate::Categorical {
                        choices: values.len(),
                    });
                    Slot::Categorical {
                        coordinate: next,
                        values: values.clone(),
                    }
                }
                Knob::Integer { min, max, is_exp } => {
                    coordinates.push(Coordinate::Numeric);
                    Slot::Numeric {
                        coordinate: next,
                        axis: Axis::integer(*min, *max, *is_exp),
                    }
                }
                Knob::Float { min, max, is_exp } => {
                    coordinates.push(Coordinate::Numeric);
                    Slot::Numeric {
                        coordinate: next,
                        axis: Axis::float(*min, *max, *is_exp),
                    }
                }
                Knob::Arch { items } => {
                    coordinates.extend(items.iter().map(|options| Coordinate::Categorical {
                        choices: options.len(),
                    }));
                    Slot::Arch {
                        first: next,
                        items: items.clone(),
                    }
                }
            };
            slots.push((name.clone(), slot));
        }
        Ok(Self { slots, coordinates })
    }

    pub(crate) fn coordinates(&self) -> &[Coordinate] {
        &self.coordinates
    }

    /// A point drawn uniformly: uniform on every axis (so log-uniform on log-scale knobs) and
    /// uniform over the choices of every categorical coordinate.
    pub(crate) fn sample_uniform(&self, rng: &mut impl RngExt) -> Point {
        self.coordinates
            .iter()
            .map(|c| match c {
                Coordinate::Numeric => rng.random::<f64>(),
                Coordinate::Categorical { choices } => rng.random_range(0..*choices) as f64,
            })
            .collect()
    }

    /// Moves every integer coordinate to the centre of its integer's step, so that a point is
    /// modelled where the knobs it stands for are.
    pub(crate) fn snap(&self, point: &mut [f64]) {
        for (_, slot) in &self.slots {
            if let Slot::Numeric { coordinate, axis } = slot
                && matches!(axis.kind, AxisKind::Integer { .. })
                && let Some(u) = point.get_mut(*coordinate)
                && let Some(snapped) = axis.coordinate(&axis.value(*u))
            {
                *u = snapped;
            }
        }
    }

    /// The knobs a point stands for.
    pub(crate) fn knobs(&self, point: &[f64]) -> Knobs {
        let at = |i: usize| point.get(i).copied().unwrap_or(0.0);
        let choose = |values: &[KnobValue], i: usize| {
            let index = (at(i).max(0.0) as usize).min(values.len().saturating_sub(1));
            values.get(index).cloned().unwrap_or(KnobValue::Bool(false))
        };
        self.slots
            .iter()
            .map(|(name, slot)| {
                let value = match slot {
                    Slot::Constant(value) => value.clone(),
                    Slot::Numeric { coordinate, axis } => axis.value(at(*coordinate)),
                    Slot::Categorical { coordinate, values } => choose(values, *coordinate),
                    Slot::Arch { first, items } => KnobValue::List(
                        items
                            .iter()
                            .enumerate()
                            .map(|(position, options)| choose(options, first + position))
                            .collect(),
                    ),
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// The point of knobs that fit the space (an integer knob's value maps to the centre of its
    /// step), or None when they do not.
    pub(crate) fn point(&self, knobs: &Knobs) -> Option<Point> {
        let mut point = vec![0.0; self.coordinates.len()];
        for (name, slot) in &self.slots {
            let value = knobs.get(name)?;
            match slot {
                Slot::Constant(_) => {}
                Slot::Numeric { coordinate, axis } => {
                    *point.get_mut(*coordinate)? = axis.coordinate(value)?;
                }
                Slot::Categorical { coordinate, values } => {
                    *point.get_mut(*coordinate)? = values.iter().position(|v| v == value)? as f64;
                }
                Slot::Arch { first, items } => {
                    let KnobValue::List(chosen) = value else {
                        return None;
                    };
                    if chosen.len() != items.len() {
                        return None;
                    }
                    for (position, (choice, options)) in chosen.iter().zip(items).enumerate() {
                        *point.get_mut(first + position)? =
                            options.iter().position(|v| v == choice)? as f64;
                    }
                }
            }
        }
        Some(point)
    }
}

/// A key that is equal for equal knobs, to recognise duplicates (`KnobValue` holds floats, so it
/// is neither `Eq` nor `Hash`; its JSON is, and a `Knobs` map serialises in key order).
pub(crate) fn knobs_key(knobs: &Knobs) -> String {
    serde_json::to_string(knobs).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    /// A config with all six knob kinds.
    pub(crate) fn all_kinds() -> KnobConfig {
        serde_json::from_value(json!({
            "max_epochs": {"type": "FixedKnob", "value": 10},
            "kernel": {"type": "CategoricalKnob", "values": ["rbf", "linear", "poly"]},
            "depth": {"type": "IntegerKnob", "min": 2, "max": 16},
            "units": {"type": "IntegerKnob", "min": 8, "max": 1024, "is_exp": true},
            "learning_rate": {"type": "FloatKnob", "min": 1e-5, "max": 1e-1, "is_exp": true},
            "dropout": {"type": "FloatKnob", "min": 0.0, "max": 0.5},
            "early_stop": {"type": "PolicyKnob", "policy": "EARLY_STOP"},
            "cells": {"type": "ArchKnob", "items": [[1, 2], ["a", "b", "c"], [0.5]]},
        }))
        .unwrap()
    }

    #[test]
    fn points_round_trip_through_knobs() {
        let config = all_kinds();
        let space = Space::new(&config).unwrap();
        assert_eq!(space.coordinates().len(), 8);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let knobs = space.knobs(&space.sample_uniform(&mut rng));
            config.check(&knobs).unwrap();
            let again = space.knobs(&space.point(&knobs).unwrap());
            assert_eq!(knobs_key(&again), knobs_key(&knobs));
        }
    }

    #[test]
    fn knobs_outside_the_space_have_no_point() {
        let config = all_kinds();
        let space = Space::new(&config).unwrap();
        let mut knobs = space.knobs(&[0.5; 8]);
        knobs.insert("kernel".into(), KnobValue::Str("sigmoid".into()));
        assert!(space.point(&knobs).is_none());
    }

    #[test]
    fn ends_of_the_axes_are_the_ends_of_the_ranges() {
        let config = all_kinds();
        let space = Space::new(&config).unwrap();
        let low = space.knobs(&[0.0; 8]);
        // Coordinates in knob-name order: cells ×3, depth, dropout, kernel, learning_rate, units.
        let high = space.knobs(&[1.0, 2.0, 0.0, 1.0, 1.0, 2.0, 1.0, 1.0]);
        assert_eq!(low["learning_rate"], KnobValue::Float(1e-5));
        assert_eq!(high["learning_rate"], KnobValue::Float(1e-1));
        assert_eq!(low["units"], KnobValue::Int(8));
        assert_eq!(high["units"], KnobValue::Int(1024));
        assert_eq!(low["depth"], KnobValue::Int(2));
        assert_eq!(high["depth"], KnobValue::Int(16));
        assert_eq!(high["kernel"], KnobValue::Str("poly".into()));
        assert_eq!(
            high["cells"],
            KnobValue::List(vec![
                KnobValue::Int(2),
                KnobValue::Str("c".into()),
                KnobValue::Float(0.5)
            ])
        );
        config.check(&low).unwrap();
        config.check(&high).unwrap();
    }
}
