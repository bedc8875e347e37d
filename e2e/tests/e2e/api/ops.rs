use duma_admin::Application;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn index_health_and_metrics_answer() {
    let ctx = duma_testkit::context().await;
    let app = Application::build(ctx.settings.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let index = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("admin is up"));

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);

    let missing = reqwest::get(format!("{base}/no/such/route")).await.unwrap();
    assert_eq!(missing.status(), 404);

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="unmatched",status="404""#),
        "{metrics}"
    );

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn refuses_to_start_with_a_well_known_secret_outside_dev_mode() {
    let ctx = duma_testkit::context().await;
    let mut settings = ctx.settings.clone();
    settings.dev_mode = false;
    settings.admin.jwt_secret = secrecy::SecretString::from("secret");
    let err = Application::build(settings)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("DUMA_ADMIN__JWT_SECRET"), "{err}");
}

/// The reconciler's sweep deletes the request streams of work that ended (or never existed) and
/// keeps those of live work, and what it cannot parse.
#[tokio::test]
async fn the_sweep_deletes_request_streams_no_live_job_owns() {
    use duma_domain::protocol::{advisor_target, serving_target};
    use duma_domain::{InferenceJobId, SubTrainJobId, TrialId};
    use redis::AsyncCommands;

    let app = duma_e2e::admin::spawn_app().await;
    let dev = app.user("APP_DEVELOPER").await;
    duma_e2e::client::json_ok(
        app.train_job(&dev, "live", "TABULAR_CLASSIFICATION", &[])
            .await,
    )
    .await;
    let db = app.ctx.pool.get().await.unwrap();
    let live: SubTrainJobId = db
        .query_one("SELECT id FROM sub_train_jobs LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    drop(db);
    let keys = app.ctx.redis.keys();
    let kept = keys.request_stream(&advisor_target(live));
    let foreign = keys.request_stream("something:else");
    let doomed = [
        keys.request_stream(&advisor_target(SubTrainJobId::new())),
        keys.request_stream(&serving_target(InferenceJobId::new(), TrialId::new())),
    ];
    let mut conn = app.ctx.redis.shared();
    for key in doomed.iter().chain([&kept, &foreign]) {
        let _: String = conn.xadd(key, "*", &[("body", "x")]).await.unwrap();
    }
    let reconciler = duma_admin::reconciler::Reconciler::new(
        app.ctx.pool.clone(),
        app.ctx.redis.clone(),
        &prometheus::Registry::new(),
        std::time::Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(reconciler.sweep_streams().await.unwrap(), 2);
    for key in &doomed {
        assert!(!conn.exists::<_, bool>(key).await.unwrap(), "{key} stays");
    }
    for key in [&kept, &foreign] {
        assert!(conn.exists::<_, bool>(key).await.unwrap(), "{key} went");
    }
}

/// Every answer carries the request's id: the caller's (nginx's) when it is a plausible id, a
/// fresh one otherwise — errors included.
#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = duma_e2e::admin::spawn_app().await;
    let id_of = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let given = app
        .http
        .get(app.url("/models/available"))
        .header("X-Request-Id", "nginx-3f2a.1")
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 401);
    assert_eq!(id_of(&given), "nginx-3f2a.1");

    let hostile = app
        .http
        .get(app.url("/no/such/route"))
        .header("X-Request-Id", "a,b;c")
        .send()
        .await
        .unwrap();
    assert_eq!(hostile.status(), 404);
    let fresh = id_of(&hostile);
    assert_eq!(fresh.len(), 32, "{fresh}");
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    let other = id_of(&reqwest::get(app.url("/")).await.unwrap());
    assert_ne!(fresh, other, "each request gets its own id");
}

/// A stored file the database still refers to but the store lost is a 404 naming it, not a 500.
#[tokio::test]
async fn a_lost_stored_file_is_not_found() {
    let objects = tempfile::tempdir().unwrap();
    let root = objects.path().to_owned();
    let app = duma_e2e::admin::spawn_app_with(|settings| settings.object_store.root = root).await;
    let dev = app.user("MODEL_DEVELOPER").await;
    let id = app
        .model(&dev.token, "lost", "TABULAR_CLASSIFICATION", "PRIVATE")
        .await;
    std::fs::remove_dir_all(objects.path()).unwrap();
    let message = duma_e2e::client::expect_error(
        app.get(Some(&dev.token), &format!("/models/{id}/model_file"))
            .await,
        404,
        "NotFoundError",
    )
    .await;
    assert!(message.contains("missing"), "{message}");
}
