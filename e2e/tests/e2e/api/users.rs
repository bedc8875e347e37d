use serde_json::json;

use duma_e2e::admin::spawn_app;
use duma_e2e::client::{PASSWORD, SUPERADMIN, expect_error, json_ok};

#[tokio::test]
async fn login_returns_a_token_with_rafikis_fields() {
    let app = spawn_app().await;
    let body = json_ok(
        app.post(
            None,
            "/tokens",
            json!({"email": SUPERADMIN, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(body["user_type"], "SUPERADMIN");
    assert!(body["user_id"].as_str().is_some());
    assert!(
        body["token"].as_str().unwrap().split('.').count() == 3,
        "a JWT"
    );

    expect_error(
        app.post(
            None,
            "/tokens",
            json!({"email": SUPERADMIN, "password": "wrong"}),
        )
        .await,
        401,
        "InvalidPasswordError",
    )
    .await;
    expect_error(
        app.post(
            None,
            "/tokens",
            json!({"email": "nobody@x.io", "password": "x"}),
        )
        .await,
        401,
        "InvalidUserError",
    )
    .await;
}

#[tokio::test]
async fn admins_create_and_list_users_and_only_superadmins_create_admins() {
    let app = spawn_app().await;
    let created = json_ok(
        app.post(
            Some(&app.superadmin),
            "/users",
            json!({"email": "admin@x.io", "password": "pw-admin", "user_type": "ADMIN"}),
        )
        .await,
    )
    .await;
    assert_eq!(created["email"], "admin@x.io");
    assert_eq!(created["user_type"], "ADMIN");
    let admin = app.login("admin@x.io", "pw-admin").await;

    json_ok(
        app.post(
            Some(&admin),
            "/users",
            json!({"email": "dev@x.io", "password": "pw", "user_type": "MODEL_DEVELOPER"}),
        )
        .await,
    )
    .await;
    expect_error(
        app.post(
            Some(&admin),
            "/users",
            json!({"email": "a2@x.io", "password": "pw", "user_type": "ADMIN"}),
        )
        .await,
        403,
        "UnauthorizedError",
    )
    .await;
    expect_error(
        app.post(
            Some(&admin),
            "/users",
            json!({"email": "DEV@x.io", "password": "pw", "user_type": "APP_DEVELOPER"}),
        )
        .await,
        409,
        "UserExistsError",
    )
    .await;
    expect_error(
        app.post(
            Some(&admin),
            "/users",
            json!({"email": "x@x.io", "password": "pw", "user_type": "GOD"}),
        )
        .await,
        400,
        "InvalidUserError",
    )
    .await;
    expect_error(
        app.post(
            Some(&admin),
            "/users",
            json!({"email": "not-an-email", "password": "pw", "user_type": "APP_DEVELOPER"}),
        )
        .await,
        400,
        "InvalidUserError",
    )
    .await;

    let users = json_ok(app.get(Some(&admin), "/users").await).await;
    let emails: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec![SUPERADMIN, "admin@x.io", "dev@x.io"]);
    for user in users.as_array().unwrap() {
        for field in ["id", "email", "user_type", "banned_date"] {
            assert!(user.get(field).is_some(), "{field} missing in {user}");
        }
    }
}

#[tokio::test]
async fn banning_revokes_tokens_at_once_and_follows_the_rules() {
    let app = spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    json_ok(app.get(Some(&dev.token), "/datasets").await).await;

    let banned = json_ok(
        app.delete(
            Some(&app.superadmin),
            "/users",
            Some(json!({"email": dev.email})),
        )
        .await,
    )
    .await;
    assert!(banned["banned_date"].as_str().unwrap().ends_with(" GMT"));
    expect_error(
        app.get(Some(&dev.token), "/datasets").await,
        401,
        "UnauthorizedError",
    )
    .await;
    expect_error(
        app.post(
            None,
            "/tokens",
            json!({"email": dev.email, "password": PASSWORD}),
        )
        .await,
        401,
        "InvalidUserError",
    )
    .await;
    expect_error(
        app.delete(
            Some(&app.superadmin),
            "/users",
            Some(json!({"email": dev.email})),
        )
        .await,
        409,
        "UserAlreadyBannedError",
    )
    .await;
    expect_error(
        app.delete(
            Some(&app.superadmin),
            "/users",
            Some(json!({"email": "ghost@x.io"})),
        )
        .await,
        404,
        "InvalidUserError",
    )
    .await;
    expect_error(
        app.delete(
            Some(&app.superadmin),
            "/users",
            Some(json!({"email": SUPERADMIN})),
        )
        .await,
        400,
        "InvalidUserError",
    )
    .await;

    let admin = app.user("ADMIN").await;
    let other_admin = app.user("ADMIN").await;
    expect_error(
        app.delete(
            Some(&admin.token),
            "/users",
            Some(json!({"email": other_admin.email})),
        )
        .await,
        403,
        "UnauthorizedError",
    )
    .await;
}

/// Brute force is throttled before any password is hashed: after `login_failures_per_account`
/// failures the account answers 429 with `Retry-After` (even to the right password), other
/// accounts still log in, and once the address has failed `login_failures_per_address` times it is
/// locked out too. Successful logins never count.
#[tokio::test]
async fn failed_logins_lock_the_account_then_the_address_out_with_429() {
    let app = duma_e2e::admin::spawn_app_with(|settings| {
        settings.admin.login_failures_per_account = 3;
        settings.admin.login_failures_per_address = 5;
    })
    .await;
    let login = |email: &str, password: &str| {
        app.post(
            None,
            "/tokens",
            json!({"email": email, "password": password}),
        )
    };
    for _ in 0..10 {
        assert_eq!(login(SUPERADMIN, PASSWORD).await.status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(login(SUPERADMIN, "wrong").await.status(), 401);
    }
    let locked = login(SUPERADMIN, PASSWORD).await;
    assert_eq!(locked.status(), 429);
    let retry_after: u64 = locked.headers()["Retry-After"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = locked.json().await.unwrap();
    assert_eq!(body["error"], "TooManyRequestsError", "{body}");

    // Other accounts still work from this address until it has failed 5 times in all.
    json_ok(
        app.post(
            Some(&app.superadmin),
            "/users",
            json!({"email": "dev@x.io", "password": "pw-dev", "user_type": "APP_DEVELOPER"}),
        )
        .await,
    )
    .await;
    assert_eq!(login("dev@x.io", "pw-dev").await.status(), 200);
    for email in ["nobody1@x.io", "nobody2@x.io"] {
        assert_eq!(login(email, "x").await.status(), 401);
    }
    assert_eq!(login("dev@x.io", "pw-dev").await.status(), 429);
}

/// Banning a user stops their running work at once; other users' jobs go on.
#[tokio::test]
async fn banning_a_user_stops_their_jobs_and_no_one_elses() {
    let app = spawn_app().await;
    let banned = app.user("APP_DEVELOPER").await;
    let other = app.user("APP_DEVELOPER").await;
    json_ok(
        app.train_job(&banned, "theirs", "TABULAR_CLASSIFICATION", &[])
            .await,
    )
    .await;
    json_ok(
        app.train_job(&other, "mine", "TABULAR_CLASSIFICATION", &[])
            .await,
    )
    .await;
    json_ok(
        app.delete(
            Some(&app.superadmin),
            "/users",
            Some(json!({"email": banned.email})),
        )
        .await,
    )
    .await;
    let jobs = json_ok(
        app.get(
            Some(&app.superadmin),
            &format!("/train_jobs?user_id={}", banned.id),
        )
        .await,
    )
    .await;
    assert_eq!(jobs[0]["status"], "STOPPED", "{jobs}");
    let mine = json_ok(app.get(Some(&other.token), "/train_jobs/mine/-1").await).await;
    assert_eq!(mine["status"], "STARTED", "{mine}");
}
