//! Generated datasets, as Rafiki tabular CSV text (a header, then one row per sample, the target
//! last): one seeded generator and one set of shapes for every test and bench.

use std::fmt::Write as _;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// A seeded, portable generator: the same seed gives the same data on every machine.
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// Standard normal, by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let u1: f64 = self.0.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.0.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }
}

/// Appends one CSV row of `cells` (numbers with 4 decimals) and `last`.
fn row(csv: &mut String, cells: &[f64], last: impl std::fmt::Display) {
    for cell in cells {
        let _ = write!(csv, "{cell:.4},");
    }
    let _ = writeln!(csv, "{last}");
}

/// Gaussian blobs `x0…x{n-1}, label`: class `c` has mean 4 on feature `c % n_features`, 0
/// elsewhere, unit noise. Far enough apart that any sensible classifier scores above 0.95.
pub fn blobs_csv(rng: &mut Rng, rows: usize, n_features: usize, classes: &[&str]) -> String {
    let header: Vec<String> = (0..n_features).map(|j| format!("x{j}")).collect();
    let mut csv = format!("{},label\n", header.join(","));
    for _ in 0..rows {
        let class = rng.below(classes.len());
        let cells: Vec<f64> = (0..n_features)
            .map(|j| {
                let mean = if j == class % n_features { 4.0 } else { 0.0 };
                mean + rng.normal()
            })
            .collect();
        row(&mut csv, &cells, classes[class]);
    }
    csv
}

/// Four classes `c0…c3` in `n_features` (a multiple of 8) features `f0…`, each class 1.5 higher
/// on a quarter of them: separable, but not trivially.
pub fn four_class_csv(rng: &mut Rng, rows: usize, n_features: usize) -> String {
    let header: Vec<String> = (0..n_features).map(|j| format!("f{j}")).collect();
    let mut csv = format!("{},class\n", header.join(","));
    for _ in 0..rows {
        let class = rng.below(4);
        let cells: Vec<f64> = (0..n_features)
            .map(|j| {
                let own = j % 8 == class * 2 || j % 8 == class * 2 + 1;
                let mean = if own { 1.5 } else { 0.0 };
                mean + rng.normal()
            })
            .collect();
        row(&mut csv, &cells, format!("c{class}"));
    }
    csv
}

/// Two classes `0`/`1` with means ±1.5 in four features `f1…f4`, plus a string column
/// (`colour`, unrelated to the class), target `label`; the classes alternate.
pub fn classification_csv(rows: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut csv = String::from("f1,f2,f3,f4,colour,label\n");
    for i in 0..rows {
        let class = i % 2;
        let centre = if class == 0 { -1.5 } else { 1.5 };
        let cells: Vec<f64> = (0..4).map(|_| centre + rng.normal()).collect();
        let colour = ["red", "green", "blue"][i % 3];
        for cell in cells {
            let _ = write!(csv, "{cell:.4},");
        }
        let _ = writeln!(csv, "{colour},{class}");
    }
    csv
}

/// Two classes in two features `f1, f2`, target `y`, without randomness: class 0 around −2,
/// class 1 around 2, each cell off its centre by up to `6·step` (what the Python test templates
/// read).
pub fn two_class_csv(rows: usize, step: f64) -> String {
    let mut csv = String::from("f1,f2,y\n");
    for i in 0..rows {
        let class = i % 2;
        let centre = if class == 0 { -2.0 } else { 2.0 };
        let f1 = centre + (i % 7) as f64 * step;
        let f2 = centre - (i % 5) as f64 * step;
        let _ = writeln!(csv, "{f1},{f2},{class}");
    }
    csv
}

/// `y = bias + w·x + noise·ε` over standard normal features named `names`, weights `weights`.
pub fn linear_csv(
    rng: &mut Rng,
    rows: usize,
    names: &[&str],
    weights: &[f64],
    bias: f64,
    noise: f64,
) -> String {
    let mut csv = format!("{},y\n", names.join(","));
    for _ in 0..rows {
        let x: Vec<f64> = weights.iter().map(|_| rng.normal()).collect();
        let y =
            bias + x.iter().zip(weights).map(|(v, w)| v * w).sum::<f64>() + noise * rng.normal();
        row(&mut csv, &x, format!("{y:.4}"));
    }
    csv
}

/// y = 3·x1 − 2·x2 + 0.5·x3 + 0.3·ε.
pub fn regression_csv(rows: usize, seed: u64) -> String {
    linear_csv(
        &mut Rng::new(seed),
        rows,
        &["x1", "x2", "x3"],
        &[3.0, -2.0, 0.5],
        0.0,
        0.3,
    )
}

/// A string feature (`colour`, which decides the class `kind`) and a numeric one (`size`), both
/// with about 10% missing cells, spelled in the different ways missing values appear in files.
pub fn mixed_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = String::from("colour,size,kind\n");
    let colours = ["red", "green", "blue"];
    let kinds = ["apple", "pear", "plum"];
    let missing = ["", "NA", "nan"];
    for _ in 0..rows {
        let class = rng.below(3);
        let colour = if rng.below(10) == 0 {
            missing[rng.below(3)]
        } else {
            colours[class]
        };
        let size = if rng.below(10) == 0 {
            missing[rng.below(3)].to_owned()
        } else {
            format!("{:.3}", class as f64 * 2.0 + 0.5 * rng.normal())
        };
        let _ = writeln!(csv, "{colour},{size},{}", kinds[class]);
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let a = blobs_csv(&mut Rng::new(7), 20, 3, &["a", "b"]);
        let b = blobs_csv(&mut Rng::new(7), 20, 3, &["a", "b"]);
        assert_eq!(a, b);
        assert_ne!(a, blobs_csv(&mut Rng::new(8), 20, 3, &["a", "b"]));
    }

    #[test]
    fn every_row_has_as_many_cells_as_the_header() {
        let mut rng = Rng::new(1);
        for csv in [
            blobs_csv(&mut rng, 10, 4, &["a", "b", "c"]),
            four_class_csv(&mut rng, 10, 16),
            classification_csv(10, 1),
            two_class_csv(10, 0.1),
            regression_csv(10, 1),
            mixed_csv(&mut rng, 10),
        ] {
            let mut lines = csv.lines();
            let width = lines.next().map(|h| h.split(',').count());
            assert!(lines.all(|l| Some(l.split(',').count()) == width), "{csv}");
        }
    }
}
