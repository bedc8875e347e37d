use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use duma_common::db::{models, users, workers};
use duma_domain::{AccessRight, KnobConfig, LeaseKind, ModelId, TemplateKind, WorkerKind};
use serde_json::{Value, json};

use crate::stack::{Stack, classification_csv, regression_csv, spawn_stack, spawn_stack_with};

const CLASSIFICATION: &str = "TABULAR_CLASSIFICATION";
const REGRESSION: &str = "TABULAR_REGRESSION";

async fn start_job(
    stack: &Stack,
    app: &str,
    task: &str,
    model_ids: &[String],
    budget: Value,
    csv: fn(usize, u64) -> String,
) {
    let train = stack.upload_dataset(task, csv(300, 1)).await;
    let val = stack.upload_dataset(task, csv(150, 2)).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": app, "task": task, "train_dataset_id": train, "val_dataset_id": val,
                   "budget": budget, "model_ids": model_ids}),
        )
        .await;
}

/// Registers a built-in template under another name, optionally with its knobs pinned, as the
/// superadmin's public model.
async fn native_model(
    stack: &Stack,
    name: &str,
    model_class: &str,
    knob_config: Option<KnobConfig>,
) -> String {
    let db = stack.ctx.pool.get().await.unwrap();
    let owner = users::by_email(&db, "superadmin@rafiki")
        .await
        .unwrap()
        .unwrap();
    let model = models::insert(
        &db,
        &models::NewModel {
            id: ModelId::new(),
            user_id: owner.id,
            name: name.into(),
            task: CLASSIFICATION.into(),
            template_kind: TemplateKind::Native,
            source_path: None,
            source_sha256: None,
            source_size_bytes: None,
            model_class: model_class.into(),
            knob_config,
            dependencies: Default::default(),
            access_right: AccessRight::Public,
            docker_image: None,
        },
    )
    .await
    .unwrap();
    model.id.to_string()
}

fn statuses(trials: &[Value]) -> Vec<&str> {
    trials
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn two_models_two_workers_five_trials_each() {
    let stack = spawn_stack(2).await;
    let models = stack
        .builtin_models(
            CLASSIFICATION,
            &["LogisticRegression", "KNeighborsClassifier"],
        )
        .await;
    start_job(
        &stack,
        "easy",
        CLASSIFICATION,
        &models,
        json!({"MODEL_TRIAL_COUNT": 5}),
        classification_csv,
    )
    .await;

    let job = stack.wait_for_end("easy", Duration::from_secs(120)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("easy").await;
    assert_eq!(trials.len(), 10, "{trials:?}");
    assert!(
        statuses(&trials).iter().all(|s| *s == "COMPLETED"),
        "{:?}",
        statuses(&trials)
    );
    let workers: HashSet<&str> = trials
        .iter()
        .filter_map(|t| t["worker_id"].as_str())
        .collect();
    assert_eq!(workers.len(), 2, "both workers ran trials");
    let best = stack
        .get("/train_jobs/easy/-1/trials?type=best&max_count=1")
        .await;
    let score = best[0]["score"].as_f64().unwrap();
    assert!(score >= 0.9, "best accuracy {score}");
    for model in ["LogisticRegression", "KNeighborsClassifier"] {
        let numbers: Vec<i64> = trials
            .iter()
            .filter(|t| t["model_name"] == model)
            .map(|t| t["no"].as_i64().unwrap())
            .collect();
        let mut sorted = numbers.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 2, 3, 4, 5], "{model}");
    }
    let id = best[0]["id"].as_str().unwrap();
    let logs = stack.get(&format!("/trials/{id}/logs")).await;
    assert!(
        !logs["messages"].as_array().unwrap().is_empty()
            || !logs["metrics"].as_array().unwrap().is_empty(),
        "{logs}"
    );
    let params = stack
        .http
        .get(stack.url(&format!("/trials/{id}/parameters")))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap();
    assert!(params.bytes().await.unwrap().starts_with(b"DUMAPRMS"));
}

#[tokio::test]
async fn a_regression_job_reaches_a_sensible_r2() {
    let stack = spawn_stack(1).await;
    let models = stack.builtin_models(REGRESSION, &["RidgeRegression"]).await;
    start_job(
        &stack,
        "reg",
        REGRESSION,
        &models,
        json!({"MODEL_TRIAL_COUNT": 3}),
        regression_csv,
    )
    .await;
    let job = stack.wait_for_end("reg", Duration::from_secs(120)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let best = stack
        .get("/train_jobs/reg/-1/trials?type=best&max_count=1")
        .await;
    let r2 = best[0]["score"].as_f64().unwrap();
    assert!(r2 > 0.9, "R² {r2}");
}

#[tokio::test]
async fn the_time_budget_ends_a_job_and_trials_in_flight_finish() {
    let stack = spawn_stack(1).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["LogisticRegression"])
        .await;
    // About two seconds of budget, no trial limit.
    start_job(
        &stack,
        "timed",
        CLASSIFICATION,
        &models,
        json!({"TIME_HOURS": 0.0006}),
        classification_csv,
    )
    .await;
    let job = stack.wait_for_end("timed", Duration::from_secs(60)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("timed").await;
    assert!(!trials.is_empty());
    assert!(
        statuses(&trials).iter().all(|s| *s == "COMPLETED"),
        "in-flight trials finish: {:?}",
        statuses(&trials)
    );
}

#[tokio::test]
async fn a_user_stop_ends_the_job_at_once_and_leaves_no_trial_running() {
    let stack = spawn_stack(2).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["RandomForestClassifier"])
        .await;
    start_job(
        &stack,
        "stopme",
        CLASSIFICATION,
        &models,
        json!({"TIME_HOURS": 1}),
        classification_csv,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stack
        .trials("stopme")
        .await
        .iter()
        .any(|t| t["status"] == "RUNNING")
    {
        assert!(Instant::now() < deadline, "no trial ever ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    stack.post("/train_jobs/stopme/1/stop", json!({})).await;
    let job = stack.get("/train_jobs/stopme/1").await;
    assert_eq!(job["status"], "STOPPED");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let trials = stack.trials("stopme").await;
    assert!(
        !statuses(&trials).contains(&"RUNNING"),
        "{:?}",
        statuses(&trials)
    );
    // And nothing starts afterwards.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = stack.trials("stopme").await;
    assert_eq!(later.len(), trials.len());
    assert!(!statuses(&later).contains(&"RUNNING"));
}

#[tokio::test]
async fn a_killed_train_worker_does_not_stop_the_job() {
    let stack = spawn_stack(0).await;
    let port = duma_testkit::free_port();
    let mut victim = Command::new(env!("CARGO_BIN_EXE_duma-train-worker"))
        .envs(stack.ctx.service_env())
        .env("DUMA_TRAIN_WORKER__PORT", port.to_string())
        .env("DUMA_TRAIN_WORKER__LEASE_TTL_MS", "1000")
        .env("DUMA_TRAIN_WORKER__HEARTBEAT_INTERVAL_MS", "200")
        .env(
            "DUMA_TRAIN_WORKER__CACHE_DIR",
            stack.ctx.dir.path().join("victim-cache"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let models = stack
        .builtin_models(CLASSIFICATION, &["RandomForestClassifier"])
        .await;
    start_job(
        &stack,
        "kill",
        CLASSIFICATION,
        &models,
        json!({"MODEL_TRIAL_COUNT": 4}),
        classification_csv,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stack
        .trials("kill")
        .await
        .iter()
        .any(|t| t["status"] == "RUNNING")
    {
        assert!(
            Instant::now() < deadline,
            "the victim never started a trial"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    stack.start_train_worker();

    let job = stack.wait_for_end("kill", Duration::from_secs(120)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("kill").await;
    assert_eq!(
        trials.len(),
        4,
        "the budget counts every trial, the lost one too"
    );
    assert!(!statuses(&trials).contains(&"RUNNING"));
    assert!(statuses(&trials).contains(&"COMPLETED"));
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Killed(std::process::Child);

impl Killed {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real train worker process, with leases short enough that its death is noticed in a second.
fn train_worker_process(stack: &Stack, name: &str) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_duma-train-worker"))
        .envs(stack.ctx.service_env())
        .env(
            "DUMA_TRAIN_WORKER__PORT",
            duma_testkit::free_port().to_string(),
        )
        .env("DUMA_TRAIN_WORKER__LEASE_TTL_MS", "1000")
        .env("DUMA_TRAIN_WORKER__HEARTBEAT_INTERVAL_MS", "200")
        .env(
            "DUMA_TRAIN_WORKER__CACHE_DIR",
            stack.ctx.dir.path().join(name),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

/// The id of the train worker registered last.
async fn newest_train_worker(stack: &Stack) -> Option<uuid::Uuid> {
    let db = stack.ctx.pool.get().await.unwrap();
    db.query_opt(
        "SELECT id FROM workers WHERE kind = 'TRAIN' ORDER BY datetime_started DESC LIMIT 1",
        &[],
    )
    .await
    .unwrap()
    .map(|row| row.get::<_, duma_domain::WorkerId>(0).0)
}

/// The race the fault drills found: a worker SIGKILLed mid-trial and restarted at once (as a
/// supervisor does) must not take its dead predecessor's lease over before the predecessor's
/// trial is cleaned up — else that trial stays RUNNING and the job never ends. Every other lease
/// is held (by a busy worker that never finishes) and the reconciler is slower than the lease
/// expiry, as in production, so the restarted worker meets the expired lease first.
#[tokio::test]
async fn a_train_worker_killed_and_restarted_at_once_again_and_again_never_wedges_the_job() {
    const KILLS: u64 = 4;
    let stack = spawn_stack_with(0, |settings| settings.admin.reconcile_interval_ms = 2_500).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["RandomForestClassifier"])
        .await;
    start_job(
        &stack,
        "drill",
        CLASSIFICATION,
        &models,
        json!({"MODEL_TRIAL_COUNT": 10}),
        classification_csv,
    )
    .await;
    let db = stack.ctx.pool.get().await.unwrap();
    let busy = workers::register(&db, WorkerKind::Train, "busy", &json!({}))
        .await
        .unwrap();
    workers::claim(&db, LeaseKind::Train, busy.id, Duration::from_secs(600))
        .await
        .unwrap()
        .expect("the job has two TRAIN leases");
    drop(db);
    let mut worker = train_worker_process(&stack, "cache-0");
    let mut killed_trials = HashSet::new();
    for kill in 1..=KILLS {
        // Wait for the victim to run a trial, then kill it at a varying point of that trial.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let victim = newest_train_worker(&stack).await.map(|id| id.to_string());
            let trials = stack.trials("drill").await;
            let running = trials.iter().find(|t| {
                t["status"] == "RUNNING"
                    && t["worker_id"].as_str() == victim.as_deref()
                    && !killed_trials.contains(&t["id"].to_string())
            });
            if let Some(trial) = running {
                killed_trials.insert(trial["id"].to_string());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the victim ran no trial: {trials:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * kill)).await;
        worker.kill();
        worker = train_worker_process(&stack, &format!("cache-{kill}"));
    }
    let job = stack.wait_for_end("drill", Duration::from_secs(30)).await;
    worker.kill();
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("drill").await;
    assert!(!statuses(&trials).contains(&"RUNNING"), "{trials:?}");
    assert_eq!(trials.len(), 10, "the budget counts every trial");
}

#[tokio::test]
async fn an_advisor_restart_keeps_numbers_unique_and_the_budget() {
    let stack = spawn_stack(2).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["LogisticRegression"])
        .await;
    start_job(
        &stack,
        "restart",
        CLASSIFICATION,
        &models,
        json!({"MODEL_TRIAL_COUNT": 8}),
        classification_csv,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.trials("restart").await.len() < 2 {
        assert!(Instant::now() < deadline, "no trials");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.advisor.cancel();
    stack.start_advisor();
    let job = stack
        .wait_for_end("restart", Duration::from_secs(120))
        .await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("restart").await;
    let mut numbers: Vec<i64> = trials.iter().map(|t| t["no"].as_i64().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_fixed_knob_template_runs_exactly_one_trial() {
    let stack = spawn_stack(2).await;
    let knob_config: KnobConfig = serde_json::from_value(json!({
        "alpha": {"type": "FixedKnob", "value": 0.01},
        "class_weight": {"type": "FixedKnob", "value": "none"},
    }))
    .unwrap();
    let pinned = native_model(
        &stack,
        "PinnedLogisticRegression",
        "duma.tabular.LogisticRegression",
        Some(knob_config),
    )
    .await;
    start_job(
        &stack,
        "fixed",
        CLASSIFICATION,
        &[pinned],
        json!({"MODEL_TRIAL_COUNT": 5}),
        classification_csv,
    )
    .await;
    let job = stack.wait_for_end("fixed", Duration::from_secs(60)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("fixed").await;
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["status"], "COMPLETED");
    assert_eq!(
        trials[0]["proposal"]["knobs"],
        json!({"alpha": 0.01, "class_weight": "none"})
    );
}

#[tokio::test]
async fn an_invalid_template_makes_its_sub_job_and_job_errored_with_the_reason() {
    let stack = spawn_stack(1).await;
    let broken = native_model(&stack, "Broken", "duma.tabular.DoesNotExist", None).await;
    start_job(
        &stack,
        "broken",
        CLASSIFICATION,
        &[broken],
        json!({"MODEL_TRIAL_COUNT": 2}),
        classification_csv,
    )
    .await;
    let job = stack.wait_for_end("broken", Duration::from_secs(60)).await;
    assert_eq!(job["status"], "ERRORED", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("duma.tabular.DoesNotExist"),
        "{job}"
    );
    assert!(stack.trials("broken").await.is_empty());
}

/// Rafiki's rule: one failed model fails the job, with the model named; the trials of the model
/// that worked stay listed.
#[tokio::test]
async fn one_invalid_model_among_valid_ones_ends_the_job_errored_naming_it() {
    let stack = spawn_stack(2).await;
    let broken = native_model(&stack, "Broken", "duma.tabular.DoesNotExist", None).await;
    let mut models = stack
        .builtin_models(CLASSIFICATION, &["LogisticRegression"])
        .await;
    models.push(broken);
    start_job(
        &stack,
        "mixed",
        CLASSIFICATION,
        &models,
        json!({"MODEL_TRIAL_COUNT": 2}),
        classification_csv,
    )
    .await;
    let job = stack.wait_for_end("mixed", Duration::from_secs(60)).await;
    assert_eq!(job["status"], "ERRORED", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("model Broken: "), "{job}");
    assert!(!error.contains("LogisticRegression"), "{job}");
    let trials = stack.trials("mixed").await;
    assert_eq!(
        statuses(&trials),
        vec!["COMPLETED", "COMPLETED"],
        "the valid model's trials stay listed"
    );
}

#[tokio::test]
async fn trials_failing_in_a_row_end_the_job_as_errored_with_their_error_in_the_logs() {
    let stack = spawn_stack(1).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["LogisticRegression"])
        .await;
    let train = stack
        .upload_dataset(CLASSIFICATION, classification_csv(100, 1))
        .await;
    stack
        .post(
            "/train_jobs",
            json!({"app": "failing", "task": CLASSIFICATION, "train_dataset_id": train, "val_dataset_id": train,
                   "budget": {"MODEL_TRIAL_COUNT": 10}, "model_ids": models, "train_args": {"target": "no_such_column"}}),
        )
        .await;
    let job = stack.wait_for_end("failing", Duration::from_secs(60)).await;
    assert_eq!(job["status"], "ERRORED", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("in a row failed"),
        "{job}"
    );
    let trials = stack.trials("failing").await;
    assert!(
        trials.len() >= 3 && trials.len() < 10,
        "stopped early: {} trials",
        trials.len()
    );
    assert!(statuses(&trials).iter().all(|s| *s == "ERRORED"));
    let logs = stack
        .get(&format!(
            "/trials/{}/logs",
            trials[0]["id"].as_str().unwrap()
        ))
        .await;
    let messages = logs["messages"].to_string();
    assert!(messages.contains("no_such_column"), "{messages}");
}
