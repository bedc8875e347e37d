//! Python templates through the whole platform: uploaded to the admin, advised, trained by a
//! train worker in the template's own virtualenv.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use duma_e2e::stack::{Stack, spawn_stack};

const TASK: &str = "TABULAR_CLASSIFICATION";

fn template(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../python/tests/templates")
            .join(name),
    )
    .unwrap()
}

/// Two classes in two features, target column `y` (what the test templates read).
fn csv(rows: usize) -> String {
    duma_e2e::data::two_class_csv(rows, 0.2)
}

async fn train(stack: &Stack, app: &str, model: &str, budget: Value) -> Value {
    let train = stack.upload_dataset(TASK, csv(120)).await;
    let val = stack.upload_dataset(TASK, csv(60)).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": app, "task": TASK, "train_dataset_id": train, "val_dataset_id": val,
                   "budget": budget, "model_ids": [model]}),
        )
        .await;
    stack.wait_for_end(app, Duration::from_secs(300)).await
}

#[tokio::test]
async fn a_rafiki_template_trains_end_to_end_and_saves_its_parameters() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "centroid",
            TASK,
            template("rafiki_centroid.py"),
            "RafikiCentroid",
            json!({}),
        )
        .await;
    let job = train(&stack, "py", &model, json!({"MODEL_TRIAL_COUNT": 2})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("py").await;
    assert_eq!(trials.len(), 2);
    for trial in &trials {
        assert_eq!(trial["status"], "COMPLETED", "{trial}");
        assert_eq!(trial["is_params_saved"], true);
        assert!(trial["score"].as_f64().unwrap() > 0.9);
    }
    let logs = stack
        .get(&format!(
            "/trials/{}/logs",
            trials[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        !logs["plots"].as_array().unwrap().is_empty(),
        "the template's logger reached the trial logs: {logs}"
    );
    let params = stack
        .client
        .http
        .get(stack.client.url(&format!(
            "/trials/{}/parameters",
            trials[0]["id"].as_str().unwrap()
        )))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap();
    assert!(
        params.bytes().await.unwrap().starts_with(b"PK"),
        "a zip in Duma's safe parameters format"
    );
}

#[tokio::test]
async fn a_template_class_with_no_methods_errors_the_job_with_the_python_error() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "empty",
            TASK,
            template("broken_models.py"),
            "Empty",
            json!({}),
        )
        .await;
    let job = train(&stack, "empty", &model, json!({"MODEL_TRIAL_COUNT": 2})).await;
    assert_eq!(job["status"], "ERRORED", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("template empty is invalid") && error.contains("Error"),
        "{error}"
    );
    assert!(stack.trials("empty").await.is_empty());
}

#[tokio::test]
async fn a_hanging_template_is_killed_at_the_trial_timeout() {
    let mut stack = spawn_stack(0).await;
    stack.settings.train_worker.task_timeout_secs = 2;
    stack.start_train_worker();
    let model = stack
        .upload_model("hang", TASK, template("hang.py"), "Hang", json!({}))
        .await;
    let started = std::time::Instant::now();
    let job = train(&stack, "hang", &model, json!({"MODEL_TRIAL_COUNT": 1})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    assert!(started.elapsed() < Duration::from_secs(120));
    let trials = stack.trials("hang").await;
    assert_eq!(trials[0]["status"], "ERRORED");
    let logs = stack
        .get(&format!(
            "/trials/{}/logs",
            trials[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(logs["messages"].to_string().contains("timeout"), "{logs}");
}

#[tokio::test]
async fn a_scikit_learn_template_trains_in_its_own_virtualenv() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "sklearn",
            TASK,
            template("sklearn_logreg.py"),
            "SkLogReg",
            json!({"scikit-learn": "1.5.2"}),
        )
        .await;
    let job = train(&stack, "sk", &model, json!({"MODEL_TRIAL_COUNT": 2})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("sk").await;
    assert!(
        trials.iter().all(|t| t["status"] == "COMPLETED"),
        "{trials:?}"
    );
    let logs = stack
        .get(&format!(
            "/trials/{}/logs",
            trials[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        logs["messages"].to_string().contains("sklearn 1.5.2"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_dependency_that_cannot_be_installed_errors_the_job_with_pips_reason() {
    let stack = spawn_stack(1).await;
    let dependencies = json!({"duma-test-no-such-package": "0.0.1"});
    let model = stack
        .upload_model(
            "nodeps",
            TASK,
            template("rafiki_centroid.py"),
            "RafikiCentroid",
            dependencies,
        )
        .await;
    let job = train(&stack, "nodeps", &model, json!({"MODEL_TRIAL_COUNT": 1})).await;
    assert_eq!(job["status"], "ERRORED", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("installing dependencies failed")
            && error.contains("duma-test-no-such-package"),
        "{error}"
    );
}

#[tokio::test]
async fn a_trained_python_template_is_served_by_the_predictor() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let model = stack
        .upload_model(
            "served",
            TASK,
            template("rafiki_centroid.py"),
            "RafikiCentroid",
            json!({}),
        )
        .await;
    assert_eq!(
        train(&stack, "pyserve", &model, json!({"MODEL_TRIAL_COUNT": 1})).await["status"],
        "STOPPED"
    );
    let job = stack
        .post("/inference_jobs", json!({"app": "pyserve"}))
        .await;
    let url = duma_e2e::stack::predict_url(&job, &predictor);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let response = stack
            .client
            .http
            .post(&url)
            .json(&json!({"queries": [{"f1": -2.0, "f2": -2.0}, {"f1": 2.0, "f2": 2.0}]}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let predictions = body["predictions"].as_array().unwrap();
    assert!(
        predictions[0][0].as_f64().unwrap() > 0.5 && predictions[1][1].as_f64().unwrap() > 0.5,
        "{body}"
    );

    // A query the model raises on: the app user learns what the model said, not its traceback
    // or the server's paths (those are in the inference worker's log).
    let response = stack
        .client
        .http
        .post(&url)
        .json(&json!({"query": "not a row"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("the model raised "), "{body}");
    for internal in ["Traceback", "File \"", "/duma/", ".py"] {
        assert!(!message.contains(internal), "{internal} leaked: {body}");
    }
}

#[tokio::test]
async fn a_template_whose_load_parameters_raises_makes_the_inference_job_errored() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let model = stack
        .upload_model(
            "loadfails",
            TASK,
            template("load_fails.py"),
            "LoadFails",
            json!({}),
        )
        .await;
    assert_eq!(
        train(&stack, "loadfails", &model, json!({"MODEL_TRIAL_COUNT": 1})).await["status"],
        "STOPPED"
    );
    stack
        .post("/inference_jobs", json!({"app": "loadfails"}))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = stack.get("/inference_jobs/loadfails").await;
        if jobs[0]["status"] == "ERRORED" {
            let error = jobs[0]["error"].as_str().unwrap();
            assert!(
                error.contains("ValueError") && error.contains("another version"),
                "{error}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A query object reaches the model with its keys in the order the client sent them (models that
/// build a DataFrame from a query dict depend on it).
#[tokio::test]
async fn a_query_reaches_the_model_with_its_keys_in_the_clients_order() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let model = stack
        .upload_model(
            "keys",
            TASK,
            template("key_order.py"),
            "KeyOrder",
            json!({}),
        )
        .await;
    assert_eq!(
        train(&stack, "keyorder", &model, json!({"MODEL_TRIAL_COUNT": 1})).await["status"],
        "STOPPED"
    );
    let job = stack
        .post("/inference_jobs", json!({"app": "keyorder"}))
        .await;
    let url = duma_e2e::stack::predict_url(&job, &predictor);
    // Raw text: a client's order, not any map's.
    let body = r#"{"query": {"zeta": 1, "alpha": 2, "mid": 3, "b": 4}}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let response = stack
            .client
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["prediction"], json!(["zeta", "alpha", "mid", "b"]));
}

/// A stack with an inference worker and a predictor, and `predict_faults.py` uploaded: the stack,
/// the predictor's base URL and the model's id.
async fn serving_predict_faults() -> (Stack, String, String) {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let model = stack
        .upload_model(
            "faults",
            TASK,
            template("predict_faults.py"),
            "PredictFaults",
            json!({}),
        )
        .await;
    (stack, predictor, model)
}

/// A model that hangs on one query, or whose runner dies, costs that request (504, or 503) and
/// a reload — never the serving of the queries after it.
#[tokio::test]
async fn a_hung_or_dead_runner_is_killed_and_its_model_loaded_again() {
    let (stack, predictor, model) = serving_predict_faults().await;
    assert_eq!(
        train(&stack, "faults", &model, json!({"MODEL_TRIAL_COUNT": 1})).await["status"],
        "STOPPED"
    );
    let job = stack
        .post("/inference_jobs", json!({"app": "faults"}))
        .await;
    let url = duma_e2e::stack::predict_url(&job, &predictor);
    let predict = |query: Value| {
        let (http, url) = (stack.client.http.clone(), url.clone());
        async move {
            http.post(&url)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap()
        }
    };
    let served_again = |why: &'static str| {
        let predict = &predict;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let response = predict(json!(21)).await;
                if response.status() == 200 {
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(body["prediction"], 42);
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "not served again {why}: {}",
                    response.status()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    served_again("at first").await;

    // The stack's predictor waits 2 s: the hung call is a 504, and the runner is killed then.
    assert_eq!(predict(json!("hang")).await.status(), 504);
    served_again("after a hung prediction").await;

    let died = predict(json!("exit")).await.status();
    assert!(died == 503 || died == 504, "{died}");
    served_again("after its runner died").await;
}

/// A served model's runner lives as long as the model is hosted, through idle time: bubblewrap's
/// `--die-with-parent` ends it with the thread that started it, so that thread must not be one a
/// pool lets go after 10 idle seconds (tokio's blocking threads do).
#[tokio::test]
async fn an_idle_served_model_keeps_its_runner() {
    let (stack, predictor, model) = serving_predict_faults().await;
    assert_eq!(
        train(&stack, "idle", &model, json!({"MODEL_TRIAL_COUNT": 1})).await["status"],
        "STOPPED"
    );
    let job = stack.post("/inference_jobs", json!({"app": "idle"})).await;
    let url = duma_e2e::stack::predict_url(&job, &predictor);
    let predict = || {
        stack
            .client
            .http
            .post(&url)
            .json(&json!({ "query": 21 }))
            .send()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while predict().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The idle time is the scenario: longer than a pooled thread's 10 s keep-alive.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let response = predict().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the model lost its runner while idle"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["prediction"], 42);
}

/// Two apps served by one inference worker: while one model takes 1.5 s over a query, the
/// other answers as fast as ever — each hosted model has its own loop.
#[tokio::test]
async fn a_slow_model_does_not_hold_up_another_on_the_same_worker() {
    let (stack, predictor, model) = serving_predict_faults().await;
    let mut urls = Vec::new();
    for app in ["heavy", "light"] {
        assert_eq!(
            train(&stack, app, &model, json!({"MODEL_TRIAL_COUNT": 1})).await["status"],
            "STOPPED"
        );
        let job = stack.post("/inference_jobs", json!({"app": app})).await;
        urls.push(duma_e2e::stack::predict_url(&job, &predictor));
    }
    let predict = |url: String, query: Value| {
        let http = stack.client.http.clone();
        async move {
            let started = std::time::Instant::now();
            let response = http
                .post(&url)
                .json(&json!({ "query": query }))
                .send()
                .await
                .unwrap();
            (response.status(), started.elapsed())
        }
    };
    for url in &urls {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while predict(url.clone(), json!(1)).await.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "never served");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let heavy = tokio::spawn(predict(urls[0].clone(), json!("slow")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let (status, took) = predict(urls[1].clone(), json!(21)).await;
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(700),
            "the light model waited {took:?} behind the heavy one"
        );
    }
    let (status, took) = heavy.await.unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(1500), "{took:?}");
}

/// `admin.quota_concurrent_trials` holds across workers: with a quota of 1, two idle train
/// workers run one user's trials one after the other, never side by side.
#[tokio::test]
async fn a_users_trials_run_no_more_at_once_than_the_quota() {
    let stack = duma_e2e::stack::spawn_stack_with(2, |settings| {
        settings.admin.quota_concurrent_trials = 1;
    })
    .await;
    let model = stack
        .upload_model(
            "slow",
            TASK,
            template("slow_train.py"),
            "SlowTrain",
            json!({}),
        )
        .await;
    assert_eq!(
        train(&stack, "quota", &model, json!({"MODEL_TRIAL_COUNT": 3})).await["status"],
        "STOPPED"
    );
    let parse =
        |value: &Value| chrono::DateTime::parse_from_rfc2822(value.as_str().unwrap()).unwrap();
    let mut spans: Vec<_> = stack
        .trials("quota")
        .await
        .iter()
        .map(|t| (parse(&t["datetime_started"]), parse(&t["datetime_stopped"])))
        .collect();
    assert_eq!(spans.len(), 3);
    spans.sort();
    for pair in spans.windows(2) {
        // (Second resolution: a trial may start in the second the previous one stopped.)
        assert!(pair[1].0 >= pair[0].1, "trials overlapped: {spans:?}");
    }
}

/// Subscribers of the stack's event channel (how a test knows a worker hears events).
async fn event_subscribers(stack: &Stack) -> i64 {
    let channel = stack.ctx.redis.keys().events_channel();
    stack
        .ctx
        .redis
        .retrying(|mut conn| {
            let channel = channel.clone();
            async move {
                let (_, count): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query_async(&mut conn)
                    .await?;
                Ok(count)
            }
        })
        .await
        .unwrap()
}

/// An uploaded template's environment is built at once by the train workers, before any train
/// job asks for it, so its first trial (and its serving) installs nothing. The dependency set is
/// new on every run (a version no package has), so the environment cannot predate the upload.
#[tokio::test]
async fn an_uploaded_templates_environment_is_built_before_any_trial() {
    let stack = spawn_stack(0).await;
    let before = event_subscribers(&stack).await;
    stack.start_train_worker();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while event_subscribers(&stack).await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unique = uuid::Uuid::new_v4().as_u128() % 1_000_000_007;
    let dependencies: duma_domain::dependencies::Dependencies =
        [("six".to_owned(), format!("!=0.0.{unique}"))].into();
    let python = &stack.settings.python;
    let sandbox = std::sync::Arc::new(duma_runtime::sandbox::Sandbox::new(
        &python.sandbox,
        &python.interpreter,
        &python.env_dir,
        &python.sdk_path,
    ));
    let venvs = duma_runtime::python::VenvCache::new(&python.env_dir, &python.interpreter, sandbox);
    assert!(!venvs.is_built(&dependencies));
    stack
        .upload_model(
            "prebuilt",
            TASK,
            template("rafiki_centroid.py"),
            "RafikiCentroid",
            json!(dependencies),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !venvs.is_built(&dependencies) {
        assert!(
            std::time::Instant::now() < deadline,
            "the environment was not built within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn upload_with_checkpoint(
    stack: &Stack,
    name: &str,
    checkpoint: Vec<u8>,
) -> reqwest::Response {
    let upload = duma_e2e::client::ModelUpload {
        name,
        task: TASK,
        class: "RafikiCentroid",
        source: template("rafiki_centroid.py"),
        dependencies: json!({}),
        access_right: "PRIVATE",
        checkpoint: Some(checkpoint),
    };
    stack.client.upload_model(&stack.token, upload).await
}

/// SINGA-Auto's checkpoint flow: a template uploaded with trained parameters serves them without
/// a train job, built with the knobs its user gives (fixed and policy knobs filled in), and
/// answers exactly as the trial the parameters came from.
#[tokio::test]
async fn a_template_uploaded_with_a_checkpoint_serves_it_without_training() {
    use duma_e2e::client::expect_error;
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let model = stack
        .upload_model(
            "trained",
            TASK,
            template("rafiki_centroid.py"),
            "RafikiCentroid",
            json!({}),
        )
        .await;
    let job = train(&stack, "source", &model, json!({"MODEL_TRIAL_COUNT": 1})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trial = &stack.trials("source").await[0];
    let knobs = trial["proposal"]["knobs"].clone();
    let parameters = stack
        .client
        .http
        .get(stack.client.url(&format!(
            "/trials/{}/parameters",
            trial["id"].as_str().unwrap()
        )))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();

    // What is not Duma's parameters is refused at upload, and nothing is stored.
    let pickle = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.".to_vec();
    let message = expect_error(
        upload_with_checkpoint(&stack, "pickled", pickle).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("pickle"), "{message}");
    let message = expect_error(
        upload_with_checkpoint(&stack, "garbage", b"not parameters".to_vec()).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("/parameters"), "{message}");
    let names: Vec<Value> = stack
        .get("/models/available")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert!(!names.contains(&json!("pickled")) && !names.contains(&json!("garbage")));

    let uploaded =
        duma_e2e::client::json_ok(upload_with_checkpoint(&stack, "ckpt", parameters.clone()).await)
            .await;
    let checkpoint_model = uploaded["id"].as_str().unwrap().to_owned();
    let view = stack.get(&format!("/models/{checkpoint_model}")).await;
    assert_eq!(view["checkpoint"]["size_bytes"], parameters.len(), "{view}");

    // Knobs belong to a checkpoint, never to a trained version.
    let refused = stack
        .client
        .post(
            Some(&stack.token),
            "/inference_jobs",
            json!({"app": "source", "knobs": {"epochs": 1}}),
        )
        .await;
    let message = expect_error(refused, 400, "InvalidRequestError").await;
    assert!(message.contains("model_id"), "{message}");
    // SINGA-Auto's client sends `description: null`; a description Duma would drop is refused.
    for path in ["/inference_jobs", "/inference_jobs/checkpoint"] {
        let refused = stack
            .client
            .post(
                Some(&stack.token),
                path,
                json!({"app": "source", "model_name": "ckpt", "description": "mine"}),
            )
            .await;
        let message = expect_error(refused, 400, "InvalidRequestError").await;
        assert!(message.contains("description"), "{message}");
    }

    // Only the knobs that need choosing are given: `max_rows` (fixed) and `quick_eval`
    // (a policy) are filled in.
    let chosen: serde_json::Map<String, Value> = knobs
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "max_rows" | "quick_eval"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let from_checkpoint = stack
        .post(
            "/inference_jobs",
            json!({"app": "restored", "model_id": checkpoint_model, "knobs": chosen}),
        )
        .await;
    let original = stack
        .post("/inference_jobs", json!({"app": "source"}))
        .await;
    let queries = json!([{"f1": -2.0, "f2": -1.5}, {"f1": 0.3, "f2": 0.1}, {"f1": 2.0, "f2": 2.5}]);
    let restored = stack
        .predictions(
            &duma_e2e::stack::predict_url(&from_checkpoint, &predictor),
            &queries,
        )
        .await;
    assert_eq!(
        restored,
        stack
            .predictions(
                &duma_e2e::stack::predict_url(&original, &predictor),
                &queries
            )
            .await
    );

    // SINGA-Auto's route: the app is named after the model.
    let singa = stack
        .post(
            "/inference_jobs/checkpoint",
            json!({"model_name": "ckpt", "knobs": chosen, "budget": {"GPU_COUNT": 0}}),
        )
        .await;
    assert_eq!(singa["app"], "ckpt", "{singa}");
    assert_eq!(singa["model_id"], checkpoint_model.as_str(), "{singa}");
    assert_eq!(
        stack
            .predictions(&duma_e2e::stack::predict_url(&singa, &predictor), &queries)
            .await,
        restored
    );

    // A knob that needs choosing and was not given: the job ends ERRORED naming it.
    stack
        .post(
            "/inference_jobs",
            json!({"app": "unchosen", "model_id": checkpoint_model}),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = stack.get("/inference_jobs/unchosen").await;
        if jobs[0]["status"] == "ERRORED" {
            let error = jobs[0]["error"].as_str().unwrap();
            assert!(error.contains("temperature"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Rafiki's SHARE_PARAMS: once a trial has saved parameters, the advisor sets the template's
/// policy knob and the train worker hands the best earlier trial's parameters to `train`.
#[tokio::test]
async fn shared_params_of_the_best_earlier_trial_reach_train() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "shares",
            TASK,
            template("shares_params.py"),
            "SharesParams",
            json!({}),
        )
        .await;
    let job = train(&stack, "shares", &model, json!({"MODEL_TRIAL_COUNT": 5})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("shares").await;
    assert_eq!(trials.len(), 5);
    let score_of = |id: &str| {
        trials
            .iter()
            .find(|t| t["id"] == id)
            .and_then(|t| t["score"].as_f64())
    };
    let mut shared = 0;
    for trial in &trials {
        let id = trial["id"].as_str().unwrap();
        let logs = stack.get(&format!("/trials/{id}/logs")).await;
        let metrics = logs["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m.get("share").is_some())
            .unwrap_or_else(|| panic!("{logs}"))
            .clone();
        let detail = stack.get(&format!("/trials/{id}")).await;
        let proposal = &detail["proposal"];
        let policy_set = proposal["knobs"]["share"] == true;
        assert_eq!(metrics["share"] == 1.0, policy_set, "{metrics} {proposal}");
        match proposal["meta"]["shared_params_trial_id"].as_str() {
            Some(from) => {
                shared += 1;
                assert!(policy_set);
                assert_eq!(
                    metrics["started_from"].as_f64(),
                    score_of(from),
                    "trained from the named trial's parameters: {metrics} {proposal}"
                );
            }
            None => {
                assert!(!policy_set);
                assert_eq!(metrics["started_from"], -1.0);
            }
        }
    }
    // The first trial has nothing to start from; later ones (one slot, one after another) do.
    assert!(shared >= 1, "no trial got shared parameters");
}

/// Rafiki's EARLY_STOP and final train: search trials run with the template's EARLY_STOP policy
/// on; the budget's last trial trains the best knobs found with it off, flagged FINAL_TRAIN.
#[tokio::test]
async fn early_stopped_search_ends_with_a_final_train_of_the_best_knobs() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "early",
            TASK,
            template("early_stop.py"),
            "EarlyStop",
            json!({}),
        )
        .await;
    let job = train(&stack, "early", &model, json!({"MODEL_TRIAL_COUNT": 4})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let mut trials = Vec::new();
    for trial in stack.trials("early").await {
        trials.push(
            stack
                .get(&format!("/trials/{}", trial["id"].as_str().unwrap()))
                .await,
        );
    }
    trials.sort_by_key(|t| t["no"].as_i64());
    assert_eq!(trials.len(), 4, "{trials:?}");
    let (search, last) = trials.split_at(3);
    for trial in search {
        let proposal = &trial["proposal"];
        assert_eq!(proposal["knobs"]["early"], true, "{trial}");
        assert_eq!(proposal["meta"]["proposal_type"], "SEARCH", "{trial}");
    }
    let best = search
        .iter()
        .max_by(|a, b| {
            a["score"]
                .as_f64()
                .partial_cmp(&b["score"].as_f64())
                .unwrap()
        })
        .unwrap();
    let last = &last[0];
    let proposal = &last["proposal"];
    assert_eq!(proposal["meta"]["proposal_type"], "FINAL_TRAIN", "{last}");
    assert_eq!(
        proposal["meta"]["final_train_of_trial_id"], best["id"],
        "{last}"
    );
    assert_eq!(proposal["knobs"]["early"], false, "{last}");
    assert_eq!(
        proposal["knobs"]["x"], best["proposal"]["knobs"]["x"],
        "{last}"
    );
    // Trained in full, it scores twice what its early-stopped search trial did.
    let full = last["score"].as_f64().unwrap();
    assert!(
        (full - 2.0 * best["score"].as_f64().unwrap()).abs() < 1e-9,
        "{last}"
    );
}

/// Every Rafiki policy reaches the template: search trials run cheap (EARLY_STOP, QUICK_EVAL,
/// DOWNSCALE on), share the best earlier trial's parameters (SHARE_PARAMS) and, every other
/// trial once there are some, evaluate them untrained (SKIP_TRAIN); the final train runs the best
/// knobs with every policy off.
#[tokio::test]
async fn every_policy_reaches_the_template_and_the_final_train_runs_with_none() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "policies",
            TASK,
            template("policies.py"),
            "Policies",
            json!({}),
        )
        .await;
    let job = train(&stack, "policies", &model, json!({"MODEL_TRIAL_COUNT": 6})).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let mut trials = Vec::new();
    for trial in stack.trials("policies").await {
        let id = trial["id"].as_str().unwrap().to_owned();
        let detail = stack.get(&format!("/trials/{id}")).await;
        let logs = stack.get(&format!("/trials/{id}/logs")).await;
        let flags = logs["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m.get("early").is_some())
            .unwrap_or_else(|| panic!("{logs}"))
            .clone();
        trials.push((detail, flags));
    }
    trials.sort_by_key(|(t, _)| t["no"].as_i64());
    assert_eq!(trials.len(), 6, "{trials:?}");
    let (search, last) = trials.split_at(5);
    let mut skipped = 0;
    for (trial, flags) in search {
        assert_eq!(trial["status"], "COMPLETED", "{trial}");
        let knobs = &trial["proposal"]["knobs"];
        for policy in ["early", "quick", "small"] {
            assert_eq!(knobs[policy], true, "{policy}: {trial}");
        }
        for policy in ["early", "quick", "small", "skip", "share"] {
            assert_eq!(
                flags[policy] == 1.0,
                knobs[policy] == true,
                "{flags} {trial}"
            );
        }
        let shared_from = trial["proposal"]["meta"]["shared_params_trial_id"].as_str();
        assert_eq!(shared_from.is_some(), knobs["share"] == true, "{trial}");
        if knobs["skip"] == true {
            skipped += 1;
            assert!(
                shared_from.is_some(),
                "skipped training without parameters: {trial}"
            );
            assert_eq!(trial["no"].as_i64().unwrap() % 2, 0, "{trial}");
            // Untrained: it scores the shared parameters, quickly evaluated.
            let score = trial["score"].as_f64().unwrap();
            assert!((score - flags["started_from"].as_f64().unwrap() / 2.0).abs() < 1e-9);
        }
    }
    assert!(skipped >= 1, "no trial skipped training: {search:?}");
    let (last, flags) = &last[0];
    assert_eq!(
        last["proposal"]["meta"]["proposal_type"], "FINAL_TRAIN",
        "{last}"
    );
    for policy in ["early", "quick", "small", "skip", "share"] {
        assert_eq!(last["proposal"]["knobs"][policy], false, "{policy}: {last}");
        assert_eq!(flags[policy], 0.0, "{flags}");
    }
    // Trained and evaluated in full: its score is its own x.
    let x = last["proposal"]["knobs"]["x"].as_f64().unwrap();
    assert!((last["score"].as_f64().unwrap() - x).abs() < 1e-9, "{last}");
}

/// Early stopping: in the same time budget, a job whose trials report intermediate scores stops
/// those falling behind the median of completed trials (STOPPED before their last step, scored
/// with their last report), runs at least as many trials as with `EARLY_STOPPING: OFF`, and finds
/// as good a best. (Strictly more trials needs the steps saved to add up to a whole trial, which
/// in a 36 s budget depends on how many of the advisor's proposals fall behind: not asserted.)
#[tokio::test]
async fn trials_behind_the_median_stop_early_and_the_time_goes_to_more_trials() {
    const TIME_HOURS: f64 = 36.0 / 3600.0;
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model("curves", TASK, template("curves.py"), "Curves", json!({}))
        .await;
    let mut outcomes = Vec::new();
    for (app, early_stopping) in [("curves-off", "OFF"), ("curves-median", "MEDIAN")] {
        let budget = json!({"TIME_HOURS": TIME_HOURS, "EARLY_STOPPING": early_stopping});
        let job = train(&stack, app, &model, budget).await;
        assert_eq!(job["status"], "STOPPED", "{job}");
        let trials = stack.trials(app).await;
        let mut stopped = 0;
        for trial in &trials {
            match trial["status"].as_str() {
                Some("COMPLETED") => {}
                Some("STOPPED") => {
                    stopped += 1;
                    // Scored with its last report, x · step / 16, below its x.
                    let id = trial["id"].as_str().unwrap();
                    let logs = stack.get(&format!("/trials/{id}/logs")).await;
                    let last = logs["metrics"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .rev()
                        .find_map(|m| m["intermediate_score"].as_f64())
                        .unwrap_or_else(|| panic!("{logs}"));
                    assert_eq!(trial["score"].as_f64(), Some(last), "{trial}");
                    let messages = logs["messages"].to_string();
                    assert!(messages.contains("stopped early"), "{logs}");
                    // Stopped before its last step: the time of the rest went to other trials.
                    let reports = logs["metrics"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|m| m["intermediate_score"].is_number())
                        .count();
                    assert!(reports < 16, "a stopped trial ran every step: {logs}");
                }
                _ => panic!("{trial}"),
            }
        }
        let best = trials
            .iter()
            .filter(|t| t["status"] == "COMPLETED")
            .filter_map(|t| t["score"].as_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        outcomes.push((trials.len(), stopped, best));
    }
    let [
        (off_trials, off_stopped, off_best),
        (median_trials, median_stopped, median_best),
    ] = outcomes[..]
    else {
        unreachable!()
    };
    eprintln!("(trials, stopped early, best) with EARLY_STOPPING OFF, MEDIAN: {outcomes:?}");
    assert_eq!(off_stopped, 0, "EARLY_STOPPING OFF stopped a trial");
    assert!(median_stopped >= 1, "nothing was stopped: {outcomes:?}");
    // The two runs go one after the other on a shared machine: one trial's worth of timing
    // noise between them is allowed (it failed here once while a build ran beside it).
    assert!(
        median_trials + 1 >= off_trials,
        "early stopping gave fewer trials in the same time: {outcomes:?}"
    );
    assert!(median_best >= off_best - 0.05, "{outcomes:?}");
}

/// The budget's FINAL_TRAIN TRAIN_VAL: the last trial retrains the best knobs on the train and
/// validation rows together, flagged on the trial; other tasks' datasets are refused.
#[tokio::test]
async fn a_final_train_on_train_and_val_sees_both_datasets_rows() {
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "rows",
            TASK,
            template("counts_rows.py"),
            "CountsRows",
            json!({}),
        )
        .await;
    let budget = json!({"MODEL_TRIAL_COUNT": 4, "FINAL_TRAIN": "TRAIN_VAL"});
    // `train` uploads 120 train rows and 60 validation rows.
    let job = train(&stack, "rows", &model, budget).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    assert_eq!(job["budget"]["FINAL_TRAIN"], "TRAIN_VAL", "{job}");
    let mut trials = Vec::new();
    for trial in stack.trials("rows").await {
        let id = trial["id"].as_str().unwrap().to_owned();
        let detail = stack.get(&format!("/trials/{id}")).await;
        let logs = stack.get(&format!("/trials/{id}/logs")).await;
        let rows = logs["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|m| m["train_rows"].as_i64())
            .unwrap_or_else(|| panic!("{logs}"));
        trials.push((detail, rows));
    }
    trials.sort_by_key(|(t, _)| t["no"].as_i64());
    assert_eq!(trials.len(), 4);
    let (search, last) = trials.split_at(3);
    for (trial, rows) in search {
        assert_eq!(*rows, 120, "{trial}");
        assert!(
            trial["proposal"]["meta"].get("trained_on").is_none(),
            "{trial}"
        );
    }
    let best = search
        .iter()
        .max_by(|a, b| {
            a.0["score"]
                .as_f64()
                .partial_cmp(&b.0["score"].as_f64())
                .unwrap()
        })
        .unwrap();
    let (last, rows) = &last[0];
    assert_eq!(*rows, 180, "trained on train + validation rows: {last}");
    let meta = &last["proposal"]["meta"];
    assert_eq!(meta["proposal_type"], "FINAL_TRAIN", "{last}");
    assert_eq!(meta["trained_on"], "TRAIN_VAL", "{last}");
    assert_eq!(meta["final_train_of_trial_id"], best.0["id"], "{last}");
    assert_eq!(
        last["proposal"]["knobs"], best.0["proposal"]["knobs"],
        "{last}"
    );

    // Only CSV datasets can be joined.
    let nil = "00000000-0000-0000-0000-000000000000";
    let images = stack
        .client
        .post(
            Some(&stack.token),
            "/train_jobs",
            json!({"app": "imgs", "task": "IMAGE_CLASSIFICATION", "train_dataset_id": nil,
                   "val_dataset_id": nil, "budget": {"FINAL_TRAIN": "TRAIN_VAL"}}),
        )
        .await;
    assert_eq!(images.status(), 400);
    let body = images.text().await.unwrap();
    assert!(body.contains("TABULAR_"), "{body}");
}

/// A job asking for a GPU per trial waits, saying why, while no train worker has one; a worker
/// with GPUs then runs its trials, each told exactly the GPU it was lent.
#[tokio::test]
async fn trials_needing_a_gpu_wait_for_a_worker_with_one_and_see_only_theirs() {
    // The stack's own train worker finds no GPU (this machine has no NVIDIA driver).
    let stack = spawn_stack(1).await;
    let model = stack
        .upload_model(
            "gpus",
            TASK,
            template("sees_gpus.py"),
            "SeesGpus",
            json!({}),
        )
        .await;
    let train_csv = stack.upload_dataset(TASK, csv(60)).await;
    let val_csv = stack.upload_dataset(TASK, csv(30)).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": "gpu", "task": TASK, "train_dataset_id": train_csv,
                   "val_dataset_id": val_csv, "model_ids": [model],
                   "budget": {"MODEL_TRIAL_COUNT": 2, "GPU_COUNT": 1}}),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let job = stack.get("/train_jobs/gpu/-1").await;
        if let Some(why) = job["waiting"].as_str() {
            break why.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no waiting reason: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        waiting.contains("1 GPUs") && waiting.contains("most any live one has is 0"),
        "{waiting}"
    );
    // Two idle-recheck rounds of the CPU worker: it must not take the job.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stack.trials("gpu").await.is_empty(),
        "a CPU worker ran a GPU trial"
    );

    // A worker with two GPUs (named: no driver here, so no device node exists to bind).
    let mut settings = stack.settings_for(duma_common::accounts::Account::TrainWorker);
    settings.train_worker.gpus = "0,1".into();
    tokio::spawn(duma_train_worker::run(settings, stack.stop.child_token()));
    let job = stack.wait_for_end("gpu", Duration::from_secs(180)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    assert!(job.get("waiting").is_none(), "{job}");
    let trials = stack.trials("gpu").await;
    assert_eq!(trials.len(), 2, "{trials:?}");
    for trial in trials {
        assert_eq!(trial["status"], "COMPLETED", "{trial}");
        let id = trial["id"].as_str().unwrap();
        let messages = stack.get(&format!("/trials/{id}/logs")).await["messages"].to_string();
        // One GPU each, the lowest free one; the other GPU and the CPU worker's none unseen.
        assert!(
            messages.contains("CUDA_VISIBLE_DEVICES=0 nodes=<none>"),
            "{messages}"
        );
    }
}
