use serde_json::json;

use duma_e2e::admin::{spawn_app, spawn_app_with};
use duma_e2e::client::{expect_error, json_ok};

#[tokio::test]
async fn upload_and_list_own_datasets_by_task() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    let other = app.user("APP_DEVELOPER").await;
    let content = b"x,y\n1,0\n2,1\n".to_vec();
    let created = json_ok(
        app.upload_dataset(
            &dev.token,
            "iris",
            "TABULAR_CLASSIFICATION",
            content.clone(),
        )
        .await,
    )
    .await;
    assert_eq!(created["name"], "iris");
    assert_eq!(created["task"], "TABULAR_CLASSIFICATION");
    assert_eq!(created["size_bytes"], content.len());
    // The upload answers the same view the list shows (and the OpenAPI document promises).
    assert!(created["datetime_created"].is_string(), "{created}");
    app.dataset(&dev.token, "IMAGE_CLASSIFICATION").await;
    app.dataset(&other.token, "TABULAR_CLASSIFICATION").await;

    let all = json_ok(app.get(Some(&dev.token), "/datasets").await).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "own datasets only");
    let tabular = json_ok(
        app.get(Some(&dev.token), "/datasets?task=TABULAR_CLASSIFICATION")
            .await,
    )
    .await;
    let tabular = tabular.as_array().unwrap();
    assert_eq!(tabular.len(), 1);
    assert_eq!(tabular[0]["id"], created["id"]);
    assert!(
        tabular[0]["datetime_created"]
            .as_str()
            .unwrap()
            .ends_with(" GMT")
    );

    let db = app.ctx.pool.get().await.unwrap();
    let id = created["id"].as_str().unwrap().parse().unwrap();
    let stored = duma_common::db::datasets::by_id(&db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.ctx
            .store
            .get_bytes(&stored.store_path)
            .await
            .unwrap()
            .to_vec(),
        content
    );
    assert_eq!(stored.sha256.len(), 64);
}

#[tokio::test]
async fn oversized_uploads_get_413_and_store_nothing() {
    let app = spawn_app_with(|s| s.admin.max_dataset_bytes = 1024).await;
    let dev = app.user("APP_DEVELOPER").await;
    let response = app
        .upload_dataset(&dev.token, "big", "T", vec![b'x'; 10_000])
        .await;
    expect_error(response, 413, "PayloadTooLargeError").await;
    assert!(
        json_ok(app.get(Some(&dev.token), "/datasets").await)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let leftovers = std::fs::read_dir(app.ctx.settings.object_store.root.join("datasets"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "nothing of the refused upload is kept");
}

#[tokio::test]
async fn uploads_without_a_file_or_fields_are_rejected() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    let form = reqwest::multipart::Form::new()
        .text("name", "n")
        .text("task", "T");
    let response = app
        .http
        .post(app.url("/datasets"))
        .bearer_auth(&dev.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "InvalidDatasetError").await;
    let form = reqwest::multipart::Form::new().part(
        "dataset",
        reqwest::multipart::Part::bytes(b"a".to_vec()).file_name("a"),
    );
    let response = app
        .http
        .post(app.url("/datasets"))
        .bearer_auth(&dev.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 400, "InvalidRequestError").await;
    assert!(message.contains("name"), "{message}");
}

#[tokio::test]
async fn dataset_url_refuses_internal_addresses_and_non_http_schemes() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    for url in [
        "http://127.0.0.1:9/x.csv",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/x",
    ] {
        let response = app
            .post(
                Some(&dev.token),
                "/datasets",
                json!({"name": "n", "task": "T", "dataset_url": url}),
            )
            .await;
        let message = expect_error(response, 400, "InvalidDatasetError").await;
        assert!(message.contains("refusing"), "{message}");
    }
    let response = app
        .post(
            Some(&dev.token),
            "/datasets",
            json!({"name": "n", "task": "T", "dataset_url": "file:///etc/passwd"}),
        )
        .await;
    expect_error(response, 400, "InvalidDatasetError").await;
}

#[tokio::test]
async fn dataset_url_downloads_when_private_addresses_are_allowed() {
    let app = spawn_app_with(|s| s.admin.dataset_url_allow_private = true).await;
    let dev = app.user("APP_DEVELOPER").await;
    // The admin's own OpenAPI document is a convenient loopback file to download.
    let url = app.url("/openapi.json");
    let created = json_ok(
        app.post(
            Some(&dev.token),
            "/datasets",
            json!({"name": "doc", "task": "T", "dataset_url": url}),
        )
        .await,
    )
    .await;
    assert!(created["size_bytes"].as_u64().unwrap() > 100);
}

/// Each user stores at most `admin.quota_stored_bytes`: an upload may use what is left (413 past
/// it), and with nothing left the next is refused at once (403); other users are not affected.
#[tokio::test]
async fn uploads_stop_at_the_users_storage_quota() {
    let app =
        duma_e2e::admin::spawn_app_with(|settings| settings.admin.quota_stored_bytes = 2000).await;
    let dev = app.user("APP_DEVELOPER").await;
    let other = app.user("APP_DEVELOPER").await;
    let upload = |token: String, bytes: usize| {
        let csv = format!("a\n{}\n", "1".repeat(bytes - 3)).into_bytes();
        let app = &app;
        async move { app.upload_dataset(&token, "d", "T", csv).await }
    };
    duma_e2e::client::json_ok(upload(dev.token.clone(), 1500).await).await;
    let message = duma_e2e::client::expect_error(
        upload(dev.token.clone(), 1500).await,
        413,
        "PayloadTooLargeError",
    )
    .await;
    assert!(message.contains("500 bytes"), "{message}");
    duma_e2e::client::json_ok(upload(dev.token.clone(), 500).await).await;
    let message = duma_e2e::client::expect_error(
        upload(dev.token.clone(), 10).await,
        403,
        "QuotaExceededError",
    )
    .await;
    assert!(message.contains("your quota is 2000"), "{message}");
    duma_e2e::client::json_ok(upload(other.token.clone(), 1500).await).await;
}
