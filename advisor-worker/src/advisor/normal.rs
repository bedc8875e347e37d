//! The standard normal distribution: density, distribution function, sampling, and the
//! expected improvement it implies.

use std::f64::consts::{PI, SQRT_2};

use rand::RngExt;

pub(crate) fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * PI).sqrt()
}

pub(crate) fn cdf(z: f64) -> f64 {
    0.5 * erfc(-z / SQRT_2)
}

/// A standard normal draw (Box–Muller).
pub(crate) fn sample(rng: &mut impl RngExt) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u = 1.0 - rng.random::<f64>();
    let v = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

/// The complementary error function, to a relative error below 1.2e-7 (Numerical Recipes'
/// Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The logarithm of the expected improvement over `best` of a normal belief with `mean` and
/// `sd`, accurate far into the tail so that candidates whose improvement is tiny still compare.
pub(crate) fn ln_expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    let z = (mean - best) / sd;
    // EI = sd · h(z) with h(z) = φ(z) + zΦ(z).
    let ln_h = if z > -10.0 {
        (pdf(z) + z * cdf(z)).max(f64::MIN_POSITIVE).ln()
    } else {
        // h(z) ≈ φ(z)/z² (1 − 3/z² + 15/z⁴ − 105/z⁶ + 945/z⁸) for z → −∞, where the direct form
        // cancels catastrophically.
        let w = 1.0 / (z * z);
        let series = 1.0 + w * (-3.0 + w * (15.0 + w * (-105.0 + w * 945.0)));
        -0.5 * z * z - 0.5 * (2.0 * PI).ln() + w.ln() + series.ln()
    };
    sd.ln() + ln_h
}

/// [`ln_expected_improvement`] with its derivatives along the mean and the standard deviation:
/// with `EI = sd · h(z)`, `h′ = Φ`, so `∂ln EI/∂mean = Φ(z)/(h(z) sd)` and
/// `∂ln EI/∂sd = (1 − z Φ(z)/h(z)) / sd`.
pub(crate) fn ln_expected_improvement_with_slopes(
    mean: f64,
    sd: f64,
    best: f64,
) -> (f64, f64, f64) {
    let z = (mean - best) / sd;
    let ratio = if z > -10.0 {
        cdf(z) / (pdf(z) + z * cdf(z)).max(f64::MIN_POSITIVE)
    } else {
        // Φ(z) ≈ φ(z)/(−z) (1 − 1/z² + 3/z⁴ − 15/z⁶ + 105/z⁸) over the tail series of h above.
        let w = 1.0 / (z * z);
        let tail_cdf = 1.0 + w * (-1.0 + w * (3.0 + w * (-15.0 + w * 105.0)));
        let tail_h = 1.0 + w * (-3.0 + w * (15.0 + w * (-105.0 + w * 945.0)));
        -z * tail_cdf / tail_h
    };
    (
        ln_expected_improvement(mean, sd, best),
        ratio / sd,
        (1.0 - z * ratio) / sd,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        for (x, expected) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_1),
            (-1.0, 1.842_700_792_949_715),
            (3.0, 2.209_049_699_858_544e-5),
        ] {
            let got = erfc(x);
            assert!(
                (got - expected).abs() <= 2e-7 * expected,
                "erfc({x}) = {got}"
            );
        }
    }

    #[test]
    fn log_expected_improvement_is_continuous_into_the_tail() {
        let inside = ln_expected_improvement(-10.0 + 1e-9, 1.0, 0.0);
        let outside = ln_expected_improvement(-10.0 - 1e-9, 1.0, 0.0);
        assert!((inside - outside).abs() < 1e-4, "{inside} vs {outside}");
        assert!(ln_expected_improvement(-40.0, 1.0, 0.0).is_finite());
        // At the incumbent, EI = sd · φ(0).
        let at_best = ln_expected_improvement(0.0, 2.0, 0.0).exp();
        assert!((at_best - 2.0 * 0.398_942_280_4).abs() < 1e-6);
        // Better mean or more uncertainty: more expected improvement.
        assert!(ln_expected_improvement(0.5, 1.0, 0.0) > ln_expected_improvement(0.4, 1.0, 0.0));
        assert!(ln_expected_improvement(-1.0, 2.0, 0.0) > ln_expected_improvement(-1.0, 1.0, 0.0));
    }

    #[test]
    fn slopes_of_log_expected_improvement_match_finite_differences() {
        for (mean, sd) in [
            (0.3, 0.5),
            (-1.0, 0.2),
            (-3.0, 0.25),
            (-30.0, 2.0),
            (2.0, 1.0),
        ] {
            let (value, dmean, dsd) = ln_expected_improvement_with_slopes(mean, sd, 0.0);
            assert_eq!(value, ln_expected_improvement(mean, sd, 0.0));
            let h = 1e-6;
            let numeric_mean = (ln_expected_improvement(mean + h, sd, 0.0)
                - ln_expected_improvement(mean - h, sd, 0.0))
                / (2.0 * h);
            let numeric_sd = (ln_expected_improvement(mean, sd + h, 0.0)
                - ln_expected_improvement(mean, sd - h, 0.0))
                / (2.0 * h);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 * (1.0 + b.abs());
            assert!(
                close(dmean, numeric_mean),
                "mean {mean} sd {sd}: {dmean} vs {numeric_mean}"
            );
            assert!(
                close(dsd, numeric_sd),
                "mean {mean} sd {sd}: {dsd} vs {numeric_sd}"
            );
        }
    }
}
