use std::time::{Duration, Instant};

use duma_common::config::RedisSettings;
use duma_common::redis::Redis;
use duma_common::redis::events::{self, Event};
use duma_domain::TrainJobId;
use duma_testkit::RedisServer;
use futures::StreamExt;
use redis::AsyncCommands;
use secrecy::SecretString;

pub fn settings_for(url: String) -> RedisSettings {
    RedisSettings {
        url: SecretString::from(url),
        key_prefix: format!("t:{}:", uuid::Uuid::new_v4().simple()),
        ..RedisSettings::default()
    }
}

#[tokio::test]
async fn shared_connection_survives_a_redis_restart() {
    let mut server = RedisServer::start();
    let redis = Redis::connect(&settings_for(server.url())).await.unwrap();
    let key = redis.keys().key("k");
    let mut conn = redis.shared();
    let _: () = conn.set(&key, "before").await.unwrap();

    server.kill();
    let mut failed_while_down = false;
    let down: Result<String, _> = conn.get(&key).await;
    if down.is_err() {
        failed_while_down = true;
    }
    assert!(
        failed_while_down,
        "a command while Redis is down must fail, not hang"
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result: redis::RedisResult<()> = conn.set(&key, "after").await;
        match result {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("still failing 10 s after the restart: {error}"),
        }
    }
    let value: String = conn.get(&key).await.unwrap();
    assert_eq!(value, "after");
}

#[tokio::test]
async fn blocking_read_waits_past_the_default_response_timeout() {
    let ctx = duma_testkit::context().await;
    let mut blocking = ctx.redis.blocking_connection().await.unwrap();
    let list = ctx.redis.keys().reply_list("nobody");
    let started = Instant::now();
    let popped: Option<(String, String)> =
        blocking.blpop(&list, 1.5).await.expect("no timeout error");
    assert!(popped.is_none());
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn blocking_read_returns_as_soon_as_a_value_arrives() {
    let ctx = duma_testkit::context().await;
    let mut blocking = ctx.redis.blocking_connection().await.unwrap();
    let list = ctx.redis.keys().reply_list("p1");
    let waiter = tokio::spawn({
        let list = list.clone();
        async move {
            let popped: Option<(String, String)> = blocking.blpop(&list, 5.0).await.unwrap();
            popped
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _: () = ctx.redis.shared().lpush(&list, "reply").await.unwrap();
    let popped = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(popped, Some((list, "reply".to_owned())));
}

#[tokio::test]
async fn events_reach_subscribers_of_the_same_prefix_only() {
    let ctx = duma_testkit::context().await;
    let mut other_settings = ctx.settings.redis.clone();
    other_settings.key_prefix = "someone-else:".into();
    let other = Redis::connect(&other_settings).await.unwrap();

    let mut mine = events::subscribe(&ctx.redis).await.unwrap();
    let mut theirs = events::subscribe(&other).await.unwrap();
    let event = Event::TrainJobStopped {
        train_job_id: TrainJobId::new(),
    };
    let receivers = events::publish(&ctx.redis, &event).await.unwrap();
    assert_eq!(receivers, 1);

    let received = tokio::time::timeout(Duration::from_secs(2), mine.next())
        .await
        .unwrap();
    assert_eq!(received, Some(event));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), theirs.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_event_feed_resubscribes_after_a_restart_and_says_so() {
    let mut server = RedisServer::start();
    let redis = Redis::connect(&settings_for(server.url())).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (feed, subscription) = duma_common::worker::event_feed(redis.clone(), stop.clone());
    let running = tokio::spawn(subscription.run());
    let mut received = feed.subscribe();
    let event = Event::TrainJobCreated {
        train_job_id: TrainJobId::new(),
    };
    // Published until the feed's subscription is up; the feed adds no Resync to a first one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while events::publish(&redis, &event).await.unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the feed never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
    assert_eq!(first.unwrap().unwrap(), event);

    server.restart();
    let after = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
    assert_eq!(after.unwrap().unwrap(), Event::Resync);
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// As under `duma up`: Redis is SIGKILLed and its supervisor restarts it a little later, while
/// every task of the service keeps issuing commands (and reconnect attempts) the whole time. The
/// shared connection must come back by itself within seconds of Redis.
#[tokio::test]
async fn shared_connection_comes_back_after_a_restart_under_steady_use() {
    let mut server = RedisServer::start();
    let redis = Redis::connect(&settings_for(server.url())).await.unwrap();
    let key = redis.keys().key("k");
    for round in 0..3 {
        server.kill();
        let down_until = Instant::now() + Duration::from_millis(300 + 400 * round);
        while Instant::now() < down_until {
            let _: redis::RedisResult<Option<String>> = redis.shared().get(&key).await;
            let _ = redis.ping().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.restart();
        let back = Instant::now();
        loop {
            match redis.ping().await {
                Ok(()) => break,
                Err(error) => assert!(
                    back.elapsed() < Duration::from_secs(5),
                    "round {round}: still failing 5 s after the restart: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Redis with an append-only file takes a while to reload after a restart and answers `LOADING`
/// meanwhile; the shared connection must not stay broken because it met Redis in that state.
#[tokio::test]
async fn shared_connection_comes_back_after_a_restart_that_reloads_data() {
    let mut server = RedisServer::start_persistent();
    let redis = Redis::connect(&settings_for(server.url())).await.unwrap();
    let mut conn = redis.shared();
    let filler = "x".repeat(100);
    for chunk in 0..40 {
        let mut pipe = redis::pipe();
        for i in 0..5_000 {
            pipe.set(redis.keys().key(&format!("fill:{chunk}:{i}")), &filler)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    for round in 0..4 {
        server.kill();
        if round % 2 == 0 {
            let _ = redis.ping().await;
        }
        server.restart();
        if round >= 2 {
            // Idle across the restart: the first command after it meets the dead connection.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let back = Instant::now();
        let mut errors = Vec::new();
        loop {
            match redis.ping().await {
                Ok(()) => break,
                Err(error) => {
                    errors.push(error.to_string());
                    assert!(
                        back.elapsed() < Duration::from_secs(10),
                        "round {round}: still failing 10 s after the restart: {errors:?}"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!("round {round}: back after {:?}", back.elapsed());
    }
}

/// Each service's Redis user reaches only its own keys and commands: the predictor appends to
/// serving streams but not to an advisor's, reads no other key, and cannot reconfigure Redis;
/// the admin reads no request.
#[tokio::test]
async fn a_service_redis_user_is_refused_other_keys_and_commands() {
    use duma_common::accounts::Account;
    let ctx = duma_testkit::context().await;
    let as_predictor = duma_testkit::as_account(&ctx.settings, Account::Predictor);
    let redis = Redis::connect(&as_predictor.redis).await.unwrap();
    let keys = redis.keys().clone();
    let mut conn = redis.shared();
    let _: String = conn
        .xadd(keys.request_stream("serve:a:b"), "*", &[("f", "v")])
        .await
        .expect("a serving stream is the predictor's to append to");
    let refused = |result: redis::RedisResult<()>| {
        let error = result.expect_err("refused");
        assert_eq!(error.code(), Some("NOPERM"), "{error:?}");
    };
    refused(
        conn.xadd(keys.request_stream("advisor:a"), "*", &[("f", "v")])
            .await,
    );
    refused(conn.get(keys.key("anything")).await);
    refused(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg("no")
            .query_async(&mut conn)
            .await,
    );
    let admin = Redis::connect(&duma_testkit::as_account(&ctx.settings, Account::Admin).redis)
        .await
        .unwrap();
    // The admin re-adds a dead replica's requests (a script), but reads none and owns no other key.
    refused(admin.shared().get(keys.key("anything")).await);
    refused(
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("inference")
            .arg("admin")
            .arg("STREAMS")
            .arg(keys.request_stream("serve:a:b"))
            .arg(">")
            .query_async(&mut admin.shared())
            .await,
    );
}
