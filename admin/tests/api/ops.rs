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
