//! What the sandbox costs a Python template (`scripts/bench-sandbox`): the time from a trial's
//! start to its first `train` call (start the runner, import the template, check the knobs) and
//! the serving throughput of one runner (one query per call), each unsandboxed and sandboxed in
//! the same run, rounds interleaved so both see the same machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duma_common::config::{SandboxMode, SandboxSettings};
use duma_domain::Knobs;
use duma_runtime::TrialLogger;
use duma_runtime::python::{KillSwitch, PythonEnv, PythonTemplate, VenvCache};
use duma_runtime::sandbox::Sandbox;
use serde_json::json;

const INTERPRETER: &str = "/usr/bin/python3";
const STARTS: usize = 15;
const PREDICTS: usize = 2_000;
const ROUNDS: usize = 3;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template(mode: SandboxMode) -> PythonTemplate {
    let settings = SandboxSettings {
        mode,
        ..SandboxSettings::default()
    };
    let venvs = repository().join("target/duma-test-cache/venvs");
    let sdk = repository().join("python");
    let sandbox = Arc::new(Sandbox::new(
        &settings,
        Path::new(INTERPRETER),
        &venvs,
        &sdk,
    ));
    let python = VenvCache::new(&venvs, Path::new(INTERPRETER), sandbox.clone())
        .interpreter(&Default::default())
        .expect("the base environment (needs the package index once)");
    PythonTemplate {
        source: repository().join("python/tests/templates/rafiki_centroid.py"),
        class_name: "RafikiCentroid".into(),
        env: PythonEnv {
            python,
            sdk_path: sdk,
            work_root: std::env::temp_dir().join("duma-bench-sandbox"),
            sandbox,
            devices: Default::default(),
        },
    }
}

fn knobs() -> Knobs {
    serde_json::from_value(json!({
        "temperature": 1.0, "epochs": 1, "metric": "euclidean", "max_rows": 10000, "quick_eval": false,
    }))
    .unwrap()
}

/// Median time from nothing to a model ready for `train`.
fn start(template: &PythonTemplate) -> Duration {
    let mut times: Vec<Duration> = (0..STARTS)
        .map(|_| {
            let began = Instant::now();
            let model = template.build(&knobs(), &KillSwitch::new()).unwrap();
            let took = began.elapsed();
            drop(model);
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Predictions per second of one trained runner, one query per call.
fn serve(template: &PythonTemplate, dataset: &Path) -> f64 {
    let mut model = template.build(&knobs(), &KillSwitch::new()).unwrap();
    model
        .train(dataset, &Default::default(), &mut TrialLogger::new())
        .unwrap();
    let query = [json!({"f1": 1.0, "f2": -1.0})];
    let began = Instant::now();
    for _ in 0..PREDICTS {
        model.predict(&query).unwrap();
    }
    PREDICTS as f64 / began.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("train.csv");
    let csv = duma_testkit::data::two_class_csv(200, 0.1);
    std::fs::write(&dataset, csv).unwrap();
    let off = template(SandboxMode::Off);
    let on = template(SandboxMode::Bubblewrap);
    let (mut starts, mut rates) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..ROUNDS {
        for (i, template) in [&off, &on].into_iter().enumerate() {
            starts[i].push(start(template));
            rates[i].push(serve(template, &dataset));
        }
    }
    let median_start = |i: usize| {
        let mut s = starts[i].clone();
        s.sort();
        s[s.len() / 2].as_secs_f64() * 1e3
    };
    let median_rate = |i: usize| {
        let mut r = rates[i].clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    println!("Python template (rafiki_centroid.py), {ROUNDS} interleaved rounds, medians:");
    println!("| | unsandboxed (floor) | sandboxed | cost |");
    println!("|---|---|---|---|");
    println!(
        "| trial start → first train call | {:.1} ms | {:.1} ms | {:+.1} ms |",
        median_start(0),
        median_start(1),
        median_start(1) - median_start(0)
    );
    println!(
        "| serving, 1 query per call | {:.0} /s | {:.0} /s | {:+.1}% |",
        median_rate(0),
        median_rate(1),
        (median_rate(1) / median_rate(0) - 1.0) * 100.0
    );
}
