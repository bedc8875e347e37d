//! Generated datasets and shortcuts shared by the suites.

use std::path::{Path, PathBuf};

use duma_runtime::{BuiltinTemplate, Model, TemplateError, TrialLogger, builtin_template};
pub use duma_testkit::data::{self, Rng, blobs_csv, mixed_csv};
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

pub const LINEAR_WEIGHTS: [f64; 4] = [2.0, -1.0, 0.5, 3.0];

/// `y = 3 + w·x + ε` with standard normal `x` and `ε`: the best possible R² is about 0.93.
pub fn linear_csv(rng: &mut Rng, rows: usize) -> String {
    data::linear_csv(rng, rows, &["a", "b", "c", "d"], &LINEAR_WEIGHTS, 3.0, 1.0)
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
