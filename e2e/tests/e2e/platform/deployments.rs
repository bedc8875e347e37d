//! Deployments through the real admin, reconciler, workers and predictor: a stable endpoint,
//! version switches with no failed request, rollback, weighted and sticky traffic, a shadow
//! that is never seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use duma_e2e::client::expect_error;
use duma_e2e::data::classification_csv;
use duma_e2e::stack::{Stack, spawn_stack};

const TASK: &str = "TABULAR_CLASSIFICATION";

/// Trains one more version of `app` (one trial of LogisticRegression).
async fn train_version(stack: &Stack, app: &str, models: &[String], seed: u64) {
    let train = stack
        .upload_dataset(TASK, classification_csv(200, seed))
        .await;
    let val = stack
        .upload_dataset(TASK, classification_csv(100, seed + 1))
        .await;
    stack
        .post(
            "/train_jobs",
            json!({"app": app, "task": TASK, "train_dataset_id": train, "val_dataset_id": val,
                   "budget": {"MODEL_TRIAL_COUNT": 1}, "model_ids": models}),
        )
        .await;
    assert_eq!(
        stack.wait_for_end(app, Duration::from_secs(120)).await["status"],
        "STOPPED"
    );
}

fn query() -> Value {
    json!({"f1": 1.5, "f2": 1.5, "f3": 1.5, "f4": 1.5, "colour": "red"})
}

async fn patch(stack: &Stack, path: &str, body: Value) -> reqwest::Response {
    stack
        .client
        .http
        .patch(stack.client.url(path))
        .bearer_auth(&stack.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits until the deployment serves with no pending change, and `routes` satisfies `wanted`.
async fn wait_serving(stack: &Stack, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let deployment = stack.get(&format!("/deployments/{name}")).await;
        if deployment["status"] == "SERVING" && wanted(&deployment["routes"]) {
            return deployment;
        }
        assert!(
            Instant::now() < deadline,
            "never served as wanted: {deployment}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn primary_version(routes: &Value) -> Option<i64> {
    routes.as_array()?.iter().find(|r| r["shadow"] == false)?["app_version"].as_i64()
}

/// The answering version of a prediction, and its status.
async fn predict(stack: &Stack, url: &str, routing_key: Option<&str>) -> (u16, Option<i64>) {
    let mut request = stack
        .client
        .http
        .post(url)
        .json(&json!({"queries": [query()]}));
    if let Some(key) = routing_key {
        request = request.header("X-Routing-Key", key);
    }
    let response = request.send().await.unwrap();
    let version = response
        .headers()
        .get("x-duma-version")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (response.status().as_u16(), version)
}

#[tokio::test]
async fn a_deployment_switches_versions_under_load_without_a_failure_and_rolls_back() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    train_version(&stack, "scoring", &models, 1).await;
    train_version(&stack, "scoring", &models, 3).await;

    let created = stack
        .post(
            "/deployments",
            json!({"name": "scoring-live", "app": "scoring", "app_version": 1,
                   "service_level": "production"}),
        )
        .await;
    assert_eq!(created["status"], "STARTING", "{created}");
    let url = format!("{predictor}/deployments/scoring-live/predict");
    assert!(
        created["url"]
            .as_str()
            .unwrap()
            .ends_with("/deployments/scoring-live/predict")
    );
    wait_serving(&stack, "scoring-live", |r| primary_version(r) == Some(1)).await;
    assert_eq!(predict(&stack, &url, None).await, (200, Some(1)));

    // Requests keep flowing while the deployment switches to v2, back and forth.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let (http, url) = (stack.client.http.clone(), url.clone());
        tokio::spawn(async move {
            let mut versions = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .post(&url)
                    .json(&json!({"query": query()}))
                    .send()
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                if response.status() != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "failed: {} {}",
                        response.status(),
                        response.text().await.unwrap()
                    );
                    continue;
                }
                versions.insert(
                    response.headers()["x-duma-version"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            versions
        })
    };
    for version in [2, 1, 2, 1, 2] {
        let response = patch(
            &stack,
            "/deployments/scoring-live",
            json!({"app_version": version}),
        )
        .await;
        assert_eq!(response.status(), 200);
        let pending: Value = response.json().await.unwrap();
        assert_eq!(pending["status"], "SWITCHING", "{pending}");
        wait_serving(&stack, "scoring-live", |r| {
            primary_version(r) == Some(version)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let versions = load.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 20, "too little load");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the switches"
    );
    assert!(
        versions.contains("1") && versions.contains("2"),
        "{versions:?}"
    );

    // The version that lost the traffic stops once drained; rollback brings it back.
    let deployment = stack.get("/deployments/scoring-live").await;
    assert_eq!(primary_version(&deployment["previous"]), Some(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    while serving(&stack, "scoring", 1).await {
        assert!(Instant::now() < deadline, "v1 was never stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rolled = stack
        .post("/deployments/scoring-live/rollback", json!({}))
        .await;
    assert_eq!(rolled["status"], "SWITCHING", "{rolled}");
    wait_serving(&stack, "scoring-live", |r| primary_version(r) == Some(1)).await;
    assert_eq!(predict(&stack, &url, None).await, (200, Some(1)));

    // A 50/50 split: each version within ±5% of 2,000 requests; a routing key sticks.
    let response = patch(
        &stack,
        "/deployments/scoring-live",
        json!({"weights": {"1": 50, "2": 50}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    wait_serving(&stack, "scoring-live", |r| r.as_array().unwrap().len() == 2).await;
    let mut to_v2 = 0;
    for _ in 0..2_000 {
        let (status, version) = predict(&stack, &url, None).await;
        assert_eq!(status, 200);
        to_v2 += usize::from(version == Some(2));
    }
    assert!((900..=1100).contains(&to_v2), "v2 took {to_v2} of 2000");
    let pinned = predict(&stack, &url, Some("client-42")).await;
    for _ in 0..20 {
        assert_eq!(predict(&stack, &url, Some("client-42")).await, pinned);
    }

    // A shadow gets copies; callers only ever see the primary.
    let response = patch(
        &stack,
        "/deployments/scoring-live",
        json!({"app_version": 1, "shadow": 2}),
    )
    .await;
    assert_eq!(response.status(), 200);
    wait_serving(&stack, "scoring-live", |r| {
        r.as_array().unwrap().iter().any(|r| r["shadow"] == true)
    })
    .await;
    for _ in 0..50 {
        assert_eq!(predict(&stack, &url, None).await, (200, Some(1)));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let compared = stack
            .metric_sum(
                &predictor,
                "duma_deployment_shadow_total",
                &["version=\"2\"", "outcome=\"agree\""],
            )
            .await;
        if compared >= 40.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow compared {compared} answers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Deleted: the endpoint is gone and its versions stop.
    let response = stack
        .client
        .delete(Some(&stack.token), "/deployments/scoring-live", None)
        .await;
    assert_eq!(response.status(), 200);
    // Predictors hear of the deletion by an event: until then the cached routes answer (200 while
    // the versions drain, 503 once they stopped).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = predict(&stack, &url, None).await;
        if status == 404 {
            break;
        }
        assert!(
            status == 200 || status == 503,
            "a deleted deployment answered {status}"
        );
        assert!(
            Instant::now() < deadline,
            "the deleted endpoint still exists"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!serving(&stack, "scoring", 2).await);
}

/// Whether `app` v`version` has a live inference job.
async fn serving(stack: &Stack, app: &str, version: i32) -> bool {
    let response = stack
        .client
        .get(
            Some(&stack.token),
            &format!("/inference_jobs/{app}/{version}"),
        )
        .await;
    response.status() == 200
}

#[tokio::test]
async fn deployment_requests_are_checked_and_owned() {
    let stack = spawn_stack(1).await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    train_version(&stack, "owned", &models, 5).await;
    let create = |body: Value| stack.client.post(Some(&stack.token), "/deployments", body);
    for (body, class, needle) in [
        (
            json!({"name": "Bad_Name", "app": "owned"}),
            "InvalidDeploymentError",
            "not a deployment name",
        ),
        (
            json!({"name": "x", "app": "owned", "service_level": "prod"}),
            "InvalidDeploymentError",
            "service_level",
        ),
        (
            json!({"name": "x", "app": "owned", "model_id": "m"}),
            "InvalidModelError",
            "model_id",
        ),
        (
            json!({"name": "x", "app": "owned", "replicas": 0}),
            "InvalidDeploymentError",
            "replicas must be",
        ),
        // A misspelt or unknown field is refused, never ignored.
        (
            json!({"name": "x", "app": "owned", "replica": 2}),
            "InvalidRequestError",
            "replica",
        ),
    ] {
        let message = expect_error(create(body).await, 400, class).await;
        assert!(message.contains(needle), "{message}");
    }
    expect_error(
        create(json!({"name": "x", "app": "no-such-app"})).await,
        404,
        "InvalidTrainJobError",
    )
    .await;
    stack
        .post("/deployments", json!({"name": "owned-one", "app": "owned"}))
        .await;
    expect_error(
        create(json!({"name": "owned-one", "app": "owned"})).await,
        409,
        "DeploymentExistsError",
    )
    .await;
    expect_error(
        stack
            .client
            .post(
                Some(&stack.token),
                "/deployments/owned-one/rollback",
                json!({}),
            )
            .await,
        409,
        "InvalidDeploymentError",
    )
    .await;
    for (body, needle) in [
        (json!({"weights": {"1": 60}}), "sum to 100"),
        (json!({"app_version": 1, "weights": {"1": 100}}), "not both"),
        (json!({}), "nothing to change"),
        (json!({"shadow": "two"}), "shadow"),
        (json!({"replicas": 0}), "replicas must be"),
    ] {
        let message = expect_error(
            patch(&stack, "/deployments/owned-one", body).await,
            400,
            "InvalidDeploymentError",
        )
        .await;
        assert!(message.contains(needle), "{message}");
    }
    // Another developer neither sees nor changes it.
    let other = stack.client.new_user(&stack.token, "APP_DEVELOPER").await;
    expect_error(
        stack
            .client
            .get(Some(&other.token), "/deployments/owned-one")
            .await,
        404,
        "InvalidDeploymentError",
    )
    .await;
    let theirs: Value = stack
        .client
        .get(Some(&other.token), "/deployments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    expect_error(
        stack
            .client
            .delete(Some(&other.token), "/deployments/owned-one", None)
            .await,
        404,
        "InvalidDeploymentError",
    )
    .await;
}

/// Starts an inference worker that serves only `levels`; returns its stop switch.
fn start_worker_for(stack: &Stack, levels: &[&str]) -> tokio_util::sync::CancellationToken {
    let mut settings = stack.settings_for(duma_common::accounts::Account::InferenceWorker);
    settings.inference_worker.service_levels =
        Some(levels.iter().map(|l| (*l).to_owned()).collect());
    let stop = stack.stop.child_token();
    tokio::spawn(duma_inference_worker::run(settings, stop.clone()));
    stop
}

/// Workers restricted to service levels serve only those levels; a deployment at a level no
/// worker serves says so instead of hanging; a deployment's replicas go to different workers.
#[tokio::test]
async fn service_levels_place_models_on_their_workers_and_replicas_spread() {
    let stack = spawn_stack(1).await;
    start_worker_for(&stack, &["development"]);
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    train_version(&stack, "placed", &models, 7).await;
    let created = stack
        .post(
            "/deployments",
            json!({"name": "placed-prod", "app": "placed", "service_level": "production",
                   "replicas": 2}),
        )
        .await;
    assert_eq!(created["replicas"], 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let deployment = stack.get("/deployments/placed-prod").await;
        if deployment["error"]
            .as_str()
            .is_some_and(|e| e.contains("no inference worker serves service level production"))
        {
            assert_eq!(deployment["status"], "STARTING");
            break;
        }
        assert!(Instant::now() < deadline, "never said why: {deployment}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start_worker_for(&stack, &["production"]);
    start_worker_for(&stack, &["staging", "production"]);
    let deployment = wait_serving(&stack, "placed-prod", |r| primary_version(r) == Some(1)).await;
    assert!(deployment["error"].is_null(), "{deployment}");
    let job = deployment["routes"][0]["inference_job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both replicas claimed, by two different workers that serve production.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holders = loop {
        let db = stack.ctx.pool.get().await.unwrap();
        let rows = db
            .query(
                "SELECT w.capabilities -> 'service_levels' FROM work_leases l \
                 JOIN workers w ON w.id = l.worker_id \
                 WHERE l.inference_job_id = $1::text::uuid AND l.kind = 'SERVE'",
                &[&job],
            )
            .await
            .unwrap();
        let levels: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
        if levels.len() == 2 {
            break levels;
        }
        assert!(Instant::now() < deadline, "replicas held: {levels:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for levels in &holders {
        assert!(
            levels.as_array().unwrap().contains(&json!("production")),
            "a replica went to a worker of {levels}"
        );
    }
    assert_ne!(holders[0], holders[1], "both replicas on one worker");
}

/// Two deployments of one app version share its inference job: deleting one leaves it serving
/// the other; deleting the second stops it.
#[tokio::test]
async fn a_version_two_deployments_share_is_stopped_by_neither_alone() {
    let stack = spawn_stack(1).await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    train_version(&stack, "shared", &models, 9).await;
    let first = stack
        .post("/deployments", json!({"name": "shared-a", "app": "shared"}))
        .await;
    let second = stack
        .post("/deployments", json!({"name": "shared-b", "app": "shared"}))
        .await;
    assert_eq!(
        first["pending"][0]["inference_job_id"],
        second["pending"][0]["inference_job_id"]
    );
    let delete = |path: &'static str| stack.client.delete(Some(&stack.token), path, None);
    assert_eq!(delete("/deployments/shared-a").await.status(), 200);
    assert!(serving(&stack, "shared", 1).await, "stopped under shared-b");
    assert_eq!(delete("/deployments/shared-b").await.status(), 200);
    assert!(!serving(&stack, "shared", 1).await);
}

/// Ready SERVE leases of `job` on live leases, and how many workers hold them.
async fn ready_replicas(stack: &Stack, job: &str) -> (i64, i64) {
    let db = stack.ctx.pool.get().await.unwrap();
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT worker_id) FROM work_leases \
             WHERE inference_job_id = $1::text::uuid AND kind = 'SERVE' AND ready \
               AND expires_at > now()",
            &[&job],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn wait_replicas(stack: &Stack, job: &str, wanted: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ready, workers) = ready_replicas(stack, job).await;
        if ready == wanted && workers == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} replicas on {workers} workers, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replicas change in place, without a switch; with two, a SIGKILLed worker (an aborted task:
/// it never says goodbye) costs no request, even those it had read and not answered.
#[tokio::test]
async fn replicas_change_in_place_and_a_killed_worker_costs_no_request() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let victim = stack.spawn_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    train_version(&stack, "resized", &models, 21).await;
    stack
        .post("/deployments", json!({"name": "resized", "app": "resized"}))
        .await;
    let deployment = wait_serving(&stack, "resized", |r| primary_version(r) == Some(1)).await;
    let job = deployment["routes"][0]["inference_job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_replicas(&stack, &job, 1).await;

    let grown = patch(&stack, "/deployments/resized", json!({"replicas": 2})).await;
    assert_eq!(grown.status(), 200);
    let grown: Value = grown.json().await.unwrap();
    assert_eq!(grown["replicas"], 2);
    assert_eq!(grown["status"], "SERVING", "a resize is no switch: {grown}");
    assert_eq!(grown["routes"][0]["inference_job_id"], json!(job));
    wait_replicas(&stack, &job, 2).await;

    // Load from four clients while one of the two workers dies.
    let url = format!("{predictor}/deployments/resized/predict");
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    let started = Instant::now();
    for _ in 0..4 {
        let (http, url) = (stack.client.http.clone(), url.clone());
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = http
                    .post(&url)
                    .json(&json!({"queries": [query()]}))
                    .send()
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                let failure = match response {
                    Ok(r) if r.status() == 200 => None,
                    Ok(r) => Some(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(error) => Some(error.to_string()),
                };
                if let Some(failure) = failure {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "failed {:?} after the load began: {failure}",
                        started.elapsed()
                    );
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    victim.abort();
    let killed = Instant::now();
    // Until the survivor alone holds the job (the dead worker's lease freed), and a while on.
    loop {
        let (ready, _) = ready_replicas(&stack, &job).await;
        if ready == 1 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "the dead replica is never noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 50, "only {sent} requests: the load proved nothing");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed around the kill"
    );

    // Shrinking drops a replica's lease; the other keeps serving.
    stack.start_inference_worker();
    wait_replicas(&stack, &job, 2).await;
    let shrunk = patch(&stack, "/deployments/resized", json!({"replicas": 1})).await;
    assert_eq!(shrunk.status(), 200);
    wait_replicas(&stack, &job, 1).await;
    let (status, version) = predict(&stack, &url, None).await;
    assert_eq!((status, version), (200, Some(1)));
    for bad in [
        json!({"replicas": 0}),
        json!({"replicas": 17}),
        json!({"replicas": "two"}),
    ] {
        let response = patch(&stack, "/deployments/resized", bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}
