//! A deployment switching versions under load: the predictor's saturation rate first (closed
//! loop), then an open-loop load at half of it while the deployment switches back and forth
//! five times. Prints failed requests (the bar: 0) and the p99 latency in the window around each
//! switch (from the PATCH until a second after the new version took the traffic) next to the
//! steady-state p99 of the same run (the bar: at most 2×).
//!
//! `scripts/bench-deployments`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use duma_e2e::stack::{self, Stack};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const TASK: &str = "TABULAR_CLASSIFICATION";
const SATURATION_CLIENTS: usize = 16;
const SATURATION_TIME: Duration = Duration::from_secs(4);
const SWITCHES: usize = 5;
/// Requests in flight at most under the open-loop load (never reached at half of saturation).
const MAX_IN_FLIGHT: usize = 512;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

fn query() -> Value {
    json!({"queries": [{"f1": 1.5, "f2": 1.5, "f3": 1.5, "f4": 1.5, "colour": "red"}]})
}

async fn train_version(stack: &Stack, models: &[String], seed: u64) {
    let train = stack
        .upload_dataset(TASK, duma_e2e::data::classification_csv(400, seed))
        .await;
    let val = stack
        .upload_dataset(TASK, duma_e2e::data::classification_csv(200, seed + 1))
        .await;
    stack
        .post(
            "/train_jobs",
            json!({"app": "bench", "task": TASK, "train_dataset_id": train,
                   "val_dataset_id": val, "budget": {"MODEL_TRIAL_COUNT": 1}, "model_ids": models}),
        )
        .await;
    assert_eq!(
        stack.wait_for_end("bench", Duration::from_secs(300)).await["status"],
        "STOPPED"
    );
}

async fn serving_version(stack: &Stack) -> Option<i64> {
    let deployment = stack.get("/deployments/bench-live").await;
    if deployment["status"] != "SERVING" {
        return None;
    }
    deployment["routes"][0]["app_version"].as_i64()
}

/// One timed request: (sent at, latency, succeeded).
type Sample = (Instant, Duration, bool);

async fn bench() {
    let stack = stack::spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    train_version(&stack, &models, 1).await;
    train_version(&stack, &models, 3).await;
    stack
        .post(
            "/deployments",
            json!({"name": "bench-live", "app": "bench", "app_version": 1}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while serving_version(&stack).await != Some(1) {
        assert!(Instant::now() < deadline, "the deployment never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("{predictor}/deployments/bench-live/predict");
    let http = reqwest::Client::new();
    let body = query();

    // Saturation: closed loop.
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + SATURATION_TIME;
    let clients: Vec<_> = (0..SATURATION_CLIENTS)
        .map(|_| {
            let (http, url, body, done) = (http.clone(), url.clone(), body.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let saturation = done.load(Ordering::Relaxed) as f64 / SATURATION_TIME.as_secs_f64();
    let rate = saturation / 2.0;

    // Half of saturation, open loop, while switching.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let shed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (samples, stop, in_flight, shed) = (
            samples.clone(),
            stop.clone(),
            in_flight.clone(),
            shed.clone(),
        );
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    shed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (http, url, body, samples) =
                    (http.clone(), url.clone(), body.clone(), samples.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let ok = match http.post(&url).json(&body).send().await {
                        Ok(response) => {
                            let ok = response.status() == 200;
                            let _ = response.bytes().await;
                            ok
                        }
                        Err(_) => false,
                    };
                    samples.lock().await.push((sent, sent.elapsed(), ok));
                    drop(permit);
                });
            }
        })
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut windows = Vec::new();
    for switch in 0..SWITCHES {
        let version = if switch % 2 == 0 { 2 } else { 1 };
        let began = Instant::now();
        let response = stack
            .client
            .http
            .patch(stack.client.url("/deployments/bench-live"))
            .bearer_auth(&stack.token)
            .json(&json!({"app_version": version}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        while serving_version(&stack).await != Some(version) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let switched = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        windows.push((began, switched + Duration::from_secs(1), switched - began));
        // Let the old version drain and stop before the next switch.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    let samples = samples.lock().await.clone();

    let warm = started + Duration::from_millis(500);
    let in_window = |t: Instant| windows.iter().any(|(a, b, _)| t >= *a && t <= *b);
    let steady: Vec<Duration> = samples
        .iter()
        .filter(|(t, _, _)| *t >= warm && !in_window(*t))
        .map(|(_, latency, _)| *latency)
        .collect();
    let failed = samples.iter().filter(|(_, _, ok)| !ok).count();
    let (steady_p50, steady_p99) = (percentile(&steady, 0.50), percentile(&steady, 0.99));
    println!("deployment switch under load (predictor direct, one inference worker)");
    println!("  saturation (closed loop, {SATURATION_CLIENTS} clients)  {saturation:>8.0} req/s");
    println!("  offered load (open loop)                 {rate:>8.0} req/s (50%)");
    println!(
        "  requests sent / failed / shed            {} / {failed} / {}   (bar: 0 failed)",
        samples.len(),
        shed.load(Ordering::Relaxed)
    );
    println!(
        "  steady state p50 / p99                   {:.2} / {:.2} ms   ({} requests)",
        ms(steady_p50),
        ms(steady_p99),
        steady.len()
    );
    for (i, (a, b, took)) in windows.iter().enumerate() {
        let around: Vec<Duration> = samples
            .iter()
            .filter(|(t, _, _)| t >= a && t <= b)
            .map(|(_, latency, _)| *latency)
            .collect();
        let p99 = percentile(&around, 0.99);
        println!(
            "  switch {} (took {:.2} s): window p99 {:.2} ms = {:.2}× steady ({} requests)   (bar: ≤ 2×)",
            i + 1,
            took.as_secs_f64(),
            ms(p99),
            ms(p99) / ms(steady_p99).max(f64::EPSILON),
            around.len()
        );
    }
}

fn percentile(latencies: &[Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
