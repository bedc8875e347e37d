use serde_json::json;

use crate::api::trials::train_job_with_trials;
use duma_e2e::admin::spawn_app;
use duma_e2e::client::{expect_error, json_ok};

#[tokio::test]
async fn inference_jobs_serve_stopped_train_jobs() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let (train_job_id, _) = train_job_with_trials(&app, &alice, "shop").await;

    let message = expect_error(
        app.post(
            Some(&alice.token),
            "/inference_jobs",
            json!({"app": "shop"}),
        )
        .await,
        400,
        "InvalidTrainJobError",
    )
    .await;
    assert!(message.contains("STOPPED"), "{message}");
    json_ok(
        app.post(Some(&alice.token), "/train_jobs/shop/1/stop", json!({}))
            .await,
    )
    .await;

    // An inference budget is Rafiki's GPU_COUNT only, within what one worker can hold.
    for (budget, needle) in [
        (json!({"GPU_COUNT": 17}), "GPU_COUNT must be from 0 to 16"),
        (json!({"GPU_COUNT": -1}), "GPU_COUNT must be from 0 to 16"),
        (json!({"MODEL_TRIAL_COUNT": 3}), "GPU_COUNT only"),
    ] {
        let message = expect_error(
            app.post(
                Some(&alice.token),
                "/inference_jobs",
                json!({"app": "shop", "app_version": 1, "budget": budget}),
            )
            .await,
            400,
            "InvalidRequestError",
        )
        .await;
        assert!(message.contains(needle), "{message}");
    }
    let created = json_ok(
        app.post(
            Some(&alice.token),
            "/inference_jobs",
            json!({"app": "shop", "app_version": 1, "budget": {"GPU_COUNT": 0}}),
        )
        .await,
    )
    .await;
    assert_eq!(created["train_job_id"], train_job_id.as_str());
    assert_eq!(created["app"], "shop");
    assert_eq!(created["app_version"], 1);
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["predictor_host"],
        format!("localhost:8080/inference_jobs/{id}")
    );

    expect_error(
        app.post(
            Some(&alice.token),
            "/inference_jobs",
            json!({"app": "shop"}),
        )
        .await,
        409,
        "RunningInferenceJobExistsError",
    )
    .await;

    let running = json_ok(app.get(Some(&alice.token), "/inference_jobs/shop/1").await).await;
    assert_eq!(running["id"], id);
    assert_eq!(running["status"], "STARTED");
    assert_eq!(running["predictor_host"], created["predictor_host"]);

    let listed = json_ok(
        app.get(
            Some(&alice.token),
            &format!("/inference_jobs?user_id={}", alice.id),
        )
        .await,
    )
    .await;
    for field in [
        "id",
        "status",
        "train_job_id",
        "app",
        "app_version",
        "datetime_started",
        "datetime_stopped",
    ] {
        assert!(
            listed[0].get(field).is_some(),
            "{field} missing in {}",
            listed[0]
        );
    }
    let stopped = json_ok(
        app.post(Some(&alice.token), "/inference_jobs/shop/1/stop", json!({}))
            .await,
    )
    .await;
    assert_eq!(stopped["id"], id);
    let by_app = json_ok(app.get(Some(&alice.token), "/inference_jobs/shop").await).await;
    assert_eq!(by_app[0]["status"], "STOPPED");
    expect_error(
        app.get(Some(&alice.token), "/inference_jobs/shop/1").await,
        404,
        "InvalidRunningInferenceJobError",
    )
    .await;
    expect_error(
        app.post(Some(&alice.token), "/inference_jobs/shop/1/stop", json!({}))
            .await,
        404,
        "InvalidRunningInferenceJobError",
    )
    .await;
    expect_error(
        app.get(Some(&alice.token), "/inference_jobs/nope/1").await,
        404,
        "InvalidRunningInferenceJobError",
    )
    .await;
}

#[tokio::test]
async fn a_train_job_without_completed_trials_cannot_be_served() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    json_ok(
        app.train_job(&alice, "empty", "TABULAR_CLASSIFICATION", &[])
            .await,
    )
    .await;
    json_ok(
        app.post(Some(&alice.token), "/train_jobs/empty/1/stop", json!({}))
            .await,
    )
    .await;
    let message = expect_error(
        app.post(
            Some(&alice.token),
            "/inference_jobs",
            json!({"app": "empty"}),
        )
        .await,
        400,
        "InvalidTrainJobError",
    )
    .await;
    assert!(message.contains("no completed trial"), "{message}");
}

#[tokio::test]
async fn stop_all_jobs_is_for_superadmins_and_stops_everything() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let bob = app.user("APP_DEVELOPER").await;
    let admin = app.user("ADMIN").await;
    train_job_with_trials(&app, &alice, "a").await;
    json_ok(
        app.post(Some(&alice.token), "/train_jobs/a/1/stop", json!({}))
            .await,
    )
    .await;
    json_ok(
        app.post(Some(&alice.token), "/inference_jobs", json!({"app": "a"}))
            .await,
    )
    .await;
    json_ok(
        app.train_job(&bob, "b", "TABULAR_CLASSIFICATION", &[])
            .await,
    )
    .await;

    expect_error(
        app.post(Some(&admin.token), "/actions/stop_all_jobs", json!({}))
            .await,
        403,
        "UnauthorizedError",
    )
    .await;
    let stopped = json_ok(
        app.post(Some(&app.superadmin), "/actions/stop_all_jobs", json!({}))
            .await,
    )
    .await;
    assert_eq!(stopped["train_jobs"].as_array().unwrap().len(), 1);
    assert_eq!(stopped["inference_jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        json_ok(app.get(Some(&bob.token), "/train_jobs/b/1").await).await["status"],
        "STOPPED"
    );
    let again = json_ok(
        app.post(Some(&app.superadmin), "/actions/stop_all_jobs", json!({}))
            .await,
    )
    .await;
    assert_eq!(again, json!({"train_jobs": [], "inference_jobs": []}));
}

/// Prediction keys belong to an app's owner: others cannot list, create or revoke them, and an
/// app must exist to have keys.
#[tokio::test]
async fn prediction_keys_are_managed_by_the_apps_owner_only() {
    let app = duma_e2e::admin::spawn_app().await;
    let owner = app.user("APP_DEVELOPER").await;
    let other = app.user("APP_DEVELOPER").await;
    duma_e2e::client::json_ok(
        app.train_job(&owner, "mine", "TABULAR_CLASSIFICATION", &[])
            .await,
    )
    .await;

    let created = duma_e2e::client::json_ok(
        app.post(Some(&owner.token), "/apps/mine/prediction_keys", json!({}))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("GET", "/apps/mine/prediction_keys".to_owned()),
        ("POST", "/apps/mine/prediction_keys".to_owned()),
        ("DELETE", format!("/apps/mine/prediction_keys/{id}")),
    ] {
        let request = match method {
            "GET" => app.http.get(app.url(&path)),
            "POST" => app.http.post(app.url(&path)),
            _ => app.http.delete(app.url(&path)),
        };
        let response = request.bearer_auth(&other.token).send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path} by another user");
    }
    duma_e2e::client::expect_error(
        app.post(
            Some(&owner.token),
            "/apps/nothing-here/prediction_keys",
            json!({}),
        )
        .await,
        404,
        "InvalidTrainJobError",
    )
    .await;
    duma_e2e::client::expect_error(
        app.delete(
            Some(&owner.token),
            "/apps/mine/prediction_keys/not-a-key",
            None,
        )
        .await,
        404,
        "InvalidPredictionKeyError",
    )
    .await;
    let listed = duma_e2e::client::json_ok(
        app.get(Some(&owner.token), "/apps/mine/prediction_keys")
            .await,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}
