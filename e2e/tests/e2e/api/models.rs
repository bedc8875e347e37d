use duma_e2e::admin::{TestApp, spawn_app};
use duma_e2e::client::{expect_error, json_ok};

#[tokio::test]
async fn upload_get_download_and_delete_a_model() {
    let app = spawn_app().await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let created = json_ok(
        app.upload_model(&dev.token, "my-model", "TABULAR_CLASSIFICATION", "PRIVATE")
            .await,
    )
    .await;
    assert_eq!(created["name"], "my-model");
    assert_eq!(created["user_id"], dev.id.as_str());
    let id = created["id"].as_str().unwrap();

    let model = json_ok(app.get(Some(&dev.token), &format!("/models/{id}")).await).await;
    for field in [
        "id",
        "user_id",
        "name",
        "task",
        "model_class",
        "datetime_created",
        "docker_image",
        "dependencies",
        "access_right",
    ] {
        assert!(model.get(field).is_some(), "{field} missing in {model}");
    }
    assert_eq!(model["model_class"], "MyModel");
    assert_eq!(model["dependencies"]["numpy"], "1.26.4");
    assert_eq!(model["access_right"], "PRIVATE");

    let file = app
        .get(Some(&dev.token), &format!("/models/{id}/model_file"))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        file.bytes().await.unwrap().as_ref(),
        b"class MyModel: pass\n"
    );

    expect_error(
        app.upload_model(&dev.token, "my-model", "TABULAR_CLASSIFICATION", "PUBLIC")
            .await,
        409,
        "DuplicateModelNameError",
    )
    .await;

    let deleted = json_ok(
        app.delete(Some(&dev.token), &format!("/models/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(deleted["id"], id);
    expect_error(
        app.get(Some(&dev.token), &format!("/models/{id}")).await,
        404,
        "InvalidModelError",
    )
    .await;
}

#[tokio::test]
async fn available_models_are_public_plus_own_and_include_the_builtins() {
    let app = spawn_app().await;
    let alice = app.user("MODEL_DEVELOPER").await;
    let bob = app.user("MODEL_DEVELOPER").await;
    let app_dev = app.user("APP_DEVELOPER").await;
    app.model(
        &alice.token,
        "alice-private",
        "TABULAR_CLASSIFICATION",
        "PRIVATE",
    )
    .await;
    app.model(
        &alice.token,
        "alice-public",
        "TABULAR_CLASSIFICATION",
        "PUBLIC",
    )
    .await;
    app.model(
        &bob.token,
        "bob-private",
        "TABULAR_CLASSIFICATION",
        "PRIVATE",
    )
    .await;

    let names = |value: serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let seen_by_app_dev = names(
        json_ok(
            app.get(
                Some(&app_dev.token),
                "/models/available?task=TABULAR_CLASSIFICATION",
            )
            .await,
        )
        .await,
    );
    assert!(seen_by_app_dev.contains(&"alice-public".to_owned()));
    assert!(!seen_by_app_dev.iter().any(|n| n.ends_with("private")));
    let builtins: Vec<_> = duma_runtime::builtin_templates()
        .iter()
        .filter(|t| t.task == "TABULAR_CLASSIFICATION")
        .map(|t| t.name.to_owned())
        .collect();
    assert!(!builtins.is_empty());
    for builtin in &builtins {
        assert!(
            seen_by_app_dev.contains(builtin),
            "built-in {builtin} missing from {seen_by_app_dev:?}"
        );
    }
    let seen_by_bob = names(json_ok(app.get(Some(&bob.token), "/models/available").await).await);
    assert!(seen_by_bob.contains(&"bob-private".to_owned()));
    assert!(!seen_by_bob.contains(&"alice-private".to_owned()));
    let regression = names(
        json_ok(
            app.get(
                Some(&bob.token),
                "/models/available?task=TABULAR_REGRESSION",
            )
            .await,
        )
        .await,
    );
    assert!(
        !regression
            .iter()
            .any(|n| n.starts_with("alice") || n.starts_with("bob"))
    );
}

#[tokio::test]
async fn model_uploads_validate_their_fields() {
    let app = spawn_app().await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let upload = |deps: &'static str, class: &'static str, access: &'static str| {
        let fields = [
            ("model_class", class),
            ("dependencies", deps),
            ("access_right", access),
        ];
        upload_form(&app, &dev.token, fields.map(|(k, v)| (k, v.to_owned())))
    };
    let message = expect_error(
        upload(r#"{"numpy; rm -rf /": "1"}"#, "M", "PRIVATE")
            .await
            .unwrap(),
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("package name"), "{message}");
    expect_error(
        upload(r#"{"numpy": "1.0 --pre"}"#, "M", "PRIVATE")
            .await
            .unwrap(),
        400,
        "InvalidModelError",
    )
    .await;
    expect_error(
        upload(r#"["numpy"]"#, "M", "PRIVATE").await.unwrap(),
        400,
        "InvalidRequestError",
    )
    .await;
    expect_error(
        upload("{}", "not a class", "PRIVATE").await.unwrap(),
        400,
        "InvalidModelError",
    )
    .await;
    expect_error(
        upload("{}", "M", "SECRET").await.unwrap(),
        400,
        "InvalidModelError",
    )
    .await;
    json_ok(upload("", "M", "").await.unwrap()).await;
    // Rafiki's client sends `json.dumps(None)` when no dependencies are given.
    let created = json_ok(upload("null", "M", "PRIVATE").await.unwrap()).await;
    let id = created["id"].as_str().unwrap();
    let model = json_ok(app.get(Some(&dev.token), &format!("/models/{id}")).await).await;
    assert_eq!(model["dependencies"], serde_json::json!({}), "{model}");
}

/// SINGA-Auto's client sends the model's kind, entry file and description: only a single Python
/// file is served (another kind, or an entry file, is refused rather than stored as if it were
/// one file), and the description is kept and shown.
#[tokio::test]
async fn singa_autos_model_fields_are_used_or_refused() {
    let app = spawn_app().await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let upload = |field: &'static str, value: String| {
        upload_form(
            &app,
            &dev.token,
            [("model_class", "M".to_owned()), (field, value)],
        )
    };
    // SINGA-Auto's `ModelType.PYTHON_FILE` and `ModelType.ZIP_FILE`.
    json_ok(upload("model_type", "py".into()).await.unwrap()).await;
    let refused = upload("model_type", "zip".into()).await.unwrap();
    let message = expect_error(refused, 400, "InvalidModelError").await;
    assert!(message.contains("model_type zip"), "{message}");
    let refused = upload("model_file_name", "main.py".into()).await.unwrap();
    let message = expect_error(refused, 400, "InvalidModelError").await;
    assert!(message.contains("model_file_name"), "{message}");
    let refused = upload("model_description", "x".repeat(4097)).await.unwrap();
    expect_error(refused, 400, "InvalidModelError").await;
    let created = upload("model_description", "logistic regression, é".into());
    let id = json_ok(created.await.unwrap()).await["id"].clone();
    let id = id.as_str().unwrap();
    let model = json_ok(app.get(Some(&dev.token), &format!("/models/{id}")).await).await;
    assert_eq!(model["model_description"], "logistic regression, é");
}

/// `POST /models` as `token`: a fresh name, task `T`, a one-line template file, and `fields`.
fn upload_form<const N: usize>(
    app: &TestApp,
    token: &str,
    fields: [(&'static str, String); N],
) -> impl Future<Output = reqwest::Result<reqwest::Response>> {
    let mut form = reqwest::multipart::Form::new()
        .text("name", format!("m-{}", uuid::Uuid::new_v4().simple()))
        .text("task", "T")
        .part(
            "model_file_bytes",
            reqwest::multipart::Part::bytes(b"class M: pass\n".to_vec()).file_name("m.py"),
        );
    for (name, value) in fields {
        form = form.text(name, value);
    }
    app.http
        .post(app.url("/models"))
        .bearer_auth(token)
        .multipart(form)
        .send()
}
