//! Platform overhead per trial: the time between one trial's end and the next trial's start on
//! the same worker slot, next to the floor — the same template trained, evaluated and dumped
//! in-process with the same knobs and data, no platform at all.
//!
//! Runs the real admin, advisor and one train worker (one slot) over the test kit's PostgreSQL
//! and Redis. `cargo bench -p duma-e2e --bench overhead`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use duma_e2e::stack;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use duma_common::db::trials;
use duma_domain::TrainJobId;
use serde_json::json;

const TRIALS: usize = 40;
const TEMPLATE: &str = "LogisticRegression";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn bench() {
    let stack = stack::spawn_stack(1).await;
    let task = "TABULAR_CLASSIFICATION";
    let train_csv = duma_e2e::data::classification_csv(2000, 1);
    let val_csv = duma_e2e::data::classification_csv(1000, 2);
    let dir = tempfile::tempdir().unwrap();
    let (train_path, val_path) = (dir.path().join("train.csv"), dir.path().join("val.csv"));
    std::fs::write(&train_path, &train_csv).unwrap();
    std::fs::write(&val_path, &val_csv).unwrap();
    let train = stack.upload_dataset(task, train_csv).await;
    let val = stack.upload_dataset(task, val_csv).await;
    let models = stack.builtin_models(task, &[TEMPLATE]).await;
    let started = Instant::now();
    let job = stack
        .post(
            "/train_jobs",
            json!({"app": "bench", "task": task, "train_dataset_id": train, "val_dataset_id": val,
                   "budget": {"MODEL_TRIAL_COUNT": TRIALS}, "model_ids": models}),
        )
        .await;
    let ended = stack.wait_for_end("bench", Duration::from_secs(600)).await;
    let wall = started.elapsed();
    assert_eq!(ended["status"], "STOPPED");

    let db = stack.ctx.pool.get().await.unwrap();
    let job_id: TrainJobId = job["id"].as_str().unwrap().parse().unwrap();
    let mut rows = trials::list_by_train_job(&db, job_id, 1000, 0)
        .await
        .unwrap();
    rows.sort_by_key(|t| t.datetime_started);
    let seconds =
        |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let mut gaps: Vec<f64> = rows
        .windows(2)
        .filter_map(|w| Some(seconds(w[0].datetime_stopped?, w[1].datetime_started)))
        .collect();
    let durations: Vec<f64> = rows
        .iter()
        .filter_map(|t| Some(seconds(t.datetime_started, t.datetime_stopped?)))
        .collect();
    gaps.sort_by(f64::total_cmp);

    // The floor: the same work with no platform around it.
    let template = duma_runtime::builtin_template(&format!("duma.tabular.{TEMPLATE}")).unwrap();
    let mut floor = Vec::new();
    for trial in &rows {
        let began = Instant::now();
        let mut log = duma_runtime::TrialLogger::new();
        let mut model = template.build(&trial.proposal.knobs).unwrap();
        model
            .train(&train_path, &Default::default(), &mut log)
            .unwrap();
        model.evaluate(&val_path, &mut log).unwrap();
        model.dump_parameters().unwrap();
        floor.push(began.elapsed().as_secs_f64());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (trial_mean, floor_mean) = (mean(&durations), mean(&floor));

    println!(
        "platform overhead per trial: {TEMPLATE}, {} trials, 2000 training rows x 5 features, one worker slot",
        rows.len()
    );
    println!("{:<44} {:>12}", "measure", "ms");
    println!(
        "{:<44} {:>12.2}",
        "gap between trials: median",
        percentile(&gaps, 0.5) * 1e3
    );
    println!(
        "{:<44} {:>12.2}",
        "gap between trials: p90",
        percentile(&gaps, 0.9) * 1e3
    );
    println!(
        "{:<44} {:>12.2}",
        "gap between trials: max",
        gaps.last().copied().unwrap_or(0.0) * 1e3
    );
    println!(
        "{:<44} {:>12.2}",
        "trial, as recorded (start -> stop): mean",
        trial_mean * 1e3
    );
    println!(
        "{:<44} {:>12.2}",
        "floor: in-process train+evaluate+dump: mean",
        floor_mean * 1e3
    );
    println!(
        "{:<44} {:>12.2}",
        "inside-trial overhead (trial - floor): mean",
        (trial_mean - floor_mean) * 1e3
    );
    println!(
        "{:<44} {:>12.2}",
        "job wall time / trials",
        wall.as_secs_f64() / rows.len() as f64 * 1e3
    );
}
