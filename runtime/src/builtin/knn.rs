//! k-nearest neighbours by brute force over the standardised training rows. Class probabilities
//! are the neighbours' (optionally distance-weighted) vote shares. Brute force is exact and, for
//! the tens of columns of tabular data, faster in practice than tree indexes, which degrade past a
//! dozen dimensions.

use std::collections::BTreeMap;

use duma_domain::{KnobConfig, KnobValue, Knobs};
use serde::{Deserialize, Serialize};

use crate::builtin::knobs::{categorical_knob, choice, count, integer_knob, knobs};
use crate::error::TemplateError;
use crate::linalg::Matrix;
use crate::logger::TrialLogger;
use crate::tabular::target::ClassLabels;
use crate::tabular::{Fitted, Learner, Problem};

#[derive(Debug, Clone)]
pub(crate) struct KNeighborsClassifier {
    k: usize,
    weighting: Weighting,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Weighting {
    /// Each neighbour casts one vote.
    Uniform,
    /// Votes weigh `1 / distance`; neighbours at distance 0 take all the weight.
    Distance,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KnnFit {
    k: usize,
    weighting: Weighting,
    n_classes: usize,
    reference: Matrix,
    labels: Vec<usize>,
}

impl Learner for KNeighborsClassifier {
    const NAME: &'static str = "KNeighborsClassifier";
    const MODEL_CLASS: &'static str = "duma.tabular.KNeighborsClassifier";
    const STANDARDIZE: bool = true;
    type Target = ClassLabels;
    type Fitted = KnnFit;

    fn knob_config() -> KnobConfig {
        KnobConfig(BTreeMap::from([
            ("k".to_owned(), integer_knob(1, 100, true)),
            (
                "weighting".to_owned(),
                categorical_knob(&["uniform", "distance"]),
            ),
        ]))
    }

    fn default_knobs() -> Knobs {
        knobs([
            ("k", KnobValue::Int(5)),
            ("weighting", KnobValue::Str("uniform".into())),
        ])
    }

    fn from_knobs(values: &Knobs) -> Result<Self, TemplateError> {
        Ok(Self {
            k: count(values, "k")?,
            weighting: match choice(values, "weighting")? {
                "distance" => Weighting::Distance,
                _ => Weighting::Uniform,
            },
        })
    }

    fn fit(
        &self,
        problem: &Problem<'_, ClassLabels>,
        log: &mut TrialLogger,
    ) -> Result<KnnFit, TemplateError> {
        let n = problem.x.n_rows();
        let k = self.k.min(n).max(1);
        if k < self.k {
            log.message(format!(
                "k = {} is more than the {n} training rows; using k = {k}",
                self.k
            ));
        }
        log.message(format!("stored {n} reference rows"));
        Ok(KnnFit {
            k,
            weighting: self.weighting,
            n_classes: problem.target.len(),
            reference: problem.x.clone(),
            labels: problem.y.to_vec(),
        })
    }
}

impl Fitted for KnnFit {
    type Output = Vec<f64>;

    fn predict(&self, row: &[f64]) -> Vec<f64> {
        let mut neighbours: Vec<(f64, usize)> = self
            .reference
            .rows()
            .zip(&self.labels)
            .map(|(reference, &label)| (squared_distance(reference, row), label))
            .collect();
        let k = self.k.min(neighbours.len()).max(1);
        neighbours.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
        let nearest = &neighbours[..k];

        let mut votes = vec![0.0; self.n_classes];
        let exact_matches = nearest.iter().any(|(distance, _)| *distance == 0.0);
        for &(squared, label) in nearest {
            votes[label] += match (self.weighting, exact_matches) {
                (Weighting::Uniform, _) => 1.0,
                (Weighting::Distance, true) if squared == 0.0 => 1.0,
                (Weighting::Distance, true) => 0.0,
                (Weighting::Distance, false) => 1.0 / squared.sqrt(),
            };
        }
        let total: f64 = votes.iter().sum();
        votes.iter_mut().for_each(|v| *v /= total);
        votes
    }

    fn check(&self, width: usize, n_outputs: usize) -> Result<(), String> {
        let consistent = self.reference.is_well_formed()
            && self.reference.n_cols() == width
            && self.reference.n_rows() > 0
            && self.reference.n_rows() == self.labels.len()
            && self.n_classes == n_outputs
            && self.labels.iter().all(|&label| label < self.n_classes);
        if consistent {
            Ok(())
        } else {
            Err("the reference rows do not match the features and classes".to_owned())
        }
    }
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(weighting: Weighting) -> KnnFit {
        let mut reference = Matrix::with_columns(1, 4);
        for x in [0.0, 1.0, 2.0, 10.0] {
            reference.push_row(&[x]);
        }
        KnnFit {
            k: 3,
            weighting,
            n_classes: 2,
            reference,
            labels: vec![0, 0, 1, 1],
        }
    }

    #[test]
    fn uniform_votes_are_shares_of_the_k_nearest() {
        let p = fit(Weighting::Uniform).predict(&[0.4]);
        assert!((p[0] - 2.0 / 3.0).abs() < 1e-12 && (p[1] - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn distance_votes_favour_exact_matches() {
        assert_eq!(fit(Weighting::Distance).predict(&[2.0]), [0.0, 1.0]);
        let p = fit(Weighting::Distance).predict(&[1.5]);
        // Neighbours at 0.5 (class 0 and 1) and 1.5 (class 0).
        let class_0 = 2.0 + 1.0 / 1.5;
        assert!((p[0] - class_0 / (class_0 + 2.0)).abs() < 1e-12);
    }
}
