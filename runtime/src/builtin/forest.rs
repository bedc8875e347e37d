//! Random forests (Breiman): trees grown on bootstrap samples, each split choosing among a random
//! subset of features. Classification averages the trees' leaf class probabilities (smoother than
//! counting votes); regression averages their leaf means. Trees split on raw values, so features
//! are not standardised.

use std::collections::BTreeMap;

use duma_domain::{KnobConfig, KnobValue, Knobs};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::builtin::knobs::{categorical_knob, choice, count, integer_knob, knobs};
use crate::builtin::tree::{Binned, Classes, SplitTarget, Tree, TreeSettings, Values};
use crate::error::TemplateError;
use crate::linalg::Matrix;
use crate::logger::TrialLogger;
use crate::tabular::target::{ClassLabels, NumericTarget};
use crate::tabular::{Fitted, Learner, Problem};

/// Bounds recursion whatever knob values a loaded model carries.
const DEPTH_LIMIT: usize = 64;
/// Progress is logged every this many trees.
const LOG_EVERY: usize = 10;

/// The knobs both forests share.
#[derive(Debug, Clone)]
struct ForestKnobs {
    n_trees: usize,
    max_depth: usize,
    min_samples_split: usize,
    max_features: MaxFeatures,
}

/// How many features each split draws from, as a function of the encoded width `d`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MaxFeatures {
    Sqrt,
    Log2,
    Half,
    All,
}

impl MaxFeatures {
    const NAMES: [&'static str; 4] = ["sqrt", "log2", "half", "all"];

    fn parse(name: &str) -> Self {
        match name {
            "log2" => MaxFeatures::Log2,
            "half" => MaxFeatures::Half,
            "all" => MaxFeatures::All,
            _ => MaxFeatures::Sqrt,
        }
    }

    fn of(self, d: usize) -> usize {
        let d_f = d as f64;
        let m = match self {
            MaxFeatures::Sqrt => d_f.sqrt().round() as usize,
            MaxFeatures::Log2 => d_f.log2().round() as usize,
            MaxFeatures::Half => d.div_ceil(2),
            MaxFeatures::All => d,
        };
        m.clamp(1, d.max(1))
    }
}

impl ForestKnobs {
    fn knob_config() -> KnobConfig {
        KnobConfig(BTreeMap::from([
            ("n_trees".to_owned(), integer_knob(10, 500, true)),
            ("max_depth".to_owned(), integer_knob(2, 32, false)),
            ("min_samples_split".to_owned(), integer_knob(2, 64, true)),
            (
                "max_features".to_owned(),
                categorical_knob(&MaxFeatures::NAMES),
            ),
        ]))
    }

    fn defaults(max_features: &str) -> Knobs {
        knobs([
            ("n_trees", KnobValue::Int(100)),
            ("max_depth", KnobValue::Int(16)),
            ("min_samples_split", KnobValue::Int(2)),
            ("max_features", KnobValue::Str(max_features.to_owned())),
        ])
    }

    fn from_knobs(values: &Knobs) -> Result<Self, TemplateError> {
        Ok(Self {
            n_trees: count(values, "n_trees")?,
            max_depth: count(values, "max_depth")?,
            min_samples_split: count(values, "min_samples_split")?,
            max_features: MaxFeatures::parse(choice(values, "max_features")?),
        })
    }

    fn grow(
        &self,
        x: &Matrix,
        target: &impl SplitTarget,
        seed: u64,
        log: &mut TrialLogger,
    ) -> Result<Forest, TemplateError> {
        if u32::try_from(x.n_rows()).is_err() {
            return Err(TemplateError::Training(format!(
                "{} rows are more than a forest indexes",
                x.n_rows()
            )));
        }
        let settings = TreeSettings {
            max_depth: self.max_depth.min(DEPTH_LIMIT),
            min_samples_split: self.min_samples_split,
            max_features: self.max_features.of(x.n_cols()),
        };
        let n_trees = self.n_trees.max(1);
        let n = x.n_rows();
        let binned = Binned::new(x);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut sample = vec![0; n];
        let mut trees = Vec::with_capacity(n_trees);
        log.define_plot(
            "Forest size",
            vec!["mean_leaves".to_owned(), "mean_depth".to_owned()],
            Some("trees".to_owned()),
        );
        let (mut total_leaves, mut total_depth) = (0, 0);
        for grown in 1..=n_trees {
            sample
                .iter_mut()
                .for_each(|row| *row = rng.random_range(0..n));
            let tree = Tree::grow(&binned, target, &settings, &mut sample, &mut rng);
            total_leaves += tree.n_leaves();
            total_depth += tree.depth();
            trees.push(tree);
            if grown % LOG_EVERY == 0 || grown == n_trees {
                log.metrics([
                    ("trees", grown as f64),
                    ("mean_leaves", total_leaves as f64 / grown as f64),
                    ("mean_depth", total_depth as f64 / grown as f64),
                ]);
            }
        }
        log.message(format!(
            "grew {n_trees} trees, each split drawing from {} of {} features",
            settings.max_features,
            x.n_cols()
        ));
        Ok(Forest {
            trees,
            leaf_width: target.leaf_width(),
        })
    }
}

/// Trees whose leaf values are averaged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Forest {
    trees: Vec<Tree>,
    leaf_width: usize,
}

impl Forest {
    fn average(&self, row: &[f64]) -> Vec<f64> {
        let mut sum = vec![0.0; self.leaf_width];
        for tree in &self.trees {
            sum.iter_mut()
                .zip(tree.predict(row))
                .for_each(|(s, v)| *s += v);
        }
        let n = self.trees.len() as f64;
        sum.iter_mut().for_each(|s| *s /= n);
        sum
    }

    fn check(&self, width: usize, leaf_width: usize) -> Result<(), String> {
        if self.trees.is_empty() || self.leaf_width != leaf_width {
            return Err("the forest has no trees or the wrong leaf width".to_owned());
        }
        self.trees
            .iter()
            .try_for_each(|tree| tree.check(width, leaf_width))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RandomForestClassifier(ForestKnobs);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClassForest(Forest);

impl Learner for RandomForestClassifier {
    const NAME: &'static str = "RandomForestClassifier";
    const MODEL_CLASS: &'static str = "duma.tabular.RandomForestClassifier";
    const STANDARDIZE: bool = false;
    type Target = ClassLabels;
    type Fitted = ClassForest;

    fn knob_config() -> KnobConfig {
        ForestKnobs::knob_config()
    }

    fn default_knobs() -> Knobs {
        ForestKnobs::defaults("sqrt")
    }

    fn from_knobs(values: &Knobs) -> Result<Self, TemplateError> {
        ForestKnobs::from_knobs(values).map(Self)
    }

    fn fit(
        &self,
        problem: &Problem<'_, ClassLabels>,
        log: &mut TrialLogger,
    ) -> Result<ClassForest, TemplateError> {
        let classes = Classes {
            labels: problem.y,
            n_classes: problem.target.len(),
        };
        self.0
            .grow(problem.x, &classes, problem.seed, log)
            .map(ClassForest)
    }
}

impl Fitted for ClassForest {
    type Output = Vec<f64>;

    fn predict(&self, row: &[f64]) -> Vec<f64> {
        self.0.average(row)
    }

    fn check(&self, width: usize, n_outputs: usize) -> Result<(), String> {
        self.0.check(width, n_outputs)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RandomForestRegressor(ForestKnobs);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ValueForest(Forest);

impl Learner for RandomForestRegressor {
    const NAME: &'static str = "RandomForestRegressor";
    const MODEL_CLASS: &'static str = "duma.tabular.RandomForestRegressor";
    const STANDARDIZE: bool = false;
    type Target = NumericTarget;
    type Fitted = ValueForest;

    fn knob_config() -> KnobConfig {
        ForestKnobs::knob_config()
    }

    fn default_knobs() -> Knobs {
        ForestKnobs::defaults("half")
    }

    fn from_knobs(values: &Knobs) -> Result<Self, TemplateError> {
        ForestKnobs::from_knobs(values).map(Self)
    }

    fn fit(
        &self,
        problem: &Problem<'_, NumericTarget>,
        log: &mut TrialLogger,
    ) -> Result<ValueForest, TemplateError> {
        let values = Values { values: problem.y };
        self.0
            .grow(problem.x, &values, problem.seed, log)
            .map(ValueForest)
    }
}

impl Fitted for ValueForest {
    type Output = f64;

    fn predict(&self, row: &[f64]) -> f64 {
        self.0.average(row).first().copied().unwrap_or(0.0)
    }

    fn check(&self, width: usize, n_outputs: usize) -> Result<(), String> {
        if n_outputs != 1 {
            return Err("a regression forest has one output".to_owned());
        }
        self.0.check(width, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_features_scales_with_the_width() {
        assert_eq!(MaxFeatures::Sqrt.of(32), 6);
        assert_eq!(MaxFeatures::Log2.of(32), 5);
        assert_eq!(MaxFeatures::Half.of(5), 3);
        assert_eq!(MaxFeatures::All.of(7), 7);
        assert_eq!(MaxFeatures::Log2.of(1), 1);
    }
}
