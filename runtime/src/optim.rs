//! Limited-memory BFGS for smooth convex objectives (the logistic regression loss). Chosen over
//! plain gradient descent because it needs no learning rate to tune and converges in tens of
//! iterations on standardised features, and over Newton's method because it never forms the
//! Hessian, whose size grows with classes × columns squared.

use std::collections::VecDeque;

use crate::linalg::dot;

pub(crate) struct Lbfgs {
    /// Stop once the largest gradient component is below this.
    pub gradient_tolerance: f64,
    pub max_iterations: usize,
    /// Correction pairs kept to approximate the inverse Hessian.
    pub memory: usize,
}

pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub loss: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// Sufficient-decrease constant of the Armijo condition.
const ARMIJO: f64 = 1e-4;
const MAX_STEP_HALVINGS: usize = 50;

impl Lbfgs {
    /// Minimises `objective`, which returns the loss at `x` and writes the gradient into its second
    /// argument. `on_iteration(iteration, loss)` is called after every accepted step.
    pub(crate) fn minimize(
        &self,
        x0: Vec<f64>,
        mut objective: impl FnMut(&[f64], &mut [f64]) -> f64,
        mut on_iteration: impl FnMut(usize, f64),
    ) -> Minimum {
        let n = x0.len();
        let mut x = x0;
        let mut gradient = vec![0.0; n];
        let mut loss = objective(&x, &mut gradient);
        let mut history: VecDeque<Correction> = VecDeque::with_capacity(self.memory);
        let mut candidate = vec![0.0; n];
        let mut candidate_gradient = vec![0.0; n];

        for iteration in 1..=self.max_iterations {
            if max_abs(&gradient) < self.gradient_tolerance {
                return Minimum {
                    x,
                    loss,
                    iterations: iteration - 1,
                    converged: true,
                };
            }
            let mut direction = inverse_hessian_times(&history, &gradient);
            direction.iter_mut().for_each(|d| *d = -*d);
            let mut slope = dot(&direction, &gradient);
            if slope >= 0.0 {
                // The curvature model went bad (rounding); restart from steepest descent.
                history.clear();
                direction = gradient.iter().map(|g| -g).collect();
                slope = dot(&direction, &gradient);
            }
            // Without curvature information, a unit step along -g can be wildly off in scale.
            let mut step = if history.is_empty() {
                (1.0 / dot(&gradient, &gradient).sqrt()).min(1.0)
            } else {
                1.0
            };

            let mut accepted = None;
            for _ in 0..MAX_STEP_HALVINGS {
                for ((c, xi), di) in candidate.iter_mut().zip(&x).zip(&direction) {
                    *c = xi + step * di;
                }
                let candidate_loss = objective(&candidate, &mut candidate_gradient);
                if candidate_loss <= loss + ARMIJO * step * slope {
                    accepted = Some(candidate_loss);
                    break;
                }
                step *= 0.5;
            }
            let Some(new_loss) = accepted else {
                // No decrease along a descent direction: we are at the minimum up to rounding.
                return Minimum {
                    x,
                    loss,
                    iterations: iteration - 1,
                    converged: true,
                };
            };

            let s: Vec<f64> = candidate.iter().zip(&x).map(|(a, b)| a - b).collect();
            let y: Vec<f64> = candidate_gradient
                .iter()
                .zip(&gradient)
                .map(|(a, b)| a - b)
                .collect();
            let curvature = dot(&s, &y);
            if curvature > 1e-12 {
                if history.len() == self.memory {
                    history.pop_front();
                }
                history.push_back(Correction {
                    rho: 1.0 / curvature,
                    s,
                    y,
                });
            }
            let change = loss - new_loss;
            std::mem::swap(&mut x, &mut candidate);
            std::mem::swap(&mut gradient, &mut candidate_gradient);
            loss = new_loss;
            on_iteration(iteration, loss);
            if change <= 1e-12 * loss.abs().max(1.0) {
                return Minimum {
                    x,
                    loss,
                    iterations: iteration,
                    converged: true,
                };
            }
        }
        let converged = max_abs(&gradient) < self.gradient_tolerance;
        Minimum {
            x,
            loss,
            iterations: self.max_iterations,
            converged,
        }
    }
}

struct Correction {
    s: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
}

/// The two-loop recursion: approximates H⁻¹·g from the stored corrections.
fn inverse_hessian_times(history: &VecDeque<Correction>, gradient: &[f64]) -> Vec<f64> {
    let mut q = gradient.to_vec();
    let mut alphas = Vec::with_capacity(history.len());
    for c in history.iter().rev() {
        let alpha = c.rho * dot(&c.s, &q);
        q.iter_mut()
            .zip(&c.y)
            .for_each(|(qi, yi)| *qi -= alpha * yi);
        alphas.push(alpha);
    }
    if let Some(newest) = history.back() {
        let gamma = dot(&newest.s, &newest.y) / dot(&newest.y, &newest.y);
        q.iter_mut().for_each(|qi| *qi *= gamma);
    }
    for (c, alpha) in history.iter().zip(alphas.iter().rev()) {
        let beta = c.rho * dot(&c.y, &q);
        q.iter_mut()
            .zip(&c.s)
            .for_each(|(qi, si)| *qi += (alpha - beta) * si);
    }
    q
}

fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_an_ill_conditioned_quadratic() {
        // f(x) = Σ cᵢ (xᵢ - tᵢ)², condition number 10⁴.
        let scales = [1.0, 10.0, 100.0, 10_000.0];
        let target = [3.0, -1.0, 0.5, 2.0];
        let lbfgs = Lbfgs {
            gradient_tolerance: 1e-8,
            max_iterations: 200,
            memory: 10,
        };
        let mut calls = 0;
        let minimum = lbfgs.minimize(
            vec![0.0; 4],
            |x, g| {
                let mut f = 0.0;
                for i in 0..4 {
                    f += scales[i] * (x[i] - target[i]).powi(2);
                    g[i] = 2.0 * scales[i] * (x[i] - target[i]);
                }
                f
            },
            |_, _| calls += 1,
        );
        assert!(minimum.converged);
        assert!(calls > 0 && calls < 100, "{calls} iterations");
        for (x, t) in minimum.x.iter().zip(target) {
            assert!((x - t).abs() < 1e-6, "{:?}", minimum.x);
        }
    }
}
