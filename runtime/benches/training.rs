//! Training and evaluation time of every built-in template on 2000 × 32 generated datasets, with
//! default knobs; one line per template.
//!
//! `cargo bench -p duma-runtime` runs it in the release profile. Where building every dependency
//! in release is too costly, optimising only this crate gives upper bounds (CSV parsing, in the
//! `csv` crate, then stays unoptimised):
//! `cargo test -p duma-runtime --bench training --config 'profile.dev.package.duma-runtime.opt-level=3'`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use duma_runtime::{TrialLogger, builtin_templates};

#[path = "../tests/runtime/support.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use support::{Files, Rng, data};

const ROWS: usize = 2000;
const FEATURES: usize = 32;

/// Four classes whose means differ by 1.5 on a few features each: separable, but not trivially.
fn classification_csv(rng: &mut Rng, rows: usize) -> String {
    data::four_class_csv(rng, rows, FEATURES)
}

/// `y = w·x + ε` over all 32 features, weights from -2 to 2, unit noise.
fn regression_csv(rng: &mut Rng, rows: usize) -> String {
    let names: Vec<String> = (0..FEATURES).map(|j| format!("f{j}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let weights: Vec<f64> = (0..FEATURES)
        .map(|j| -2.0 + 4.0 * j as f64 / 31.0)
        .collect();
    data::linear_csv(rng, rows, &names, &weights, 0.0, 1.0)
}

fn main() {
    let mut rng = Rng::new(2024);
    let files = Files::new();
    let classification = (
        files.write("c-train.csv", &classification_csv(&mut rng, ROWS)),
        files.write("c-valid.csv", &classification_csv(&mut rng, ROWS / 2)),
    );
    let regression = (
        files.write("r-train.csv", &regression_csv(&mut rng, ROWS)),
        files.write("r-valid.csv", &regression_csv(&mut rng, ROWS / 2)),
    );
    println!("{ROWS} training rows × {FEATURES} features, default knobs");
    for template in builtin_templates() {
        let (train, validation) = if template.task == "TABULAR_CLASSIFICATION" {
            &classification
        } else {
            &regression
        };
        let mut model = template.build(&template.default_knobs()).unwrap();
        let mut log = TrialLogger::new();
        let started = Instant::now();
        model
            .train(train, &serde_json::Map::new(), &mut log)
            .unwrap();
        let trained = started.elapsed();
        let started = Instant::now();
        let score = model.evaluate(validation, &mut log).unwrap();
        let evaluated = started.elapsed();
        let parameters = model.dump_parameters().unwrap();
        println!(
            "{:<24} train {:>8.1} ms   evaluate {:>7.1} ms ({} rows)   score {score:.4}   parameters {} KiB",
            template.name,
            trained.as_secs_f64() * 1e3,
            evaluated.as_secs_f64() * 1e3,
            ROWS / 2,
            parameters.len() / 1024
        );
    }
}
