use std::collections::HashSet;
use std::time::{Duration, Instant};

use duma_common::db::{models, users};
use duma_domain::{AccessRight, KnobConfig, ModelId, TemplateKind};
use serde_json::json;

use duma_e2e::data::{classification_csv, regression_csv};
use duma_e2e::stack::{Stack, spawn_stack, statuses};

const CLASSIFICATION: &str = "TABULAR_CLASSIFICATION";
const REGRESSION: &str = "TABULAR_REGRESSION";

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
            description: None,
            signature: None,
            checkpoint: None,
        },
    )
    .await
    .unwrap();
    model.id.to_string()
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
    stack
        .start_train_job(
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
        .client
        .http
        .get(stack.client.url(&format!("/trials/{id}/parameters")))
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
    stack
        .start_train_job(
            "reg",
            REGRESSION,
            &models,
            // alpha spans 1e-6..1e4 (log scale) and large ones underfit: in one CI run all of
            // three trials drew large ones (best R² 0.43); eight make that vanishingly rare.
            json!({"MODEL_TRIAL_COUNT": 8}),
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
    stack
        .start_train_job(
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
    stack
        .start_a_job_and_wait_for_a_trial("stopme", json!({"TIME_HOURS": 1}), "no trial ever ran")
        .await;
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
async fn an_advisor_restart_keeps_numbers_unique_and_the_budget() {
    let stack = spawn_stack(2).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["LogisticRegression"])
        .await;
    stack
        .start_train_job(
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
    stack
        .start_train_job(
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
    stack
        .start_train_job(
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
    stack
        .start_train_job(
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
