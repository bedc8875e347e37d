//! Serving throughput and latency, next to the floors of the same run:
//! the in-process predict loop, a Redis round trip (redis-benchmark), and nginx → predictor with
//! an echo route (no Redis, no model). Full path: wrk → nginx → predictor → Redis stream →
//! inference worker → reply list → predictor → nginx.
//!
//! `scripts/bench-serving` (needs wrk, nginx, redis-benchmark: scripts/setup installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use duma_e2e::stack;

use std::process::Command;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{Value, json};

const FEATURES: usize = 32;
const WRK_SECONDS: u32 = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// 32 numeric features `x0…x31`, two classes.
fn dataset(rows: usize, seed: u64) -> String {
    duma_e2e::data::blobs_csv(
        &mut duma_e2e::data::Rng::new(seed),
        rows,
        FEATURES,
        &["0", "1"],
    )
}

fn query() -> Value {
    Value::Object(
        (0..FEATURES)
            .map(|i| (format!("x{i}"), json!(0.25 + i as f64 / 100.0)))
            .collect(),
    )
}

/// Runs wrk and returns (requests/s, p50 ms, p99 ms).
fn wrk(url: &str, body: &str, connections: u32) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"),
    )
    .unwrap();
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{WRK_SECONDS}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("wrk (scripts/setup installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_default();
        let value = line.split_whitespace().nth(1).unwrap_or("0");
        let (number, unit) = value.split_at(
            value
                .find(|c: char| c.is_alphabetic())
                .unwrap_or(value.len()),
        );
        let number: f64 = number.parse().unwrap_or(0.0);
        match unit {
            "us" => number / 1000.0,
            "ms" | "" => number,
            "s" => number * 1000.0,
            _ => number,
        }
    };
    let rps: f64 = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    (rps, field("50%"), field("99%"))
}

async fn bench() {
    let stack = stack::spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let nginx = duma_e2e::nginx::Nginx::start(std::slice::from_ref(&predictor));
    let task = "TABULAR_CLASSIFICATION";
    let train = stack.upload_dataset(task, dataset(2000, 1)).await;
    let val = stack.upload_dataset(task, dataset(500, 2)).await;
    let models = stack.builtin_models(task, &["LogisticRegression"]).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": "bench", "task": task, "train_dataset_id": train, "val_dataset_id": val,
                                     "budget": {"MODEL_TRIAL_COUNT": 1}, "model_ids": models}),
        )
        .await;
    stack.wait_for_end("bench", Duration::from_secs(300)).await;
    let job = stack.post("/inference_jobs", json!({"app": "bench"})).await;
    let url = stack::predict_url(&job, &nginx.url);
    let body = json!({"query": query()}).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack
        .client
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Floor 1: the model alone, in process.
    let trial = &stack.trials("bench").await[0];
    let db = stack.ctx.pool.get().await.unwrap();
    let trial = duma_common::db::trials::by_id(&db, trial["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let bytes = stack
        .ctx
        .store
        .get_bytes(&trial.params.unwrap().path)
        .await
        .unwrap();
    let model = duma_runtime::builtin_template("duma.tabular.LogisticRegression")
        .unwrap()
        .load(&bytes)
        .unwrap();
    let queries = vec![query()];
    let started = Instant::now();
    let iterations = 20_000;
    for _ in 0..iterations {
        model.predict(&queries).unwrap();
    }
    let predict_us = started.elapsed().as_secs_f64() / iterations as f64 * 1e6;

    // Floor 2: a Redis round trip on the same server.
    let redis_url = stack.ctx.settings.redis.url.expose_secret().to_owned();
    let socket = redis_url.trim_start_matches("redis+unix://");
    let redis = Command::new("redis-benchmark")
        .args([
            "-s",
            socket,
            "-t",
            "ping_mbulk",
            "-n",
            "200000",
            "-c",
            "64",
            "-q",
        ])
        .output()
        .expect("redis-benchmark (scripts/setup installs redis-tools)");
    let redis_text = String::from_utf8_lossy(&redis.stdout).replace('\r', "\n");
    let redis_rps: f64 = redis_text
        .lines()
        .filter_map(|l| l.split("PING_MBULK: ").nth(1))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0.0);

    // Floor 3: nginx → predictor, echo route.
    let (echo_rps, echo_p50, echo_p99) = wrk(&format!("{}/echo", nginx.url), &body, 64);
    // The full path at saturation, and at light load.
    let (full_rps, full_p50, full_p99) = wrk(&url, &body, 64);
    let (light_rps, light_p50, light_p99) = wrk(&url, &body, 4);

    println!(
        "serving benchmark: LogisticRegression, {FEATURES} features, one predictor behind nginx, one inference worker, 2 cores"
    );
    println!(
        "{:<52} {:>12} {:>10} {:>10}",
        "path", "requests/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<52} {:>12.0} {:>10} {:>10}",
        "floor: in-process predict (1 query)",
        1e6 / predict_us,
        format!("{:.3}", predict_us / 1000.0),
        "-"
    );
    println!(
        "{:<52} {:>12.0} {:>10} {:>10}",
        "floor: redis-benchmark PING (64 clients)", redis_rps, "-", "-"
    );
    println!(
        "{:<52} {:>12.0} {:>10.2} {:>10.2}",
        "floor: nginx -> predictor echo (64 connections)", echo_rps, echo_p50, echo_p99
    );
    println!(
        "{:<52} {:>12.0} {:>10.2} {:>10.2}",
        "full path at saturation (64 connections)", full_rps, full_p50, full_p99
    );
    println!(
        "{:<52} {:>12.0} {:>10.2} {:>10.2}",
        "full path at light load (4 connections)", light_rps, light_p50, light_p99
    );
    println!(
        "full path / echo floor throughput: {:.0}% (target >= 50%)",
        full_rps / echo_rps * 100.0
    );
    println!(
        "where the time goes at light load: model {:.3} ms of {:.2} ms p50; the rest is HTTP + Redis fan-out",
        predict_us / 1000.0,
        light_p50
    );
}
