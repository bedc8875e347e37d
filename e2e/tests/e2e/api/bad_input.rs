//! Malformed input gets a 4xx naming the problem — never a 500 or a hang.

use serde_json::json;

use duma_e2e::admin::spawn_app;
use duma_e2e::client::{expect_error, json_ok};

#[tokio::test]
async fn malformed_bodies_wrong_types_and_missing_fields_are_400() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    let raw = |path: &str, body: &'static str| {
        app.http
            .post(app.url(path))
            .bearer_auth(&dev.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let message = expect_error(
        raw("/tokens", "{\"email\": ").await.unwrap(),
        400,
        "InvalidRequestError",
    )
    .await;
    assert!(message.contains("malformed JSON"), "{message}");
    expect_error(
        raw("/train_jobs", "[1, 2]").await.unwrap(),
        400,
        "InvalidRequestError",
    )
    .await;

    let message = expect_error(
        app.post(None, "/tokens", json!({"email": 5, "password": "x"}))
            .await,
        400,
        "InvalidRequestError",
    )
    .await;
    assert!(message.contains("`email`"), "{message}");
    let message = expect_error(
        app.post(None, "/tokens", json!({"password": "x"})).await,
        400,
        "InvalidRequestError",
    )
    .await;
    assert!(message.contains("missing parameter `email`"), "{message}");
    let message = expect_error(app.post(Some(&dev.token), "/train_jobs", json!({"app": "a", "task": "T", "train_dataset_id": "x", "val_dataset_id": "y", "budget": {"MODEL_TRIAL_COUNT": 1}})).await, 400, "InvalidDatasetError").await;
    assert!(message.contains("train_dataset_id"), "{message}");
    let train = app.dataset(&dev.token, "T").await;
    let message = expect_error(app.post(Some(&dev.token), "/train_jobs", json!({"app": "a", "task": "T", "train_dataset_id": train, "val_dataset_id": train, "budget": "lots"})).await, 400, "InvalidRequestError").await;
    assert!(message.contains("budget"), "{message}");
    expect_error(app.post(Some(&dev.token), "/train_jobs", json!({"app": "a", "task": "T", "train_dataset_id": train, "val_dataset_id": train, "model_ids": "abc"})).await, 400, "InvalidRequestError").await;
    expect_error(
        app.post(
            Some(&dev.token),
            "/train_jobs",
            json!({"app": ["a"], "task": "T"}),
        )
        .await,
        400,
        "InvalidRequestError",
    )
    .await;
}

#[tokio::test]
async fn query_parameters_are_typed_too() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    let model = app.model(&app.superadmin, "m", "T", "PUBLIC").await;
    let train = app.dataset(&dev.token, "T").await;
    json_ok(app.post(Some(&dev.token), "/train_jobs", json!({"app": "q", "task": "T", "train_dataset_id": train, "val_dataset_id": train, "model_ids": [model]})).await).await;
    expect_error(
        app.get(Some(&dev.token), "/train_jobs/q/1/trials?limit=abc")
            .await,
        400,
        "InvalidRequestError",
    )
    .await;
    expect_error(
        app.get(Some(&dev.token), "/train_jobs/q/1/trials?offset=-1")
            .await,
        400,
        "InvalidRequestError",
    )
    .await;
    expect_error(
        app.get(Some(&dev.token), "/train_jobs?user_id=not-a-uuid")
            .await,
        400,
        "InvalidUserError",
    )
    .await;
}

#[tokio::test]
async fn unknown_ids_routes_and_methods_are_4xx() {
    let app = spawn_app().await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let id = uuid::Uuid::new_v4();
    expect_error(
        app.get(Some(&dev.token), &format!("/models/{id}")).await,
        404,
        "InvalidModelError",
    )
    .await;
    expect_error(
        app.get(Some(&dev.token), "/models/12345").await,
        404,
        "InvalidModelError",
    )
    .await;
    expect_error(
        app.delete(Some(&dev.token), &format!("/models/{id}"), None)
            .await,
        404,
        "InvalidModelError",
    )
    .await;
    expect_error(
        app.get(Some(&dev.token), "/no/such/route").await,
        404,
        "NotFoundError",
    )
    .await;
    let response = app
        .http
        .put(app.url("/users"))
        .bearer_auth(&dev.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn oversized_json_bodies_are_413() {
    let app = spawn_app().await;
    let huge = format!(
        "{{\"email\": \"{}\", \"password\": \"x\"}}",
        "a".repeat(3 << 20)
    );
    let response = app
        .http
        .post(app.url("/tokens"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "PayloadTooLargeError").await;
}

#[tokio::test]
async fn form_encoded_bodies_and_query_strings_are_merged_like_rafiki() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/tokens?password=rafiki"))
        .form(&[("email", "superadmin@rafiki"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    json_ok(response).await;
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let app = spawn_app().await;
    let doc = json_ok(app.get(None, "/openapi.json").await).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/tokens", &["post"][..]),
        ("/users", &["post", "get", "delete"]),
        ("/datasets", &["post", "get"]),
        ("/models", &["post"]),
        ("/models/available", &["get"]),
        ("/models/{model_id}", &["get", "delete"]),
        ("/models/{model_id}/model_file", &["get"]),
        ("/train_jobs", &["post", "get"]),
        ("/train_jobs/{app}", &["get"]),
        ("/train_jobs/{app}/{app_version}", &["get"]),
        ("/train_jobs/{app}/{app_version}/stop", &["post"]),
        ("/train_jobs/{app}/{app_version}/trials", &["get"]),
        ("/trials/{trial_id}", &["get"]),
        ("/trials/{trial_id}/logs", &["get"]),
        ("/trials/{trial_id}/parameters", &["get"]),
        ("/inference_jobs", &["post", "get"]),
        ("/inference_jobs/{app}", &["get"]),
        ("/inference_jobs/{app}/{app_version}", &["get"]),
        ("/inference_jobs/{app}/{app_version}/stop", &["post"]),
        ("/actions/stop_all_jobs", &["post"]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
    }
}

/// What API clients and fuzzers rely on: operation ids unique in the document, and every secured
/// operation declaring the 401 it answers without a valid token (with the error body's schema).
#[tokio::test]
async fn openapi_operations_have_unique_ids_and_secured_ones_declare_401() {
    let app = spawn_app().await;
    let doc = json_ok(app.get(None, "/openapi.json").await).await;
    assert!(
        doc["components"]["schemas"]["ErrorBody"].is_object(),
        "the error body schema is in the document"
    );
    let mut ids = std::collections::HashSet::new();
    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} repeats");
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                secured += 1;
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} is secured but does not declare 401"
                );
            }
        }
    }
    assert!(secured >= 20, "only {secured} secured operations");
    assert_eq!(
        doc["paths"]["/train_jobs/{app}/{app_version}/stop"]["post"]["operationId"],
        "post_train_jobs_by_app_by_app_version_stop"
    );
}

/// A method a known route does not answer is 405 naming the ones it does (`Allow`), not 404.
#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        ("TRACE", "/tokens", "POST"),
        ("GET", "/tokens", "POST"),
        ("PUT", "/datasets", "POST, GET"),
        ("POST", "/trials/x/logs", "GET"),
    ] {
        let response = app
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "MethodNotAllowedError", "{body}");
    }
    let unknown = app.get(None, "/no/such/route").await;
    assert_eq!(unknown.status(), 404);
}

/// Every request body is described by a schema (a fuzzer can build valid writes from the
/// document, not only reads).
#[tokio::test]
async fn every_documented_request_body_has_a_schema() {
    let app = spawn_app().await;
    let doc = json_ok(app.get(None, "/openapi.json").await).await;
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(content) = operation["requestBody"]["content"].as_object() else {
                continue;
            };
            for (media_type, body) in content {
                bodies += 1;
                assert!(
                    body.get("schema").is_some(),
                    "{method} {path} ({media_type}) has no schema"
                );
            }
        }
    }
    assert!(bodies >= 7, "{bodies} request bodies documented");
}

/// A NUL character (which PostgreSQL text cannot hold) in a parameter or a path is a 400 naming
/// it, not a failed query and a 500. Found by Schemathesis.
#[tokio::test]
async fn nul_characters_are_refused_with_400() {
    let app = spawn_app().await;
    let token = app.superadmin.clone();
    for path in ["/datasets?task=%00x", "/train_jobs/a%00b"] {
        let message = duma_e2e::client::expect_error(
            app.get(Some(&token), path).await,
            400,
            "InvalidRequestError",
        )
        .await;
        assert!(message.contains("NUL"), "{path}: {message}");
    }
    let message = duma_e2e::client::expect_error(
        app.post(
            Some(&token),
            "/users",
            serde_json::json!({"email": "a\u{0}@b.c", "password": "p", "user_type": "ADMIN"}),
        )
        .await,
        400,
        "InvalidRequestError",
    )
    .await;
    assert!(message.contains("`email`"), "{message}");
}
