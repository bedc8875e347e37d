//! A Gaussian process over the unit hypercube of a knob space.
//!
//! Kernel: Matérn 5/2 with one length scale per coordinate (automatic relevance determination);
//! a categorical coordinate adds `1/ℓ²` to the squared distance when two points differ in it.
//! Length scales, signal variance and noise are fitted by maximising the marginal likelihood
//! plus weak log-normal priors, by resilient gradient steps warm-started from the previous fit.
//!
//! Kernel values are computed over arrays laid out so that the compiler vectorises them, with a
//! polynomial `exp`: evaluating the kernel is most of the cost of a suggestion.

use super::space::{Coordinate, Point};
use duma_runtime::linalg::{cholesky, dot, inverse_from_cholesky, solve_cholesky};

const SQRT5: f64 = 2.236_067_977_499_79;
/// Queries predicted together: their cross-covariances stay in cache.
const BLOCK: usize = 32;

/// Bounds (natural log) and weak normal priors that keep a fit on few trials sane.
const LENGTH_SCALE_BOUNDS: (f64, f64) = (-4.6, 3.0); // 0.01 ..= 20
const LENGTH_SCALE_PRIOR: (f64, f64) = (-0.7, 1.5); // centred on 0.5
const SIGNAL_BOUNDS: (f64, f64) = (-4.6, 4.6);
const SIGNAL_PRIOR: (f64, f64) = (0.0, 1.5);
const NOISE_BOUNDS: (f64, f64) = (-13.8, 0.0); // 1e-6 ..= 1

/// Kernel hyperparameters, as natural logarithms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hyper {
    length_scales: Vec<f64>,
    signal: f64,
    noise: f64,
}

impl Hyper {
    fn initial(coordinates: &[Coordinate]) -> Self {
        Self {
            length_scales: coordinates
                .iter()
                .map(|c| match c {
                    Coordinate::Numeric => 0.3f64.ln(),
                    Coordinate::Categorical { .. } => 0.0,
                })
                .collect(),
            signal: 0.0,
            noise: 1e-4f64.ln(),
        }
    }

    /// Length scales, then signal, then noise.
    fn to_vec(&self) -> Vec<f64> {
        let mut v = self.length_scales.clone();
        v.push(self.signal);
        v.push(self.noise);
        v
    }

    fn from_vec(v: &[f64]) -> Self {
        let d = v.len().saturating_sub(2);
        Self {
            length_scales: v[..d].to_vec(),
            signal: v.get(d).copied().unwrap_or(0.0),
            noise: v.get(d + 1).copied().unwrap_or(-9.2),
        }
    }

    fn inverse_squared_length_scales(&self) -> Vec<f64> {
        self.length_scales
            .iter()
            .map(|l| (-2.0 * l).exp())
            .collect()
    }
}

/// Fits the hyperparameters to standardised scores `y` at `points`, from `warm` when given.
pub(crate) fn fit(
    coordinates: &[Coordinate],
    points: &[Point],
    y: &[f64],
    warm: Option<Hyper>,
    steps: usize,
) -> Hyper {
    let d = coordinates.len();
    let start = match warm {
        Some(h) if h.length_scales.len() == d => h,
        _ => Hyper::initial(coordinates),
    };
    let differences = PairDifferences::new(coordinates, points);
    // iRprop−: per-parameter steps grow while the gradient keeps its sign and shrink when it
    // flips; robust without a line search.
    let mut theta = start.to_vec();
    let mut best = (f64::NEG_INFINITY, theta.clone());
    let mut step = vec![0.1f64; theta.len()];
    let mut previous = vec![0.0; theta.len()];
    for _ in 0..=steps {
        let Some((value, gradient)) = objective(&theta, &differences, y) else {
            break;
        };
        if value > best.0 {
            best = (value, theta.clone());
        }
        for (i, g) in gradient.iter().enumerate() {
            if g * previous[i] < 0.0 {
                step[i] = (step[i] * 0.5).max(1e-4);
                previous[i] = 0.0;
                continue;
            }
            if g * previous[i] > 0.0 {
                step[i] = (step[i] * 1.2).min(1.0);
            }
            previous[i] = *g;
            let (lo, hi) = if i < d {
                LENGTH_SCALE_BOUNDS
            } else if i == d {
                SIGNAL_BOUNDS
            } else {
                NOISE_BOUNDS
            };
            theta[i] = (theta[i] + step[i] * g.signum()).clamp(lo, hi);
        }
    }
    Hyper::from_vec(&best.1)
}

/// Squared per-coordinate differences of every pair `i < j` of points, coordinate-major (a
/// categorical coordinate contributes 1 when the choices differ).
struct PairDifferences {
    n: usize,
    by_coordinate: Vec<Vec<f64>>,
}

impl PairDifferences {
    fn new(coordinates: &[Coordinate], points: &[Point]) -> Self {
        let n = points.len();
        let by_coordinate = coordinates
            .iter()
            .enumerate()
            .map(|(k, coordinate)| {
                let mut column = Vec::with_capacity(n * n.saturating_sub(1) / 2);
                for i in 0..n {
                    let a = points[i][k];
                    column.extend(points[i + 1..].iter().map(|p| match coordinate {
                        Coordinate::Numeric => (a - p[k]) * (a - p[k]),
                        Coordinate::Categorical { .. } => f64::from(u8::from(a != p[k])),
                    }));
                }
                column
            })
            .collect();
        Self { n, by_coordinate }
    }

    /// Kernel values of the pairs and their derivative factors `g(r)`, with
    /// `∂k/∂ln ℓ_k = g(r) · Δ²_k / ℓ_k²`.
    fn kernel(&self, inverse_squared: &[f64], signal: f64) -> (Vec<f64>, Vec<f64>) {
        let pairs = self.n * self.n.saturating_sub(1) / 2;
        let mut r2 = vec![0.0; pairs];
        for (column, w) in self.by_coordinate.iter().zip(inverse_squared) {
            for (r, d) in r2.iter_mut().zip(column) {
                *r += w * d;
            }
        }
        let mut values = vec![0.0; pairs];
        let mut factors = vec![0.0; pairs];
        for ((r2, value), factor) in r2.iter().zip(&mut values).zip(&mut factors) {
            let r = r2.sqrt();
            let e = signal * exp_nonpositive(-SQRT5 * r);
            *value = (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
            *factor = 5.0 / 3.0 * (1.0 + SQRT5 * r) * e;
        }
        (values, factors)
    }
}

/// The symmetric `n × n` matrix with `diagonal` and the pair values off the diagonal.
fn pair_matrix(n: usize, pair_values: &[f64], diagonal: f64) -> Vec<f64> {
    let mut k = vec![0.0; n * n];
    let mut pair = 0;
    for i in 0..n {
        k[i * n + i] = diagonal;
        for j in (i + 1)..n {
            k[i * n + j] = pair_values[pair];
            k[j * n + i] = pair_values[pair];
            pair += 1;
        }
    }
    k
}

fn ln_normal_prior(x: f64, (mean, sd): (f64, f64)) -> (f64, f64) {
    let z = (x - mean) / sd;
    (-0.5 * z * z, -z / sd)
}

/// The log marginal likelihood plus log priors at `theta` (see [`Hyper::to_vec`]), and its
/// gradient; None when the kernel matrix is numerically singular.
fn objective(theta: &[f64], differences: &PairDifferences, y: &[f64]) -> Option<(f64, Vec<f64>)> {
    let n = y.len();
    let d = theta.len() - 2;
    let hyper = Hyper::from_vec(theta);
    let inverse_squared = hyper.inverse_squared_length_scales();
    let (signal, noise) = (hyper.signal.exp(), hyper.noise.exp());
    let (values, factors) = differences.kernel(&inverse_squared, signal);
    let mut chol = pair_matrix(n, &values, signal + noise);
    if !cholesky(&mut chol, n) {
        return None;
    }
    let alpha = solve_cholesky(&chol, n, y);
    let ln_det: f64 = (0..n).map(|i| chol[i * n + i].ln()).sum();
    let mut value = -0.5 * dot(y, &alpha) - ln_det;
    let inverse = inverse_from_cholesky(&chol, n);
    // ∂/∂θ = ½ Σ_ij W_ij ∂K_ij/∂θ with W = ααᵀ − K⁻¹; each off-diagonal pair counts twice.
    let mut gradient = vec![0.0; d + 2];
    let mut weights = Vec::with_capacity(values.len());
    for i in 0..n {
        let w = 0.5 * (alpha[i] * alpha[i] - inverse[i * n + i]);
        gradient[d] += w * signal;
        gradient[d + 1] += w * noise;
        weights.extend(((i + 1)..n).map(|j| alpha[i] * alpha[j] - inverse[i * n + j]));
    }
    gradient[d] += dot(&weights, &values);
    let weighted: Vec<f64> = weights.iter().zip(&factors).map(|(w, f)| w * f).collect();
    for (k, column) in differences.by_coordinate.iter().enumerate() {
        gradient[k] += dot(&weighted, column) * inverse_squared[k];
    }
    for (length_scale, g) in theta.iter().zip(&mut gradient).take(d) {
        let (p, dp) = ln_normal_prior(*length_scale, LENGTH_SCALE_PRIOR);
        value += p;
        *g += dp;
    }
    let (p, dp) = ln_normal_prior(theta[d], SIGNAL_PRIOR);
    value += p;
    gradient[d] += dp;
    value.is_finite().then_some((value, gradient))
}

/// The posterior of the GP given training points and standardised scores.
pub(crate) struct Posterior {
    coordinates: Vec<Coordinate>,
    points: Vec<Point>,
    inverse_squared: Vec<f64>,
    signal: f64,
    chol: Vec<f64>,
    alpha: Vec<f64>,
}

impl Posterior {
    /// None when the kernel matrix stays singular even with jitter.
    pub(crate) fn new(
        coordinates: &[Coordinate],
        points: Vec<Point>,
        y: &[f64],
        hyper: &Hyper,
    ) -> Option<Self> {
        let n = points.len();
        let inverse_squared = hyper.inverse_squared_length_scales();
        let signal = hyper.signal.exp();
        let (values, _) =
            PairDifferences::new(coordinates, &points).kernel(&inverse_squared, signal);
        let k = pair_matrix(n, &values, signal + hyper.noise.exp());
        // Jitter rescues a matrix made singular by pending proposals next to trials.
        let mut jitter = 0.0;
        for _ in 0..6 {
            let mut chol = k.clone();
            for i in 0..n {
                chol[i * n + i] += jitter;
            }
            if cholesky(&mut chol, n) {
                return Some(Self {
                    coordinates: coordinates.to_vec(),
                    alpha: solve_cholesky(&chol, n, y),
                    points,
                    inverse_squared,
                    signal,
                    chol,
                });
            }
            jitter = if jitter == 0.0 { 1e-8 } else { jitter * 100.0 };
        }
        None
    }

    /// Mean and standard deviation at each query (standardised units).
    pub(crate) fn predict(&self, queries: &[Point]) -> Vec<(f64, f64)> {
        let n = self.points.len();
        let mut predictions = Vec::with_capacity(queries.len());
        let mut v = vec![0.0; n * BLOCK];
        let mut columns = vec![0.0; self.coordinates.len() * BLOCK];
        for block in queries.chunks(BLOCK) {
            let width = block.len();
            // The block's coordinates, coordinate-major.
            for (j, query) in block.iter().enumerate() {
                for (k, x) in query.iter().enumerate() {
                    columns[k * width + j] = *x;
                }
            }
            // Cross-covariances K*, one row of `width` per training point.
            let mut r2 = vec![0.0; width];
            for (row, point) in v.chunks_exact_mut(width).zip(&self.points) {
                r2.fill(0.0);
                for (((column, coordinate), w), x) in columns
                    .chunks_exact(width)
                    .zip(&self.coordinates)
                    .zip(&self.inverse_squared)
                    .zip(point)
                {
                    match coordinate {
                        Coordinate::Numeric => {
                            for (r, q) in r2.iter_mut().zip(column) {
                                *r += w * (q - x) * (q - x);
                            }
                        }
                        Coordinate::Categorical { .. } => {
                            for (r, q) in r2.iter_mut().zip(column) {
                                *r += if q == x { 0.0 } else { *w };
                            }
                        }
                    }
                }
                for (k, r2) in row.iter_mut().zip(&r2) {
                    let r = r2.sqrt();
                    *k = self.signal
                        * (1.0 + SQRT5 * r + 5.0 / 3.0 * r2)
                        * exp_nonpositive(-SQRT5 * r);
                }
            }
            // Mean α·k*; solving L V = K* row by row, the variance the data explains is VᵀV.
            let mut means = vec![0.0; width];
            let mut variances = vec![self.signal; width];
            for i in 0..n {
                let (done, rest) = v.split_at_mut(i * width);
                let row = &mut rest[..width];
                for (mean, k) in means.iter_mut().zip(row.iter()) {
                    *mean += self.alpha[i] * k;
                }
                for (previous, l) in done.chunks_exact(width).zip(&self.chol[i * n..i * n + i]) {
                    for (x, y) in row.iter_mut().zip(previous) {
                        *x -= l * y;
                    }
                }
                let diagonal = self.chol[i * n + i];
                for (x, variance) in row.iter_mut().zip(variances.iter_mut()) {
                    *x /= diagonal;
                    *variance -= *x * *x;
                }
            }
            predictions.extend(
                means
                    .into_iter()
                    .zip(variances)
                    .map(|(mean, variance)| (mean, variance.max(1e-12).sqrt())),
            );
        }
        predictions
    }
}

/// The posterior at one point with its gradient (zero along categorical coordinates).
#[derive(Debug, Clone)]
pub(crate) struct Belief {
    pub(crate) mean: f64,
    pub(crate) sd: f64,
    pub(crate) mean_gradient: Vec<f64>,
    pub(crate) sd_gradient: Vec<f64>,
}

impl Posterior {
    /// Mean and standard deviation at `x` and their derivatives along each coordinate. For the
    /// Matérn 5/2 kernel `∂k/∂x_c = −σ² · 5/3 (1 + √5 r) e^(−√5 r) · (x_c − p_c) / ℓ_c²`, smooth
    /// at `r = 0`.
    pub(crate) fn belief(&self, x: &[f64]) -> Belief {
        let n = self.points.len();
        let mut k = vec![0.0; n];
        let mut slope = vec![0.0; n];
        for ((point, k), slope) in self.points.iter().zip(&mut k).zip(&mut slope) {
            let r2 = squared_distance(&self.coordinates, &self.inverse_squared, x, point);
            let r = r2.sqrt();
            let e = self.signal * exp_nonpositive(-SQRT5 * r);
            *k = (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
            *slope = -5.0 / 3.0 * (1.0 + SQRT5 * r) * e;
        }
        let mean = dot(&self.alpha, &k);
        // v = L⁻¹k*, then w = L⁻ᵀv = K⁻¹k*: var = σ² − vᵀv and ∂var = −2 wᵀ∂k*.
        let mut v = k;
        for i in 0..n {
            let row = &self.chol[i * n..i * n + i];
            v[i] = (v[i] - dot(row, &v[..i])) / self.chol[i * n + i];
        }
        let variance = self.signal - dot(&v, &v);
        let mut w = v;
        for i in (0..n).rev() {
            let below: f64 = w[i + 1..]
                .iter()
                .enumerate()
                .map(|(k, wj)| self.chol[(i + 1 + k) * n + i] * wj)
                .sum();
            w[i] = (w[i] - below) / self.chol[i * n + i];
        }
        let sd = variance.max(1e-12).sqrt();
        let d = self.coordinates.len();
        let (mut mean_gradient, mut sd_gradient) = (vec![0.0; d], vec![0.0; d]);
        for (c, coordinate) in self.coordinates.iter().enumerate() {
            if !matches!(coordinate, Coordinate::Numeric) {
                continue;
            }
            let (mut dmean, mut dvariance) = (0.0, 0.0);
            for ((point, slope), (alpha, w)) in self
                .points
                .iter()
                .zip(&slope)
                .zip(self.alpha.iter().zip(&w))
            {
                let dk = slope * self.inverse_squared[c] * (x[c] - point[c]);
                dmean += alpha * dk;
                dvariance -= 2.0 * w * dk;
            }
            mean_gradient[c] = dmean;
            if variance > 1e-12 {
                sd_gradient[c] = dvariance / (2.0 * sd);
            }
        }
        Belief {
            mean,
            sd,
            mean_gradient,
            sd_gradient,
        }
    }

    /// Length scales of the fitted kernel (`ℓ`, in unit-cube units), one per coordinate.
    pub(crate) fn length_scales(&self) -> Vec<f64> {
        self.inverse_squared
            .iter()
            .map(|w| w.sqrt().recip())
            .collect()
    }
}

fn squared_distance(
    coordinates: &[Coordinate],
    inverse_squared: &[f64],
    a: &[f64],
    b: &[f64],
) -> f64 {
    coordinates
        .iter()
        .zip(inverse_squared)
        .zip(a.iter().zip(b))
        .map(|((coordinate, w), (a, b))| match coordinate {
            Coordinate::Numeric => w * (a - b) * (a - b),
            Coordinate::Categorical { .. } if a == b => 0.0,
            Coordinate::Categorical { .. } => *w,
        })
        .sum()
}

/// `eˣ` for `x ≤ 0` to a relative error below 1e-13, written so that loops over it vectorise:
/// `x = k ln 2 + f` with `|f| ≤ ln 2 / 2`, a degree-12 Taylor polynomial for `eᶠ`, and `2ᵏ`
/// built from its bits. Values below `e⁻⁷⁰⁰` come out as `e⁻⁷⁰⁰`, zero for a kernel.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // Adding 1.5·2⁵² rounds x/ln 2 to an integer held in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.clamp(-700.0, 0.0);
    let shifted = x * std::f64::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let f = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    for coefficient in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * f + coefficient;
    }
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f64::from_bits(k_bits.wrapping_add(1023) << 52)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn polynomial_exp_matches_the_standard_one() {
        let mut x = 0.0;
        while x > -710.0 {
            let (got, expected) = (exp_nonpositive(x), x.max(-700.0).exp());
            assert!(
                (got - expected).abs() <= 1e-13 * expected,
                "exp({x}) = {got}, expected {expected}"
            );
            x -= 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    fn sample_data() -> (Vec<Coordinate>, Vec<Point>, Vec<f64>) {
        let coordinates = vec![
            Coordinate::Numeric,
            Coordinate::Numeric,
            Coordinate::Categorical { choices: 3 },
        ];
        let points = vec![
            vec![0.1, 0.2, 0.0],
            vec![0.5, 0.9, 1.0],
            vec![0.7, 0.3, 2.0],
            vec![0.2, 0.6, 1.0],
            vec![0.9, 0.1, 0.0],
        ];
        (coordinates, points, vec![0.3, -1.0, 0.8, 0.1, -0.2])
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (coordinates, points, y) = sample_data();
        let differences = PairDifferences::new(&coordinates, &points);
        let theta = [-1.0, -0.5, 0.2, 0.3, -3.0];
        let (_, gradient) = objective(&theta, &differences, &y).unwrap();
        for i in 0..theta.len() {
            let h = 1e-6;
            let (mut up, mut down) = (theta, theta);
            up[i] += h;
            down[i] -= h;
            let numeric = (objective(&up, &differences, &y).unwrap().0
                - objective(&down, &differences, &y).unwrap().0)
                / (2.0 * h);
            assert!(
                (numeric - gradient[i]).abs() < 1e-5 * (1.0 + numeric.abs()),
                "θ{i}: analytic {} numeric {numeric}",
                gradient[i]
            );
        }
    }

    #[test]
    fn the_belief_agrees_with_predict_and_its_gradient_with_finite_differences() {
        let (coordinates, points, y) = sample_data();
        let hyper = Hyper {
            length_scales: vec![-1.0, -0.7, 0.0],
            signal: 0.3,
            noise: -6.0,
        };
        let posterior = Posterior::new(&coordinates, points, &y, &hyper).unwrap();
        let x = vec![0.35, 0.45, 1.0];
        let belief = posterior.belief(&x);
        let (mean, sd) = posterior.predict(std::slice::from_ref(&x))[0];
        assert!((belief.mean - mean).abs() < 1e-10 && (belief.sd - sd).abs() < 1e-10);
        for c in 0..2 {
            let h = 1e-6;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[c] += h;
            down[c] -= h;
            let (up, down) = (posterior.belief(&up), posterior.belief(&down));
            let dmean = (up.mean - down.mean) / (2.0 * h);
            let dsd = (up.sd - down.sd) / (2.0 * h);
            assert!(
                (dmean - belief.mean_gradient[c]).abs() < 1e-5,
                "mean {c}: {dmean} vs {}",
                belief.mean_gradient[c]
            );
            assert!(
                (dsd - belief.sd_gradient[c]).abs() < 1e-5,
                "sd {c}: {dsd} vs {}",
                belief.sd_gradient[c]
            );
        }
        assert_eq!(belief.mean_gradient[2], 0.0);
    }

    #[test]
    fn the_fit_raises_the_objective() {
        let (coordinates, points, y) = sample_data();
        let differences = PairDifferences::new(&coordinates, &points);
        let initial = Hyper::initial(&coordinates);
        let fitted = fit(&coordinates, &points, &y, None, 40);
        let value = |h: &Hyper| objective(&h.to_vec(), &differences, &y).unwrap().0;
        assert!(value(&fitted) > value(&initial));
    }

    #[test]
    fn the_posterior_interpolates_and_is_uncertain_far_away() {
        let (coordinates, points, y) = sample_data();
        let hyper = Hyper {
            length_scales: vec![-1.5, -1.5, 0.0],
            signal: 0.0,
            noise: -13.0,
        };
        let posterior = Posterior::new(&coordinates, points.clone(), &y, &hyper).unwrap();
        for ((mean, sd), expected) in posterior.predict(&points).into_iter().zip(&y) {
            assert!((mean - expected).abs() < 1e-3, "{mean} vs {expected}");
            assert!(sd < 1e-2);
        }
        let far = posterior.predict(&[vec![0.95, 0.95, 2.0]]);
        assert!(far[0].1 > 0.5, "{far:?}");
        // Many queries, over several blocks, agree with one-by-one predictions.
        let queries: Vec<Point> = (0..70)
            .map(|i| vec![i as f64 / 70.0, 1.0 - i as f64 / 70.0, (i % 3) as f64])
            .collect();
        let together = posterior.predict(&queries);
        for (query, prediction) in queries.iter().zip(&together) {
            let alone = posterior.predict(std::slice::from_ref(query))[0];
            assert!((alone.0 - prediction.0).abs() < 1e-12);
            assert!((alone.1 - prediction.1).abs() < 1e-12);
        }
    }
}
