//! Train → deploy → predict through the real admin, workers and predictor.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use duma_e2e::client::expect_error;
use duma_e2e::data::classification_csv;
use duma_e2e::stack::{Stack, spawn_stack, spawn_stack_with};

const TASK: &str = "TABULAR_CLASSIFICATION";

/// Trains `models` (2 trials each), stops, and deploys; returns the predict URL.
async fn deploy(stack: &Stack, app: &str, models: &[String], predictor: &str) -> String {
    let train = stack.upload_dataset(TASK, classification_csv(200, 1)).await;
    let val = stack.upload_dataset(TASK, classification_csv(100, 2)).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": app, "task": TASK, "train_dataset_id": train, "val_dataset_id": val,
                   "budget": {"MODEL_TRIAL_COUNT": 2}, "model_ids": models}),
        )
        .await;
    assert_eq!(
        stack.wait_for_end(app, Duration::from_secs(120)).await["status"],
        "STOPPED"
    );
    let job = stack.post("/inference_jobs", json!({"app": app})).await;
    duma_e2e::stack::predict_url(&job, predictor)
}

async fn wait_running(stack: &Stack, app: &str) {
    wait_status(stack, app, "RUNNING").await;
}

async fn wait_status(stack: &Stack, app: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = stack.get(&format!("/inference_jobs/{app}/-1")).await;
        if job["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "inference job still {}",
            job["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the predictor answers to `body` at `url` (any status), as JSON.
async fn answer(stack: &Stack, url: &str, body: Value) -> Value {
    stack
        .client
        .http
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn query(class: usize) -> Value {
    let v = if class == 0 { -1.5 } else { 1.5 };
    json!({"f1": v, "f2": v, "f3": v, "f4": v, "colour": "red"})
}

#[tokio::test]
async fn train_deploy_predict_with_rafikis_shapes_and_errors() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "serve", &models, &predictor).await;
    wait_running(&stack, "serve").await;

    let one = answer(&stack, &url, json!({"query": query(1)})).await;
    let p = one["prediction"].as_array().unwrap();
    assert_eq!(p.len(), 2, "class probabilities: {one}");
    assert!(p[1].as_f64().unwrap() > 0.5, "{one}");
    assert_eq!(one["predictions"], json!([]));

    let many: Value = stack
        .client
        .http
        .post(&url)
        .json(&json!({"queries": [query(0), query(1), query(0)]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(many["prediction"], Value::Null);
    let predictions = many["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    assert!(predictions[0][0].as_f64().unwrap() > 0.5 && predictions[1][1].as_f64().unwrap() > 0.5);

    for (body, expect) in [
        ("{not json".to_owned(), "malformed JSON"),
        (json!({"q": 1}).to_string(), "missing `query`"),
        (json!({"queries": 5}).to_string(), "must be a JSON array"),
        (
            json!({"query": {"f1": "not a number", "f2": 1, "f3": 1, "f4": 1, "colour": "red"}})
                .to_string(),
            "feature `f1` must be a number",
        ),
        // No features at all is not a query to impute: it names what is missing.
        (
            json!({"query": {}}).to_string(),
            "lacks 5 of the 5 features the model was trained on: `f1`, `f2`, `f3`, `f4`, `colour`",
        ),
    ] {
        let response = stack
            .client
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["message"].as_str().unwrap().contains(expect),
            "{body} → {error}"
        );
    }

    stack.post("/inference_jobs/serve/1/stop", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(1)}))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], "InvalidRunningInferenceJobError");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a stopped job still answers {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_ensemble_of_two_models_returns_the_mean_of_their_probabilities() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack
        .builtin_models(TASK, &["LogisticRegression", "KNeighborsClassifier"])
        .await;
    let url = deploy(&stack, "ensemble", &models, &predictor).await;
    wait_running(&stack, "ensemble").await;

    let served: Vec<Value> = stack
        .get("/train_jobs/ensemble/-1/trials?type=best&max_count=10")
        .await
        .as_array()
        .unwrap()
        .clone();
    let q = json!({"f1": 0.2, "f2": -0.1, "f3": 0.3, "f4": 0.0, "colour": "blue"});
    let ensembled: Value = stack
        .client
        .http
        .post(&url)
        .json(&json!({"query": q}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Each model's own answer, from its best trial's parameters loaded in-process.
    let db = stack.ctx.pool.get().await.unwrap();
    let mut own: Vec<Vec<f64>> = Vec::new();
    for model in ["LogisticRegression", "KNeighborsClassifier"] {
        let best = served.iter().find(|t| t["model_name"] == model).unwrap();
        let trial =
            duma_common::db::trials::by_id(&db, best["id"].as_str().unwrap().parse().unwrap())
                .await
                .unwrap()
                .unwrap();
        let bytes = stack
            .ctx
            .store
            .get_bytes(&trial.params.unwrap().path)
            .await
            .unwrap();
        let template = duma_runtime::builtin_template(&format!("duma.tabular.{model}")).unwrap();
        let prediction = template
            .load(&bytes)
            .unwrap()
            .predict(std::slice::from_ref(&q))
            .unwrap();
        own.push(
            prediction[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect(),
        );
    }
    let got: Vec<f64> = ensembled["prediction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for i in 0..got.len() {
        assert!(
            (got[i] - (own[0][i] + own[1][i]) / 2.0).abs() < 1e-9,
            "{got:?} vs {own:?}"
        );
    }
}

#[tokio::test]
async fn no_worker_means_504_within_the_deadline_and_a_full_job_503() {
    let mut stack = spawn_stack(1).await;
    stack.settings.predictor.max_in_flight_per_job = 2;
    let worker = stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "down", &models, &predictor).await;
    wait_running(&stack, "down").await;
    worker.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let response = stack
        .client
        .http
        .post(&url)
        .json(&json!({"query": query(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_millis(3_500),
        "{:?}",
        started.elapsed()
    );

    let calls = (0..6).map(|_| {
        stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(1)}))
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 503 || *s == 504),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_template_whose_parameters_do_not_load_errors_the_inference_job() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let (predictor, _) = stack.start_predictor().await;
    let train = stack.upload_dataset(TASK, classification_csv(100, 1)).await;
    stack
        .post("/train_jobs", json!({"app": "corrupt", "task": TASK, "train_dataset_id": train, "val_dataset_id": train,
                                    "budget": {"MODEL_TRIAL_COUNT": 1}, "model_ids": models}))
        .await;
    stack.wait_for_end("corrupt", Duration::from_secs(60)).await;
    // Corrupt the stored parameters, as a broken template's load_parameters would fail.
    let trial = &stack.trials("corrupt").await[0];
    let db = stack.ctx.pool.get().await.unwrap();
    let trial = duma_common::db::trials::by_id(&db, trial["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    stack
        .ctx
        .store
        .put_bytes(
            &trial.params.unwrap().path,
            bytes::Bytes::from_static(b"garbage"),
        )
        .await
        .unwrap();
    let _ = predictor;
    stack
        .post("/inference_jobs", json!({"app": "corrupt"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = stack.get("/inference_jobs/corrupt").await;
        if jobs[0]["status"] == "ERRORED" {
            assert!(
                jobs[0]["error"]
                    .as_str()
                    .unwrap()
                    .contains("failed to load"),
                "{jobs}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{jobs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_predictors_behind_one_nginx_both_serve() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (first, _) = stack.start_predictor().await;
    let (second, _) = stack.start_predictor().await;
    let nginx = duma_e2e::nginx::Nginx::start(&[first.clone(), second.clone()]);
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "lb", &models, &nginx.url).await;
    wait_running(&stack, "lb").await;
    for _ in 0..20 {
        let response = stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(0)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // nginx passes on predictions and health only: metrics stay on the predictors' own ports.
    for path in ["/metrics", "/inference_jobs/x/trials", "/admin"] {
        let response = stack
            .client
            .http
            .get(format!("{}{path}", nginx.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let health = stack
        .client
        .http
        .get(format!("{}/health", nginx.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    for predictor in [first, second] {
        let served = stack
            .metric_sum(&predictor, "duma_predict_seconds_count", &[])
            .await;
        assert!(served >= 1.0, "{predictor} served nothing");
    }
}

/// With `admin.inference_job_ports`, a job's `predictor_host` is a plain `host:port` of nginx
/// and `POST /predict` there reaches it (Rafiki's recipe, and code that splits host and port).
/// Here the range is one port: a second job waits for it (503 naming the setting), and once the
/// first job stops the port answers 404 until the next job takes it.
#[tokio::test]
async fn an_inference_job_serves_on_its_own_port_of_nginx() {
    let job_port = duma_testkit::free_port();
    let stack = spawn_stack_with(1, |settings| {
        settings.admin.inference_job_ports = job_port.to_string();
        settings.admin.predictor_host = "127.0.0.1:8080".into();
    })
    .await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let nginx = duma_e2e::nginx::Nginx::start_with_job_ports(&[predictor], &[job_port]);
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let train = |app: &'static str| {
        let models = models.clone();
        let stack = &stack;
        async move {
            let train = stack.upload_dataset(TASK, classification_csv(200, 1)).await;
            let val = stack.upload_dataset(TASK, classification_csv(100, 2)).await;
            stack
                .post(
                    "/train_jobs",
                    json!({"app": app, "task": TASK, "train_dataset_id": train,
                           "val_dataset_id": val, "budget": {"MODEL_TRIAL_COUNT": 1},
                           "model_ids": models}),
                )
                .await;
            let ended = stack.wait_for_end(app, Duration::from_secs(120)).await;
            assert_eq!(ended["status"], "STOPPED");
        }
    };
    train("ownport").await;
    train("waits").await;
    let job = stack
        .post("/inference_jobs", json!({"app": "ownport"}))
        .await;
    let host = job["predictor_host"].as_str().unwrap().to_owned();
    assert_eq!(host, format!("127.0.0.1:{job_port}"));
    let (name, port) = host.split_once(':').unwrap();
    let url = format!("http://{name}:{}/predict", port.parse::<u16>().unwrap());
    wait_running(&stack, "ownport").await;
    let predict = || {
        stack
            .client
            .http
            .post(&url)
            .json(&json!({"queries": [query(0), query(1)]}))
            .send()
    };
    let response = predict().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["predictions"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(
        stack.get("/inference_jobs/ownport/-1").await["predictor_host"],
        host.as_str()
    );

    // The main port has no job of its own.
    let response = stack
        .client
        .http
        .post(format!("{}/predict", nginx.url))
        .json(&json!({"query": query(0)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // Every port is held: the next job waits, and says why.
    let refused = stack
        .client
        .post(
            Some(&stack.token),
            "/inference_jobs",
            json!({"app": "waits"}),
        )
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    let message = expect_error(refused, 503, "ServiceUnavailableError").await;
    assert!(message.contains("admin.inference_job_ports"), "{message}");

    stack
        .post("/inference_jobs/ownport/-1/stop", json!({}))
        .await;
    let gone = predict().await.unwrap();
    assert_eq!(gone.status(), 404);
    let next = stack.post("/inference_jobs", json!({"app": "waits"})).await;
    assert_eq!(next["predictor_host"], host.as_str());
    wait_status(&stack, "waits", "RUNNING").await;
    assert_eq!(predict().await.unwrap().status(), 200);
}

/// A predictor that died mid-connection: it accepts, reads the request, and closes without an
/// answer (what nginx meets on a kept-alive connection to a SIGKILLed replica).
struct DeadPredictor {
    url: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DeadPredictor {
    fn start() -> Self {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        // Dies with the test process; accepts only what this test sends.
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.read(&mut [0; 4096]);
            }
        });
        Self { url, accepted }
    }
}

#[tokio::test]
async fn nginx_retries_a_prediction_that_met_a_dead_predictor_on_a_live_one() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (live, _) = stack.start_predictor().await;
    let dead = DeadPredictor::start();
    let nginx = duma_e2e::nginx::Nginx::start(&[dead.url.clone(), live]);
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "retry", &models, &nginx.url).await;
    wait_running(&stack, "retry").await;
    for i in 0..20 {
        let response = stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(i % 2)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {i}");
    }
    assert!(
        dead.accepted.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "nginx never tried the dead predictor: the test proved nothing"
    );
}

#[tokio::test]
async fn a_killed_inference_worker_is_replaced_and_the_job_serves_again() {
    let stack = spawn_stack(1).await;
    let (predictor, _) = stack.start_predictor().await;
    let victim = stack.spawn_inference_worker();
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "failover", &models, &predictor).await;
    wait_running(&stack, "failover").await;
    let ok = stack
        .client
        .http
        .post(&url)
        .json(&json!({"query": query(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    victim.abort();
    let killed = Instant::now();
    // Its lease expires and the reconciler notices: the job is no longer fully served.
    wait_status(&stack, "failover", "STARTED").await;
    stack.start_inference_worker();
    loop {
        let response = stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(1)}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert_eq!(
            response.status(),
            504,
            "requests fail fast while the slot is taken over"
        );
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "not served again within 10 s"
        );
    }
    wait_running(&stack, "failover").await;
}

/// A dead inference worker is noticed by Postgres itself (its presence lock goes with its
/// connection), not at lease expiry: with leases of 30 s, a standby worker serves the model again
/// within a few seconds.
#[tokio::test]
async fn a_dead_inference_workers_model_is_taken_over_long_before_its_lease_expires() {
    let stack = spawn_stack_with(1, |settings| {
        settings.inference_worker.lease_ttl_ms = 30_000;
    })
    .await;
    let (predictor, _) = stack.start_predictor().await;
    let victim = stack.spawn_inference_worker();
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "takeover", &models, &predictor).await;
    wait_running(&stack, "takeover").await;
    stack.start_inference_worker();
    let predict = || {
        stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(1)}))
            .send()
    };
    assert_eq!(predict().await.unwrap().status(), 200);

    victim.abort();
    // Queries sent meanwhile wait in the model's stream and are answered by the standby once it
    // has loaded the model: none fails, the slowest waits for the takeover.
    let killed = Instant::now();
    let mut slowest = Duration::ZERO;
    while killed.elapsed() < Duration::from_secs(3) {
        let sent = Instant::now();
        let status = predict().await.unwrap().status();
        slowest = slowest.max(sent.elapsed());
        assert_eq!(status, 200, "{:?} after the kill", killed.elapsed());
    }
    eprintln!("slowest answer after the kill: {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
}

/// Redis gone: the predictor cannot queue a query and says so at once with 503 (a platform
/// fault), instead of waiting out its deadline for a 504.
#[tokio::test]
async fn a_predictor_whose_redis_is_gone_answers_503_at_once() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "no-redis", &models, &predictor).await;
    wait_running(&stack, "no-redis").await;

    // A second predictor on a Redis of its own, which then dies.
    let mut redis = duma_testkit::RedisServer::start();
    let mut settings = stack.settings.clone();
    settings.redis.url = secrecy::SecretString::from(redis.url());
    let lonely = duma_predictor::Application::build(settings).await.unwrap();
    let lonely_base = format!("http://127.0.0.1:{}", lonely.port());
    tokio::spawn(lonely.run_until_stopped(stack.stop.child_token()));
    redis.kill();
    let lonely_url = url.replacen(&predictor, &lonely_base, 1);
    let sent = Instant::now();
    let response = stack
        .client
        .http
        .post(&lonely_url)
        .json(&json!({"query": query(1)}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "ServiceUnavailableError", "{body}");
    assert!(
        sent.elapsed() < Duration::from_millis(stack.settings.predictor.deadline_ms),
        "answered only after {:?}",
        sent.elapsed()
    );
}

/// Bodies and batches are bounded (configurable): too large is 413 naming the limit, read no
/// further; a request within the limits is answered as usual.
#[tokio::test]
async fn oversized_bodies_and_batches_get_413_naming_the_limit() {
    let mut stack = spawn_stack(1).await;
    stack.settings.predictor.max_body_bytes = 4096;
    stack.settings.predictor.max_queries_per_request = 10;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "bounded", &models, &predictor).await;
    wait_running(&stack, "bounded").await;
    let send = |body: Value| {
        let request = stack.client.http.post(&url).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = send(json!({"queries": vec![query(1); 11]})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "PayloadTooLargeError", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("at most 10"),
        "{body}"
    );

    let padding = "x".repeat(5_000);
    let (status, body) = send(json!({"query": {"f1": 1.0, "pad": padding}})).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("4096 bytes"),
        "{body}"
    );

    let (status, body) = send(json!({"queries": vec![query(1); 10]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), 10);
}

/// The job label of the predictor's metrics comes only from live jobs' ids: paths an anonymous
/// caller makes up add no series, and a job's series go when it stops.
#[tokio::test]
async fn made_up_job_ids_add_no_metric_series_and_a_stopped_jobs_series_go() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "labels", &models, &predictor).await;
    wait_running(&stack, "labels").await;
    let ok = stack
        .client
        .http
        .post(&url)
        .json(&json!({"query": query(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for i in 0..30 {
        let made_up = if i % 2 == 0 {
            uuid::Uuid::new_v4().to_string()
        } else {
            format!("garbage-{i}")
        };
        let response = stack
            .client
            .http
            .post(format!("{predictor}/inference_jobs/{made_up}/predict"))
            .json(&json!({"query": query(1)}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let job_labels = || async {
        let metrics = stack.metrics_text(&predictor).await;
        let mut labels: Vec<String> = metrics
            .lines()
            .filter(|l| l.starts_with("duma_predict"))
            .filter_map(|l| l.split("inference_job=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect();
        labels.sort();
        labels.dedup();
        labels
    };
    let job_id = url.split('/').rev().nth(1).unwrap().to_owned();
    assert_eq!(job_labels().await, {
        let mut expected = vec![job_id.clone(), "none".to_owned()];
        expected.sort();
        expected
    });

    stack
        .post("/inference_jobs/labels/-1/stop", json!({}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while job_labels().await.contains(&job_id) {
        assert!(Instant::now() < deadline, "the stopped job's series stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An app with prediction keys answers only requests carrying one (either header); revoking a
/// key refuses it at once, and an app whose keys are all gone is open again.
#[tokio::test]
async fn an_app_with_prediction_keys_answers_only_their_bearers() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "keyed", &models, &predictor).await;
    wait_running(&stack, "keyed").await;
    let send = |header: Option<(&'static str, String)>| {
        let mut request = stack
            .client
            .http
            .post(&url)
            .json(&json!({"query": query(1)}));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(send(None).await.0, 200, "an app without keys is open");

    let created = stack.post("/apps/keyed/prediction_keys", json!({})).await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("duma_pk_") && key.len() > 40, "{created}");
    let (status, body) = send(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "UnauthorizedError");
    assert!(
        body["message"].as_str().unwrap().contains("X-API-Key"),
        "{body}"
    );
    assert_eq!(
        send(Some(("X-API-Key", "duma_pk_wrong".into()))).await.0,
        401
    );
    assert_eq!(send(Some(("X-API-Key", key.clone()))).await.0, 200);
    let (status, body) = send(Some(("Authorization", format!("Bearer {key}")))).await;
    assert_eq!(status, 200, "{body}");

    let listed = stack.get("/apps/keyed/prediction_keys").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        listed[0].get("key").is_none(),
        "a listed key is never shown: {listed}"
    );
    let id = created["id"].as_str().unwrap();
    let revoked = stack
        .client
        .http
        .delete(
            stack
                .client
                .url(&format!("/apps/keyed/prediction_keys/{id}")),
        )
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(send(None).await.0, 200, "no keys left: open again");
}

/// A trained tabular version through the Open Inference Protocol: its metadata names the
/// features (with their types), the output and the classes in probability order, and one tensor
/// per feature column answers what Rafiki's predict answers for the same rows.
#[tokio::test]
async fn a_trained_version_speaks_the_open_inference_protocol_with_its_features_and_classes() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "v2tab", &models, &predictor).await;
    wait_running(&stack, "v2tab").await;
    let version = stack.get("/train_jobs/v2tab/1").await;
    let metadata = &version["model_metadata"];
    assert_eq!(metadata["target"], "label", "{version}");
    assert_eq!(metadata["classes"], json!(["0", "1"]));
    assert_eq!(
        metadata["features"][4],
        json!({"name": "colour", "datatype": "BYTES"})
    );

    let job = stack.get("/inference_jobs/v2tab/-1").await;
    let id = job["id"].as_str().unwrap();
    let http = &stack.client.http;
    let described: Value = http
        .get(format!("{predictor}/v2/models/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = described["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["f1", "f2", "f3", "f4", "colour"], "{described}");
    assert_eq!(described["outputs"][0]["shape"], json!([-1, 2]));
    assert_eq!(described["parameters"]["classes"], json!(["0", "1"]));

    let rows = [
        json!({"f1": 1.5, "f2": 1.2, "f3": 1.9, "f4": 0.8, "colour": "red"}),
        json!({"f1": -1.5, "f2": -1.1, "f3": -2.0, "f4": -0.9, "colour": "blue"}),
    ];
    let mut inputs: Vec<Value> = ["f1", "f2", "f3", "f4"]
        .iter()
        .map(|f| {
            json!({"name": f, "shape": [2, 1], "datatype": "FP64",
                        "data": [rows[0][f], rows[1][f]]})
        })
        .collect();
    inputs.push(
        json!({"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]}),
    );
    let answer: Value = http
        .post(format!("{predictor}/v2/models/{id}/infer"))
        .json(&json!({"inputs": inputs}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let output = &answer["outputs"][0];
    assert_eq!(output["name"], "predict", "{answer}");
    assert_eq!(output["shape"], json!([2, 2]));
    let rafiki: Value = http
        .post(&url)
        .json(&json!({"queries": rows}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flat: Vec<Value> = rafiki["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p.as_array().unwrap().clone())
        .collect();
    assert_eq!(output["data"], Value::Array(flat));
}

#[tokio::test]
async fn the_whole_path_runs_on_an_s3_object_store_and_a_lost_object_is_a_404() {
    let stack = spawn_stack_with(1, |settings| {
        settings.object_store = duma_testkit::s3_settings();
    })
    .await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let url = deploy(&stack, "on-s3", &models, &predictor).await;
    wait_running(&stack, "on-s3").await;
    let one = answer(&stack, &url, json!({"query": query(1)})).await;
    assert!(one["prediction"][1].as_f64().unwrap() > 0.5, "{one}");

    // The parameters the worker loaded came from the bucket: nothing went to the local folder.
    let local_root = &stack.ctx.settings.object_store.root;
    assert!(
        !local_root.exists() || std::fs::read_dir(local_root).unwrap().next().is_none(),
        "objects were written to {}",
        local_root.display()
    );
    let best = &stack
        .get("/train_jobs/on-s3/-1/trials?type=best&max_count=1")
        .await[0];
    let trial_id = best["id"].as_str().unwrap();
    let path = format!("/trials/{trial_id}/parameters");
    let download = stack.client.get(Some(&stack.token), &path).await;
    assert_eq!(download.status(), 200);
    let downloaded = download.bytes().await.unwrap();
    let db = stack.ctx.pool.get().await.unwrap();
    let trial = duma_common::db::trials::by_id(&db, trial_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let stored_path = trial.params.unwrap().path;
    let bucket = duma_common::store::ObjectStore::open(&stack.settings.object_store)
        .await
        .unwrap();
    assert_eq!(bucket.get_bytes(&stored_path).await.unwrap(), downloaded);

    bucket.delete(&stored_path).await.unwrap();
    let lost = stack.client.get(Some(&stack.token), &path).await;
    assert_eq!(lost.status(), 404);
    let body: Value = lost.json().await.unwrap();
    assert!(
        body.to_string().contains("missing"),
        "the 404 says what is missing: {body}"
    );
}

/// Web pages may call the prediction routes (a preflight answered, `*` on the answer), and only
/// those: metadata, health and metrics stay unreadable to other sites' pages.
#[tokio::test]
async fn pages_of_any_site_may_call_the_prediction_routes_and_nothing_else() {
    let stack = spawn_stack(0).await;
    let (predictor, _) = stack.start_predictor().await;
    let http = reqwest::Client::new();
    let origin = "https://app.example";
    for path in [
        "/predict",
        "/deployments/web/predict",
        "/inference_jobs/01a24556-458e-737a-9775-f7980e1cb548/predict",
        "/v2/models/web/infer",
    ] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, format!("{predictor}{path}"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 200, "{path}");
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
        let answer = http
            .post(format!("{predictor}{path}"))
            .header("origin", origin)
            .json(&json!({"query": [1]}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
        assert!(
            answer
                .headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    for path in ["/metrics", "/v2/health/ready", "/v2/models/web"] {
        let answer = http
            .get(format!("{predictor}{path}"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            answer
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}"
        );
    }
    // Other methods of a prediction route are still the JSON 404 of an unknown route.
    let get = http
        .get(format!("{predictor}/predict"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
    assert!(get.text().await.unwrap().contains("no route GET /predict"));
}
