use serde_json::json;

use duma_e2e::admin::spawn_app;
use duma_e2e::client::{expect_error, json_ok};

const TASK: &str = "TABULAR_CLASSIFICATION";

#[tokio::test]
async fn create_list_get_and_stop_train_jobs_with_per_user_versions() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let bob = app.user("APP_DEVELOPER").await;

    let v1 = json_ok(app.train_job(&alice, "fashion", TASK, &[]).await).await;
    assert_eq!(v1["app"], "fashion");
    assert_eq!(v1["app_version"], 1);
    let bob_v1 = json_ok(app.train_job(&bob, "fashion", TASK, &[]).await).await;
    assert_eq!(bob_v1["app_version"], 1, "apps are per-user namespaces");

    let message = expect_error(
        app.train_job(&alice, "fashion", TASK, &[]).await,
        409,
        "InvalidTrainJobError",
    )
    .await;
    assert!(message.contains("in progress"), "{message}");

    let job = json_ok(app.get(Some(&alice.token), "/train_jobs/fashion/1").await).await;
    for field in [
        "id",
        "status",
        "app",
        "app_version",
        "task",
        "train_dataset_id",
        "val_dataset_id",
        "train_args",
        "datetime_started",
        "datetime_stopped",
        "budget",
    ] {
        assert!(job.get(field).is_some(), "{field} missing in {job}");
    }
    assert_eq!(job["status"], "STARTED");
    assert_eq!(
        job["budget"],
        json!({"MODEL_TRIAL_COUNT": 2, "TIME_HOURS": 0.1, "GPU_COUNT": 0})
    );

    let stopped = json_ok(
        app.post(Some(&alice.token), "/train_jobs/fashion/1/stop", json!({}))
            .await,
    )
    .await;
    assert_eq!(stopped["id"], v1["id"]);
    let job = json_ok(app.get(Some(&alice.token), "/train_jobs/fashion/-1").await).await;
    assert_eq!(job["status"], "STOPPED", "stopped when the call returns");
    assert!(job["datetime_stopped"].as_str().unwrap().ends_with(" GMT"));
    // Stopping it again is a no-op (Rafiki's client stops without looking first).
    let again = json_ok(
        app.post(Some(&alice.token), "/train_jobs/fashion/1/stop", json!({}))
            .await,
    )
    .await;
    assert_eq!(again["id"], v1["id"]);
    let unchanged = json_ok(app.get(Some(&alice.token), "/train_jobs/fashion/-1").await).await;
    assert_eq!(unchanged["status"], "STOPPED");
    assert_eq!(unchanged["datetime_stopped"], job["datetime_stopped"]);

    let v2 = json_ok(app.train_job(&alice, "fashion", TASK, &[]).await).await;
    assert_eq!(v2["app_version"], 2);
    let versions: Vec<i64> = json_ok(app.get(Some(&alice.token), "/train_jobs/fashion").await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["app_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1], "newest first");
    assert_eq!(
        json_ok(app.get(Some(&alice.token), "/train_jobs/fashion/-1").await).await["app_version"],
        2
    );

    let listed = json_ok(
        app.get(
            Some(&alice.token),
            &format!("/train_jobs?user_id={}", alice.id),
        )
        .await,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    expect_error(
        app.get(
            Some(&alice.token),
            &format!("/train_jobs?user_id={}", bob.id),
        )
        .await,
        403,
        "UnauthorizedError",
    )
    .await;
    expect_error(
        app.get(Some(&alice.token), "/train_jobs").await,
        400,
        "InvalidRequestError",
    )
    .await;
    let as_admin = json_ok(
        app.get(
            Some(&app.superadmin),
            &format!("/train_jobs?user_id={}", bob.id),
        )
        .await,
    )
    .await;
    assert_eq!(as_admin.as_array().unwrap().len(), 1);

    expect_error(
        app.get(Some(&alice.token), "/train_jobs/fashion/7").await,
        404,
        "InvalidTrainJobError",
    )
    .await;
    expect_error(
        app.get(Some(&alice.token), "/train_jobs/fashion/zero")
            .await,
        400,
        "InvalidTrainJobError",
    )
    .await;
    expect_error(
        app.get(Some(&bob.token), "/train_jobs/fashion/2").await,
        404,
        "InvalidTrainJobError",
    )
    .await;
}

#[tokio::test]
async fn creation_validates_datasets_models_and_budget() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let bob = app.user("MODEL_DEVELOPER").await;
    let train = app.dataset(&alice.token, TASK).await;
    let other_task = app.dataset(&alice.token, "POS_TAGGING").await;
    let bobs = app.dataset(&bob.token, TASK).await;
    let private = app.model(&bob.token, "bob-private", TASK, "PRIVATE").await;
    let create = |body: serde_json::Value| app.post(Some(&alice.token), "/train_jobs", body);

    let base =
        json!({"app": "a", "task": TASK, "train_dataset_id": train, "val_dataset_id": train});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    expect_error(
        create(with("val_dataset_id", json!(other_task))).await,
        400,
        "InvalidDatasetError",
    )
    .await;
    expect_error(
        create(with("val_dataset_id", json!(bobs))).await,
        403,
        "InvalidDatasetError",
    )
    .await;
    expect_error(
        create(with("val_dataset_id", json!(uuid::Uuid::new_v4()))).await,
        404,
        "InvalidDatasetError",
    )
    .await;
    expect_error(
        create(with("val_dataset_id", json!("not-an-id"))).await,
        400,
        "InvalidDatasetError",
    )
    .await;
    expect_error(
        create(with("model_ids", json!([private]))).await,
        400,
        "InvalidModelError",
    )
    .await;
    expect_error(
        create(with("model_ids", json!([uuid::Uuid::new_v4()]))).await,
        400,
        "InvalidModelError",
    )
    .await;
    expect_error(
        create(with("budget", json!({"MODEL_TRIAL_COUNT": 0}))).await,
        400,
        "InvalidTrainJobError",
    )
    .await;
    expect_error(
        create(with("budget", json!({"TRIALS": 3}))).await,
        400,
        "InvalidTrainJobError",
    )
    .await;
    // Absurd numbers are refused with the key named, not accepted to panic a worker later.
    for (key, absurd) in [
        ("TIME_HOURS", json!(1e10)),
        ("MODEL_TRIAL_COUNT", json!(1_000_000_000_000_i64)),
        ("GPU_COUNT", json!(1_000_000)),
    ] {
        let message = expect_error(
            create(with("budget", json!({ key: absurd }))).await,
            400,
            "InvalidTrainJobError",
        )
        .await;
        assert!(message.contains(key), "{message}");
    }
    expect_error(
        create(with("app", json!("../etc"))).await,
        400,
        "InvalidTrainJobError",
    )
    .await;

    let pos = app.dataset(&alice.token, "NO_MODELS_TASK").await;
    let message = expect_error(
        create(json!({"app": "b", "task": "NO_MODELS_TASK", "train_dataset_id": pos, "val_dataset_id": pos})).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("no models"), "{message}");
    expect_error(
        create(with("model_ids", json!([]))).await,
        400,
        "NoModelsForTrainJobError",
    )
    .await;
    json_ok(create(base.clone()).await).await;
}

#[tokio::test]
async fn another_users_public_model_trains_on_my_data_only_when_i_name_it() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let mallory = app.user("MODEL_DEVELOPER").await;
    let task = "PUBLIC_ONLY_TASK";
    let public = app.model(&mallory.token, "m-public", task, "PUBLIC").await;
    let message = expect_error(
        app.train_job(&alice, "unnamed", task, &[]).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(
        message.contains("name another user's PUBLIC model"),
        "{message}"
    );
    json_ok(app.train_job(&alice, "named", task, &[&public]).await).await;
    // Its owner uses it without naming it.
    json_ok(app.train_job(&mallory, "own", task, &[]).await).await;
}

#[tokio::test]
async fn concurrent_creations_for_one_app_let_exactly_one_through() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let train = app.dataset(&alice.token, TASK).await;
    let body =
        json!({"app": "race", "task": TASK, "train_dataset_id": train, "val_dataset_id": train});
    let attempts = (0..6).map(|_| app.post(Some(&alice.token), "/train_jobs", body.clone()));
    let responses = futures::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_model_in_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let model = app.model(&dev.token, "used", TASK, "PRIVATE").await;
    json_ok(app.train_job(&dev, "app", TASK, &[&model]).await).await;
    expect_error(
        app.delete(Some(&dev.token), &format!("/models/{model}"), None)
            .await,
        409,
        "ModelUsedError",
    )
    .await;
}

/// App names are free text as in Rafiki: spaces, punctuation and any script work, percent-encoded
/// in paths; only empty names, control characters, `/` and names over 255 characters are refused.
#[tokio::test]
async fn app_names_are_free_text_without_slashes_or_control_characters() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    let name = "Fashion MNIST (v2) – Zürich ✓";
    let created = json_ok(app.train_job(&dev, name, TASK, &[]).await).await;
    assert_eq!(created["app"], name);
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let job = json_ok(
        app.get(Some(&dev.token), &format!("/train_jobs/{encoded}/1"))
            .await,
    )
    .await;
    assert_eq!(job["app"], name);
    expect_error(
        app.train_job(&dev, "", TASK, &[]).await,
        400,
        "InvalidRequestError",
    )
    .await;
    for bad in ["a/b", "tab\there", &"x".repeat(256)] {
        expect_error(
            app.train_job(&dev, bad, TASK, &[]).await,
            400,
            "InvalidTrainJobError",
        )
        .await;
    }
    json_ok(app.train_job(&dev, &"y".repeat(255), TASK, &[]).await).await;
}

/// Each user has at most `admin.quota_live_train_jobs` train jobs in progress.
#[tokio::test]
async fn live_train_jobs_stop_at_the_users_quota() {
    let app =
        duma_e2e::admin::spawn_app_with(|settings| settings.admin.quota_live_train_jobs = 1).await;
    let dev = app.user("APP_DEVELOPER").await;
    json_ok(app.train_job(&dev, "first", TASK, &[]).await).await;
    let message = expect_error(
        app.train_job(&dev, "second", TASK, &[]).await,
        403,
        "QuotaExceededError",
    )
    .await;
    assert!(message.contains("your quota is 1"), "{message}");
    json_ok(
        app.post(Some(&dev.token), "/train_jobs/first/1/stop", json!({}))
            .await,
    )
    .await;
    json_ok(app.train_job(&dev, "second", TASK, &[]).await).await;
}

/// SINGA-Auto's client calls some job routes with placeholders
/// (`/train_jobs/app/app_version/trials?app=…&app_version=…`, a JSON body for `…/stop`): a
/// segment that spells its own name stands for that parameter.
#[tokio::test]
async fn singa_autos_placeholder_segments_take_the_parameters() {
    let app = spawn_app().await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let model = app.model(&dev.token, "m", TASK, "PRIVATE").await;
    json_ok(app.train_job(&dev, "real app", TASK, &[&model]).await).await;
    let direct = json_ok(
        app.get(Some(&dev.token), "/train_jobs/real%20app/1/trials")
            .await,
    )
    .await;
    let placeholder = json_ok(
        app.get(
            Some(&dev.token),
            "/train_jobs/app/app_version/trials?app=real%20app&app_version=1",
        )
        .await,
    )
    .await;
    assert_eq!(direct, placeholder);
    let job = json_ok(
        app.get(Some(&dev.token), "/train_jobs/app?app=real%20app")
            .await,
    )
    .await;
    assert_eq!(job[0]["app"], "real app");
    let stopped = json_ok(
        app.post(
            Some(&dev.token),
            "/train_jobs/app/app_version/stop",
            json!({"app": "real app", "app_version": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(stopped["app"], "real app");
    // Without the parameters a placeholder is just a name: no app is called `app`.
    expect_error(
        app.get(Some(&dev.token), "/train_jobs/app/-1").await,
        404,
        "InvalidTrainJobError",
    )
    .await;
}
