use duma_common::ops::{OpsServer, Readiness};
use duma_common::redis::Redis;
use duma_testkit::RedisServer;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn health_reports_ready_only_while_postgres_and_redis_answer() {
    let ctx = duma_testkit::context().await;
    let mut server = RedisServer::start();
    let mut redis_settings = ctx.settings.redis.clone();
    redis_settings.url = secrecy::SecretString::from(server.url());
    let redis = Redis::connect(&redis_settings).await.unwrap();

    let registry = Registry::new();
    let counter = prometheus::IntCounter::new("duma_test_total", "a test counter").unwrap();
    registry.register(Box::new(counter.clone())).unwrap();
    counter.inc();
    let readiness = Readiness {
        postgres: Some(ctx.pool.clone()),
        redis: Some(redis),
        liveness: Default::default(),
        pending: Default::default(),
    };
    let ops = OpsServer::bind("127.0.0.1", 0, registry, readiness).unwrap();
    let port = ops.port();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ops.run(shutdown.clone()));

    duma_common::ops::healthcheck(port)
        .await
        .expect("ready while both answer");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("duma_test_total 1"));

    server.kill();
    let err = duma_common::ops::healthcheck(port)
        .await
        .expect_err("not ready without Redis");
    assert!(err.to_string().contains("redis"), "{err}");

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// Work taken on but not doable yet (a model loading) makes the service not ready, but not dead:
/// orchestrators must not restart it for that. A stalled loop fails both.
#[tokio::test]
async fn pending_work_fails_readiness_only_and_a_stalled_loop_fails_liveness_too() {
    let readiness = Readiness::default();
    let ops = OpsServer::bind("127.0.0.1", 0, Registry::new(), readiness.clone()).unwrap();
    let port = ops.port();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(ops.run(shutdown.clone()));
    let status = |path: &'static str| async move {
        let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status("/health").await.0, 200);

    let loading = readiness.pending.begin("trial t1: loading its model");
    let (code, body) = status("/health").await;
    assert_eq!(code, 503);
    assert!(body.contains("trial t1: loading its model"), "{body}");
    assert_eq!(status("/live").await.0, 200, "loading is not dead");
    drop(loading);
    assert_eq!(status("/health").await.0, 200);

    let _probe = readiness
        .liveness
        .probe("serving loop", std::time::Duration::from_millis(1));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (code, body) = status("/live").await;
    assert_eq!(code, 503);
    assert!(body.contains("serving loop"), "{body}");
    assert_eq!(status("/health").await.0, 503);

    shutdown.cancel();
    running.await.unwrap().unwrap();
}
