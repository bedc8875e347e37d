//! Generated datasets and shortcuts shared by the suites.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use duma_runtime::{BuiltinTemplate, Model, TemplateError, TrialLogger, builtin_template};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

pub const CLASSIFIERS: [&str; 3] = [
    "duma.tabular.LogisticRegression",
    "duma.tabular.RandomForestClassifier",
    "duma.tabular.KNeighborsClassifier",
];
pub const REGRESSORS: [&str; 2] = [
    "duma.tabular.RidgeRegression",
    "duma.tabular.RandomForestRegressor",
];

pub fn template(model_class: &str) -> &'static BuiltinTemplate {
    builtin_template(model_class).unwrap_or_else(|| panic!("no template {model_class}"))
}

/// A temporary directory holding the CSV files of one test.
pub struct Files {
    dir: TempDir,
}

impl Files {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

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

/// Gaussian blobs: class `c` has mean 4 on feature `c % n_features`, 0 elsewhere, unit noise.
/// Far enough apart that any sensible classifier scores above 0.95.
pub fn blobs_csv(rng: &mut Rng, rows: usize, n_features: usize, classes: &[&str]) -> String {
    let mut csv = String::new();
    let header: Vec<String> = (0..n_features).map(|j| format!("x{j}")).collect();
    writeln!(csv, "{},label", header.join(",")).unwrap();
    for _ in 0..rows {
        let class = rng.below(classes.len());
        for j in 0..n_features {
            let mean = if j == class % n_features { 4.0 } else { 0.0 };
            write!(csv, "{:.4},", mean + rng.normal()).unwrap();
        }
        writeln!(csv, "{}", classes[class]).unwrap();
    }
    csv
}

pub const LINEAR_WEIGHTS: [f64; 4] = [2.0, -1.0, 0.5, 3.0];

/// `y = 3 + w·x + ε` with standard normal `x` and `ε`: the best possible R² is about 0.93.
pub fn linear_csv(rng: &mut Rng, rows: usize) -> String {
    let mut csv = String::from("a,b,c,d,y\n");
    for _ in 0..rows {
        let x: Vec<f64> = LINEAR_WEIGHTS.iter().map(|_| rng.normal()).collect();
        let y = 3.0
            + x.iter()
                .zip(LINEAR_WEIGHTS)
                .map(|(v, w)| v * w)
                .sum::<f64>()
            + rng.normal();
        for v in &x {
            write!(csv, "{v:.4},").unwrap();
        }
        writeln!(csv, "{y:.4}").unwrap();
    }
    csv
}

/// A string feature (`colour`, which decides the class) and a numeric one (`size`), both with
/// about 10% missing cells, spelled in the different ways missing values appear in files.
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
        writeln!(csv, "{colour},{size},{}", kinds[class]).unwrap();
    }
    csv
}

pub fn no_args() -> Map<String, Value> {
    Map::new()
}

pub fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// Builds `model_class` with its default knobs and trains it.
pub fn train(
    model_class: &str,
    dataset: &Path,
    train_args: &Map<String, Value>,
) -> Result<Box<dyn Model>, TemplateError> {
    let template = template(model_class);
    let mut model = template.build(&template.default_knobs())?;
    model.train(dataset, train_args, &mut TrialLogger::new())?;
    Ok(model)
}

pub fn evaluate(model: &mut Box<dyn Model>, dataset: &Path) -> f64 {
    model.evaluate(dataset, &mut TrialLogger::new()).unwrap()
}

/// Feature rows of a CSV file as queries (every column but the last).
pub fn queries_from(csv: &str, limit: usize) -> Vec<Value> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .take(limit)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let mut query = Map::new();
            for (name, cell) in header.iter().zip(&cells).take(header.len() - 1) {
                let value = cell.parse::<f64>().map_or(json!(cell), |v| json!(v));
                query.insert((*name).to_owned(), value);
            }
            Value::Object(query)
        })
        .collect()
}

pub fn dataset_reason<T>(result: Result<T, TemplateError>) -> String {
    match result {
        Err(TemplateError::InvalidDataset { reason }) => reason,
        Err(other) => panic!("expected InvalidDataset, got {other}"),
        Ok(_) => panic!("expected InvalidDataset, got success"),
    }
}

/// The class probabilities a classifier predicts for one query.
pub fn probabilities(model: &dyn Model, query: Value) -> Vec<f64> {
    let prediction = model.predict(&[query]).unwrap().remove(0);
    serde_json::from_value(prediction).unwrap()
}
