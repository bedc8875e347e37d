use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use duma_common::ops::Liveness;
use duma_common::redis::Redis;
use duma_common::redis::rpc::{
    MemoryBus, Reply, RpcClient, RpcError, RpcServer, ServeLoop, StreamService,
};
use duma_testkit::RedisServer;
use tokio_util::sync::CancellationToken;

/// A client whose writer and reply reader run until `shutdown`.
fn start_client(redis: Redis, instance: &str, shutdown: &CancellationToken) -> RpcClient {
    let (client, tasks) = RpcClient::new(redis, instance);
    tokio::spawn(tasks.run(shutdown.clone()));
    client
}

/// Echo server: uppercases payloads, in batches, until `stop`.
async fn echo_server(mut server: RpcServer, stream: String, stop: CancellationToken) -> Vec<usize> {
    let mut batch_sizes = Vec::new();
    while !stop.is_cancelled() {
        let requests = server
            .read(
                std::slice::from_ref(&stream),
                64,
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        if requests.is_empty() {
            continue;
        }
        batch_sizes.push(requests.len());
        let replies = requests
            .into_iter()
            .map(|r| {
                let reply = if r.payload.as_ref() == b"fail" {
                    Reply::Error("asked to fail".into())
                } else if r.payload.as_ref() == b"trace" {
                    Reply::Ok(Bytes::from(r.trace.clone()))
                } else if r.payload.as_ref() == b"unavailable" {
                    Reply::Unavailable("not serving this".into())
                } else {
                    Reply::Ok(Bytes::from(r.payload.to_ascii_uppercase()))
                };
                (r, reply)
            })
            .collect();
        server.respond(replies).await.unwrap();
    }
    batch_sizes
}

#[tokio::test]
async fn calls_get_their_own_replies_and_errors() {
    let ctx = duma_testkit::context().await;
    let shutdown = CancellationToken::new();
    let client = start_client(ctx.redis.clone(), "client-1", &shutdown);
    let mut server = RpcServer::new(&ctx.redis, "workers", "w1").await.unwrap();
    let stream = server.stream("echo");
    server.ensure_group(&stream).await.unwrap();
    let serving = tokio::spawn(echo_server(server, stream, shutdown.clone()));

    let calls = (0..200).map(|i| {
        let client = client.clone();
        async move {
            client
                .call(
                    "echo",
                    format!("msg-{i}").into_bytes(),
                    &format!("http-{i}"),
                    Duration::from_secs(5),
                )
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap(), Bytes::from(format!("MSG-{i}")));
    }
    // Concurrent calls to one target were coalesced into far fewer stream entries, and every
    // answered entry was deleted.
    let stream = ctx.redis.keys().request_stream("echo");
    let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&stream)
        .query_async(&mut ctx.redis.shared())
        .await
        .unwrap();
    let added: usize = redis::from_redis_value(info["entries-added"].clone()).unwrap();
    assert!(added < 100, "{added} entries for 200 calls");
    let left: usize = redis::AsyncCommands::xlen(&mut ctx.redis.shared(), &stream)
        .await
        .unwrap();
    assert_eq!(left, 0, "answered entries are deleted");
    // The caller's trace id (an HTTP request id) reaches the server, commas made harmless.
    let traced = client
        .call("echo", b"trace".to_vec(), "req-1,x", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(traced.as_ref(), b"req-1_x");
    let err = client
        .call("echo", b"fail".to_vec(), "", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Remote(ref m) if m == "asked to fail"),
        "{err}"
    );
    // A platform fault stays distinct from a refused request all the way to the caller.
    let err = client
        .call("echo", b"unavailable".to_vec(), "", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Unavailable(ref m) if m == "not serving this"),
        "{err}"
    );

    shutdown.cancel();
    let batches = serving.await.unwrap();
    assert!(
        batches.iter().any(|n| *n > 1),
        "concurrent calls are read in batches: {batches:?}"
    );
}

#[tokio::test]
async fn a_call_nobody_serves_times_out_at_its_deadline_and_then_expires() {
    let ctx = duma_testkit::context().await;
    let shutdown = CancellationToken::new();
    let client = start_client(ctx.redis.clone(), "client-2", &shutdown);
    let started = Instant::now();
    let err = client
        .call("nobody", b"hello".to_vec(), "", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A server arriving later must not process the stale request.
    let mut server = RpcServer::new(&ctx.redis, "workers", "late").await.unwrap();
    let stream = server.stream("nobody");
    server.ensure_group(&stream).await.unwrap();
    let requests = server
        .read(&[stream], 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(
        requests.is_empty(),
        "expired requests are answered and acknowledged, not served"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn entries_of_a_dead_consumer_are_reclaimed_by_another() {
    let ctx = duma_testkit::context().await;
    let shutdown = CancellationToken::new();
    let client = start_client(ctx.redis.clone(), "client-3", &shutdown);
    let mut dead = RpcServer::new(&ctx.redis, "workers", "dead").await.unwrap();
    let stream = dead.stream("reclaim");
    dead.ensure_group(&stream).await.unwrap();

    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call("reclaim", b"orphan".to_vec(), "", Duration::from_secs(10))
                .await
        }
    });
    // The first consumer reads the request and dies without replying.
    let mut taken = Vec::new();
    while taken.is_empty() {
        taken = dead
            .read(
                std::slice::from_ref(&stream),
                10,
                Duration::from_millis(200),
            )
            .await
            .unwrap();
    }
    drop(dead);

    let mut survivor = RpcServer::new(&ctx.redis, "workers", "survivor")
        .await
        .unwrap();
    let reclaimed = survivor
        .reclaim(&stream, Duration::from_millis(0), 10)
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].payload.as_ref(), b"orphan");
    let request = reclaimed.into_iter().next().unwrap();
    survivor
        .respond(vec![(request, Reply::Ok(Bytes::from_static(b"rescued")))])
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), Bytes::from_static(b"rescued"));
    shutdown.cancel();
}

/// An echo service driven by the real [`ServeLoop`], as advisors and inference workers are.
struct Echo {
    server: RpcServer,
    stream: String,
    /// Housekeeping rounds so far.
    ticks: Arc<AtomicUsize>,
}

impl StreamService for Echo {
    fn streams(&self) -> Vec<String> {
        vec![self.stream.clone()]
    }
    fn server(&mut self) -> &mut RpcServer {
        &mut self.server
    }
    async fn tick(&mut self) -> anyhow::Result<()> {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn serve(&mut self, requests: Vec<duma_common::redis::rpc::Request>) {
        let replies = requests
            .into_iter()
            .map(|r| {
                let reply = Reply::Ok(Bytes::from(r.payload.to_ascii_uppercase()));
                (r, reply)
            })
            .collect();
        let _ = self.server.respond(replies).await;
    }
}

/// Redis SIGKILLed and restarted empty (streams and consumer groups gone): the serve loop's
/// dedicated connection and the client's reply reader reconnect by themselves, the group is
/// created again, and calls succeed again within seconds — while the loop keeps reporting
/// progress (it retries; it is not stuck).
#[tokio::test]
async fn serving_resumes_by_itself_after_redis_restarts() {
    let mut redis_server = RedisServer::start();
    let redis = Redis::connect(&crate::redis::settings_for(redis_server.url()))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let client = start_client(redis.clone(), "client-1", &shutdown);
    let mut server = RpcServer::new(&redis, "workers", "w1").await.unwrap();
    let stream = server.stream("echo");
    server.ensure_group(&stream).await.unwrap();
    let liveness = Liveness::default();
    let probe = liveness.probe("echo loop", Duration::from_secs(3));
    let stop = shutdown.clone();
    let serving = tokio::spawn(async move {
        let mut echo = Echo {
            server,
            stream,
            ticks: Arc::default(),
        };
        let every = ServeLoop {
            tick: Duration::from_millis(100),
            block: Duration::from_millis(100),
            batch: 64,
        };
        every.run(&mut echo, "echo", &probe, &stop).await;
    });
    let call = |payload: &'static str| {
        let client = client.clone();
        async move {
            client
                .call(
                    "echo",
                    payload.as_bytes().to_vec(),
                    "",
                    Duration::from_millis(500),
                )
                .await
        }
    };
    assert_eq!(call("before").await.unwrap().as_ref(), b"BEFORE");
    // A call nobody answers is waiting when Redis goes: the request went with it (Redis keeps
    // nothing on disk), so the caller hears so at once, not at its deadline.
    let stranded = tokio::spawn({
        let client = client.clone();
        async move {
            let sent = Instant::now();
            let outcome = client
                .call("nobody", b"lost".to_vec(), "", Duration::from_secs(20))
                .await;
            (outcome, sent.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    redis_server.restart();
    let restarted = Instant::now();
    let (outcome, waited) = stranded.await.unwrap();
    assert!(
        matches!(&outcome, Err(RpcError::Unavailable(m)) if m.contains("lost contact with Redis")),
        "{outcome:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    let answer = loop {
        match call("after").await {
            Ok(answer) => break answer,
            Err(error) => assert!(
                restarted.elapsed() < Duration::from_secs(10),
                "no answer 10 s after Redis came back: {error}"
            ),
        }
        assert!(liveness.stalled().is_empty(), "{:?}", liveness.stalled());
    };
    assert_eq!(answer.as_ref(), b"AFTER");
    assert!(liveness.stalled().is_empty(), "{:?}", liveness.stalled());
    shutdown.cancel();
    serving.await.unwrap();
}

/// The same loop on the in-memory transport (no Redis at all): it serves, ticks between reads,
/// and stops at shutdown.
#[tokio::test]
async fn a_serve_loop_on_the_memory_bus_serves_and_ticks_until_shutdown() {
    let bus = MemoryBus::new("t:");
    let (client, _tasks) = RpcClient::in_memory(&bus);
    let server = RpcServer::in_memory(&bus, "echo");
    let stream = server.stream("echo");
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut echo = Echo {
        server,
        stream,
        ticks: ticks.clone(),
    };
    let probe = Liveness::default().probe("echo", Duration::from_secs(60));
    let shutdown = CancellationToken::new();
    let every = ServeLoop {
        tick: Duration::from_millis(10),
        block: Duration::from_millis(20),
        batch: 16,
    };
    let calls = async {
        for i in 0..20 {
            let body = format!("query {i}");
            let reply = client
                .call(
                    "echo",
                    body.clone().into_bytes(),
                    "",
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(&reply[..], body.to_ascii_uppercase().as_bytes());
        }
        // Housekeeping goes on between reads, with no requests at all.
        let served = ticks.load(Ordering::Relaxed);
        while ticks.load(Ordering::Relaxed) < served + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
    };
    let running = every.run(&mut echo, "echo", &probe, &shutdown);
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(running, calls)
    })
    .await
    .expect("the loop ticks while idle, and stops at shutdown");
}
