//! Ridge regression: least squares with an L2 penalty, solved exactly from the normal equations on
//! standardised features. With `alpha` near its lower bound it is ordinary linear regression,
//! still well-posed when columns are collinear (one-hot groups always are, with the intercept).

use std::collections::BTreeMap;

use duma_domain::{KnobConfig, KnobValue, Knobs};
use serde::{Deserialize, Serialize};

use crate::builtin::knobs::{float, float_knob, knobs};
use crate::error::TemplateError;
use crate::linalg::{dot, solve_spd};
use crate::logger::TrialLogger;
use crate::tabular::target::NumericTarget;
use crate::tabular::{Fitted, Learner, Problem};

#[derive(Debug, Clone)]
pub(crate) struct RidgeRegression {
    /// Minimises `‖y - Xw - b‖² + alpha·‖w‖²` (scikit-learn's convention: not divided by the row
    /// count, so the same alpha regularises small datasets more).
    alpha: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RidgeFit {
    weights: Vec<f64>,
    intercept: f64,
}

impl Learner for RidgeRegression {
    const NAME: &'static str = "RidgeRegression";
    const MODEL_CLASS: &'static str = "duma.tabular.RidgeRegression";
    const STANDARDIZE: bool = true;
    type Target = NumericTarget;
    type Fitted = RidgeFit;

    fn knob_config() -> KnobConfig {
        KnobConfig(BTreeMap::from([(
            "alpha".to_owned(),
            float_knob(1e-6, 1e4, true),
        )]))
    }

    fn default_knobs() -> Knobs {
        knobs([("alpha", KnobValue::Float(1.0))])
    }

    fn from_knobs(values: &Knobs) -> Result<Self, TemplateError> {
        Ok(Self {
            alpha: float(values, "alpha")?,
        })
    }

    fn fit(
        &self,
        problem: &Problem<'_, NumericTarget>,
        log: &mut TrialLogger,
    ) -> Result<RidgeFit, TemplateError> {
        let x = problem.x;
        let d = x.n_cols();
        let n = x.n_rows() as f64;
        // Centring both sides takes the intercept out of the system: it is fixed afterwards so
        // that the fit passes through the means.
        let y_mean = problem.y.iter().sum::<f64>() / n;
        let mut x_mean = vec![0.0; d];
        for row in x.rows() {
            x_mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
        }
        let mut gram = vec![0.0; d * d];
        let mut moments = vec![0.0; d];
        let mut centred = vec![0.0; d];
        for (row, &target) in x.rows().zip(problem.y) {
            centred
                .iter_mut()
                .zip(row)
                .zip(&x_mean)
                .for_each(|((c, v), m)| *c = v - m);
            for (i, &xi) in centred.iter().enumerate() {
                moments[i] += xi * (target - y_mean);
                gram[i * d..i * d + i + 1]
                    .iter_mut()
                    .zip(&centred)
                    .for_each(|(g, xj)| *g += xi * xj);
            }
        }
        // Only the lower triangle was accumulated; mirror it and add the penalty.
        for i in 0..d {
            for j in 0..i {
                gram[j * d + i] = gram[i * d + j];
            }
            gram[i * d + i] += self.alpha;
        }
        let weights = solve_spd(&gram, &moments).ok_or_else(|| {
            TemplateError::Training(format!(
                "the normal equations are singular at alpha = {}; use a larger alpha",
                self.alpha
            ))
        })?;
        let intercept = y_mean - dot(&x_mean, &weights);
        let norm = dot(&weights, &weights).sqrt();
        log.message(format!(
            "solved the normal equations for {d} weights (‖w‖ = {norm:.4}, intercept {intercept:.4})"
        ));
        Ok(RidgeFit { weights, intercept })
    }
}

impl Fitted for RidgeFit {
    type Output = f64;

    fn predict(&self, row: &[f64]) -> f64 {
        self.intercept + dot(&self.weights, row)
    }

    fn check(&self, width: usize, n_outputs: usize) -> Result<(), String> {
        if self.weights.len() != width || n_outputs != 1 {
            return Err("the weights do not match the features".to_owned());
        }
        Ok(())
    }
}
