//! Role × route and role × ownership: allowed where Rafiki's contract allows, 401/403 elsewhere.

use serde_json::{Value, json};

use duma_e2e::admin::spawn_app;
use duma_e2e::client::{TestUser, expect_error, json_ok};

const SA: &str = "SUPERADMIN";
const AD: &str = "ADMIN";
const MD: &str = "MODEL_DEVELOPER";
const APP: &str = "APP_DEVELOPER";

#[tokio::test]
async fn every_route_checks_the_callers_user_type() {
    let app = spawn_app().await;
    let mut users: Vec<(&str, String)> = vec![(SA, app.superadmin.clone())];
    for user_type in [AD, MD, APP] {
        users.push((user_type, app.user(user_type).await.token));
    }
    let model = app.model(&app.superadmin, "sa-model", "T", "PUBLIC").await;
    let some_id = uuid::Uuid::new_v4();
    let developers: &[&str] = &[SA, AD, MD, APP];
    let routes: Vec<(&str, String, &[&str])> = vec![
        ("POST", "/users".into(), &[SA, AD]),
        ("GET", "/users".into(), &[SA, AD]),
        ("DELETE", "/users".into(), &[SA, AD]),
        ("POST", "/datasets".into(), developers),
        ("GET", "/datasets".into(), developers),
        ("POST", "/models".into(), &[SA, AD, MD]),
        ("GET", "/models/available".into(), developers),
        ("GET", format!("/models/{model}"), &[SA, AD]),
        ("DELETE", format!("/models/{some_id}"), &[SA, AD, MD]),
        ("GET", format!("/models/{model}/model_file"), &[SA, AD]),
        ("POST", "/train_jobs".into(), developers),
        ("GET", "/train_jobs?user_id=x".into(), developers),
        ("GET", "/train_jobs/app".into(), developers),
        ("GET", "/train_jobs/app/1".into(), developers),
        ("POST", "/train_jobs/app/1/stop".into(), developers),
        ("GET", "/train_jobs/app/1/trials".into(), developers),
        ("GET", format!("/trials/{some_id}"), developers),
        ("GET", format!("/trials/{some_id}/logs"), developers),
        ("GET", format!("/trials/{some_id}/parameters"), developers),
        ("POST", "/inference_jobs".into(), developers),
        ("GET", "/inference_jobs?user_id=x".into(), developers),
        ("GET", "/inference_jobs/app".into(), developers),
        ("GET", "/inference_jobs/app/1".into(), developers),
        ("POST", "/inference_jobs/app/1/stop".into(), developers),
        ("POST", "/apps/app/prediction_keys".into(), developers),
        ("GET", "/apps/app/prediction_keys".into(), developers),
        (
            "DELETE",
            format!("/apps/app/prediction_keys/{some_id}"),
            developers,
        ),
        ("POST", "/actions/stop_all_jobs".into(), &[SA]),
    ];
    for (method, path, allowed) in &routes {
        let send = |token: Option<String>| {
            let mut request = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        expect_error(send(None).await.unwrap(), 401, "UnauthorizedError").await;
        expect_error(
            send(Some("not-a-token".into())).await.unwrap(),
            401,
            "UnauthorizedError",
        )
        .await;
        for (user_type, token) in &users {
            let response = send(Some(token.clone())).await.unwrap();
            let status = response.status().as_u16();
            if allowed.contains(user_type) {
                // Allowed: whatever else is wrong with this empty request, it is not the role.
                // (Non-admins get 403 for the superadmin's own model: ownership, checked below.)
                let ownership_403 = path.starts_with("/models/") && status == 403;
                assert!(
                    !matches!(status, 401) && (status != 403 || ownership_403),
                    "{user_type} {method} {path} → {status}"
                );
            } else {
                assert_eq!(status, 403, "{user_type} must not {method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn resources_are_checked_against_their_owner() {
    let app = spawn_app().await;
    let alice: TestUser = app.user(MD).await;
    let bob = app.user(MD).await;
    let carol = app.user(APP).await;
    let admin = app.user(AD).await;
    let model = app
        .model(&alice.token, "alice-private", "T", "PRIVATE")
        .await;
    for path in [
        format!("/models/{model}"),
        format!("/models/{model}/model_file"),
    ] {
        expect_error(
            app.get(Some(&bob.token), &path).await,
            403,
            "UnauthorizedError",
        )
        .await;
        assert_eq!(
            app.get(Some(&admin.token), &path).await.status(),
            200,
            "{path}"
        );
        assert_eq!(
            app.get(Some(&alice.token), &path).await.status(),
            200,
            "{path}"
        );
    }
    expect_error(
        app.get(Some(&carol.token), &format!("/models/{model}"))
            .await,
        403,
        "UnauthorizedError",
    )
    .await;
    expect_error(
        app.delete(Some(&bob.token), &format!("/models/{model}"), None)
            .await,
        403,
        "UnauthorizedError",
    )
    .await;

    let datasets: Value = json_ok(app.get(Some(&bob.token), "/datasets").await).await;
    assert!(
        datasets.as_array().unwrap().is_empty(),
        "only own datasets are listed"
    );
    for path in ["/train_jobs", "/inference_jobs"] {
        let others = format!("{path}?user_id={}", alice.id);
        expect_error(
            app.get(Some(&bob.token), &others).await,
            403,
            "UnauthorizedError",
        )
        .await;
        json_ok(app.get(Some(&admin.token), &others).await).await;
        json_ok(app.get(Some(&alice.token), &others).await).await;
    }
    json_ok(
        app.delete(Some(&admin.token), &format!("/models/{model}"), None)
            .await,
    )
    .await;
}
