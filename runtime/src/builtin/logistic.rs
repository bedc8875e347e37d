//! Multinomial logistic regression with an L2 penalty, fitted by L-BFGS on standardised features.
//! One weight vector per class (softmax), also for two classes, so the probabilities come straight
//! from the model and are comparable across templates when the predictor ensembles them.

use std::collections::BTreeMap;

use duma_domain::{KnobConfig, KnobValue, Knobs};
use serde::{Deserialize, Serialize};

use crate::builtin::knobs::{categorical_knob, choice, float, float_knob, knobs};
use crate::error::TemplateError;
use crate::linalg::dot;
use crate::logger::TrialLogger;
use crate::optim::Lbfgs;
use crate::tabular::target::ClassLabels;
use crate::tabular::{Fitted, Learner, Problem};

const MAX_ITERATIONS: usize = 500;
/// Loss values are logged every this many iterations (and at the end).
const LOG_EVERY: usize = 10;

#[derive(Debug, Clone)]
pub(crate) struct LogisticRegression {
    /// Weight of the L2 penalty `alpha/2 · ‖w‖²` added to the mean cross-entropy; biases are not
    /// penalised.
    alpha: f64,
    class_weight: ClassWeight,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ClassWeight {
    /// Every row counts the same.
    Uniform,
    /// Rows are weighted inversely to their class frequency, so rare classes are not ignored.
    Balanced,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogisticFit {
    n_features: usize,
    n_classes: usize,
    /// Row-major `n_classes × (n_features + 1)`; the last value of each row is the bias.
    coefficients: Vec<f64>,
}

impl Learner for LogisticRegression {
    const NAME: &'static str = "LogisticRegression";
    const MODEL_CLASS: &'static str = "duma.tabular.LogisticRegression";
    const STANDARDIZE: bool = true;
    type Target = ClassLabels;
    type Fitted = LogisticFit;

    fn knob_config() -> KnobConfig {
        KnobConfig(BTreeMap::from([
            ("alpha".to_owned(), float_knob(1e-6, 10.0, true)),
            (
                "class_weight".to_owned(),
                categorical_knob(&["none", "balanced"]),
            ),
        ]))
    }

    fn default_knobs() -> Knobs {
        knobs([
            ("alpha", KnobValue::Float(1e-3)),
            ("class_weight", KnobValue::Str("none".into())),
        ])
    }

    fn from_knobs(values: &Knobs) -> Result<Self, TemplateError> {
        Ok(Self {
            alpha: float(values, "alpha")?,
            class_weight: match choice(values, "class_weight")? {
                "balanced" => ClassWeight::Balanced,
                _ => ClassWeight::Uniform,
            },
        })
    }

    fn fit(
        &self,
        problem: &Problem<'_, ClassLabels>,
        log: &mut TrialLogger,
    ) -> Result<LogisticFit, TemplateError> {
        let x = problem.x;
        let y = problem.y;
        let n_features = x.n_cols();
        let n_classes = problem.target.len();
        let stride = n_features + 1;
        let row_weights = self.row_weights(y, n_classes);
        let total_weight: f64 = row_weights.iter().sum();
        let alpha = self.alpha.max(0.0);

        let objective = |theta: &[f64], gradient: &mut [f64]| -> f64 {
            gradient.fill(0.0);
            let mut loss = 0.0;
            let mut scores = vec![0.0; n_classes];
            for ((row, &label), &weight) in x.rows().zip(y).zip(&row_weights) {
                for (k, score) in scores.iter_mut().enumerate() {
                    let w = &theta[k * stride..(k + 1) * stride];
                    *score = dot(&w[..n_features], row) + w[n_features];
                }
                let log_normalizer = log_sum_exp(&scores);
                loss += weight * (log_normalizer - scores[label]);
                for (k, score) in scores.iter().enumerate() {
                    let indicator = if k == label { 1.0 } else { 0.0 };
                    let coefficient =
                        weight * ((score - log_normalizer).exp() - indicator) / total_weight;
                    let g = &mut gradient[k * stride..(k + 1) * stride];
                    g[..n_features]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(gj, xj)| *gj += coefficient * xj);
                    g[n_features] += coefficient;
                }
            }
            loss /= total_weight;
            for k in 0..n_classes {
                let w = &theta[k * stride..k * stride + n_features];
                loss += 0.5 * alpha * dot(w, w);
                gradient[k * stride..k * stride + n_features]
                    .iter_mut()
                    .zip(w)
                    .for_each(|(g, wj)| *g += alpha * wj);
            }
            loss
        };

        log.define_plot(
            "Training loss",
            vec!["loss".to_owned()],
            Some("iteration".to_owned()),
        );
        let lbfgs = Lbfgs {
            gradient_tolerance: 1e-6,
            max_iterations: MAX_ITERATIONS,
            memory: 10,
        };
        let minimum = lbfgs.minimize(
            vec![0.0; n_classes * stride],
            objective,
            |iteration, loss| {
                if iteration % LOG_EVERY == 0 {
                    log.metrics([("iteration", iteration as f64), ("loss", loss)]);
                }
            },
        );
        if !minimum.loss.is_finite() {
            return Err(TemplateError::Training(
                "the logistic loss diverged; try a larger alpha".to_owned(),
            ));
        }
        log.metrics([
            ("iteration", minimum.iterations as f64),
            ("loss", minimum.loss),
        ]);
        log.message(if minimum.converged {
            format!("L-BFGS converged after {} iterations", minimum.iterations)
        } else {
            format!("L-BFGS stopped at the limit of {MAX_ITERATIONS} iterations before converging")
        });
        Ok(LogisticFit {
            n_features,
            n_classes,
            coefficients: minimum.x,
        })
    }
}

impl LogisticRegression {
    fn row_weights(&self, y: &[usize], n_classes: usize) -> Vec<f64> {
        match self.class_weight {
            ClassWeight::Uniform => vec![1.0; y.len()],
            ClassWeight::Balanced => {
                let mut counts = vec![0_usize; n_classes];
                y.iter().for_each(|&label| counts[label] += 1);
                let n = y.len() as f64;
                y.iter()
                    .map(|&label| n / (n_classes as f64 * counts[label] as f64))
                    .collect()
            }
        }
    }
}

impl Fitted for LogisticFit {
    type Output = Vec<f64>;

    fn predict(&self, row: &[f64]) -> Vec<f64> {
        let stride = self.n_features + 1;
        let scores: Vec<f64> = self
            .coefficients
            .chunks_exact(stride)
            .map(|w| dot(&w[..self.n_features], row) + w[self.n_features])
            .collect();
        let log_normalizer = log_sum_exp(&scores);
        scores.iter().map(|s| (s - log_normalizer).exp()).collect()
    }

    fn check(&self, width: usize, n_outputs: usize) -> Result<(), String> {
        if self.n_features != width
            || self.n_classes != n_outputs
            || self.coefficients.len() != self.n_classes * (self.n_features + 1)
        {
            return Err("the coefficients do not match the features and classes".to_owned());
        }
        Ok(())
    }
}

/// `ln Σ exp(sᵢ)` without overflow.
fn log_sum_exp(scores: &[f64]) -> f64 {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + scores.iter().map(|s| (s - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert!((log_sum_exp(&[0.0, 0.0, 0.0]) - 3f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn balanced_weights_even_out_class_totals() {
        let lr = LogisticRegression {
            alpha: 1.0,
            class_weight: ClassWeight::Balanced,
        };
        let weights = lr.row_weights(&[0, 0, 0, 1], 2);
        let class_0: f64 = weights[..3].iter().sum();
        assert!((class_0 - weights[3]).abs() < 1e-12);
    }
}
