//! One hosted model's own loop: it reads its request stream, predicts, answers — so a slow or
//! hung model holds up only its own callers, never another model on the same worker.
//!
//! The loop runs on a thread of its own (see `Serving::host`) and calls the model there, between
//! its reads: a request wakes one thread of the worker, not a reader and then a blocking thread.

use std::time::{Duration, Instant};

use bytes::Bytes;
use duma_common::redis::rpc::{RECONNECT_BACKOFF, Reply, Request, RpcServer};
use duma_runtime::{Model, TemplateError};
use futures::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::serving::ServingMetrics;

/// How long one read waits for requests.
const READ_BLOCK: Duration = Duration::from_millis(100);
/// Requests per read, at most (all of them go to the model in one predict call).
const READ_BATCH: usize = 256;
/// Entries a dead replica read but never answered are taken over after this (at once when a
/// replica starts: see [`Replica::run`]), if the reconciler has not handed them over first. A live replica busy longer than this with an entry has it
/// served twice (the first answer wins), which costs work, never correctness.
const RECLAIM_IDLE: Duration = Duration::from_secs(2);
/// How often the stream is checked for such entries, and its depth reported.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// The least a predict call gets, however close its callers' deadlines (one was reclaimed late).
const MIN_PREDICT_DEADLINE: Duration = Duration::from_millis(500);
/// A hung model is killed this long after its last caller stopped waiting, not at that moment:
/// so the caller's own deadline always ends the call first (a 504 for the app user), rather than
/// racing the replica's "unavailable" answer to it.
const PAST_THE_LAST_CALLER: Duration = Duration::from_millis(250);

/// A model that must be loaded again, and why (its runner died or hung, or its loop panicked).
pub struct Broken {
    pub stream: String,
    pub reason: String,
}

pub struct Replica {
    pub stream: String,
    pub model: Box<dyn Model>,
    /// Its own connection: a blocking read holds one.
    pub server: RpcServer,
    pub metrics: ServingMetrics,
}

impl Replica {
    /// Serves until `stop`, or until the model breaks: then it says so on `broken` and ends.
    /// A panic inside ends it the same way, so the model is loaded again.
    pub async fn run(self, stop: CancellationToken, broken: mpsc::UnboundedSender<Broken>) {
        let stream = self.stream.clone();
        let reason = match std::panic::AssertUnwindSafe(self.serve(stop))
            .catch_unwind()
            .await
        {
            Ok(None) => return,
            Ok(Some(reason)) => reason,
            Err(_) => "its serving loop failed".to_owned(),
        };
        let _ = broken.send(Broken { stream, reason });
    }

    /// `Some(reason)` when the model broke.
    async fn serve(self, stop: CancellationToken) -> Option<String> {
        let Replica {
            stream,
            model,
            mut server,
            metrics,
        } = self;
        let streams = [stream.clone()];
        // Whatever the stream holds read but unanswered when a replica starts was most likely
        // read by one that is gone (a takeover): it is answered first, not after it idles. (With
        // several replicas it may be one a live replica is answering: the first answer wins, so
        // that costs work, once per start, never correctness.) After that, what a replica that
        // died had read is handed over by the reconciler the moment its death is known
        // (`requeue_orphans`), and reclaiming what idled is the backstop.
        let mut reclaim_idle = Duration::ZERO;
        let mut next_housekeeping = Instant::now();
        let mut backoff = RECONNECT_BACKOFF.0;
        // The last batch's replies, sent with the next read (one round trip for both).
        let mut answered = Vec::new();
        while !stop.is_cancelled() {
            let mut requests = Vec::new();
            if Instant::now() >= next_housekeeping {
                respond(&mut server, std::mem::take(&mut answered), &stream).await;
                match housekeeping(&mut server, &stream, reclaim_idle, &metrics).await {
                    Ok(orphans) => requests = orphans,
                    Err(error) => tracing::warn!(stream, %error, "reclaiming requests failed"),
                }
                reclaim_idle = RECLAIM_IDLE;
                next_housekeeping = Instant::now() + HOUSEKEEPING;
            }
            if requests.is_empty() {
                let replies = std::mem::take(&mut answered);
                match server
                    .respond_and_read(replies, &streams, READ_BATCH, READ_BLOCK)
                    .await
                {
                    Ok(read) => {
                        backoff = RECONNECT_BACKOFF.0;
                        requests = read;
                    }
                    Err(error) => {
                        tracing::warn!(stream, %error, "replying or reading requests failed; retrying in {backoff:?}");
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                        continue;
                    }
                }
            }
            if requests.is_empty() {
                continue;
            }
            let (replies, broken) = predict_batch(model.as_ref(), requests, &stream, &metrics);
            log_replies(&replies);
            if broken.is_some() {
                respond(&mut server, replies, &stream).await;
                return broken;
            }
            answered = replies;
        }
        respond(&mut server, answered, &stream).await;
        None
    }
}

/// Runs `serve` (a replica's loop, with the connection it makes first) to its end on this
/// blocking thread, in a runtime of its own: the loop calls its model right here between reads,
/// so a slow model holds up no other model's loop, and a request wakes this one thread.
pub fn serve_here(serve: impl Future<Output = ()>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve);
    Ok(())
}

/// Sends replies on their own (when no read follows at once).
async fn respond(server: &mut RpcServer, replies: Vec<(Request, Reply)>, stream: &str) {
    if let Err(error) = server.respond(replies).await {
        tracing::warn!(stream, %error, "replying failed");
    }
}

/// Takes over entries left unanswered for `min_idle` and reports the stream's depth.
async fn housekeeping(
    server: &mut RpcServer,
    stream: &str,
    min_idle: Duration,
    metrics: &ServingMetrics,
) -> redis::RedisResult<Vec<Request>> {
    let orphans = server.reclaim(stream, min_idle, READ_BATCH).await?;
    let (length, pending) = server.depth(stream).await?;
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    metrics
        .stream_depth
        .with_label_values(&[stream])
        .set(gauge(length));
    metrics
        .stream_pending
        .with_label_values(&[stream])
        .set(gauge(pending));
    Ok(orphans)
}

/// The replies to a stream's requests — all their queries in one predict call — and why the
/// model must be loaded again if it broke (its process died, or it did not answer before the
/// last caller stopped waiting).
fn predict_batch(
    model: &dyn Model,
    requests: Vec<Request>,
    stream: &str,
    metrics: &ServingMetrics,
) -> (Vec<(Request, Reply)>, Option<String>) {
    let mut replies = Vec::with_capacity(requests.len());
    let mut batch: Vec<Request> = Vec::with_capacity(requests.len());
    for request in requests {
        // Each request's queries are one JSON array, read by the model itself (`predict_json`),
        // once; what cannot be one is answered at once.
        if request.payload.trim_ascii_start().first() == Some(&b'[') {
            batch.push(request);
        } else {
            replies.push((
                request,
                Reply::Error("the queries are not a JSON array".to_owned()),
            ));
        }
    }
    if batch.is_empty() {
        return (replies, None);
    }
    // Nobody waits for an answer after the last caller's deadline: a model still busy then
    // is hung (or far too slow to be of use), and is killed and loaded again.
    let started = Instant::now();
    let deadline = started
        + (batch
            .iter()
            .map(Request::time_left)
            .max()
            .unwrap_or_default()
            + PAST_THE_LAST_CALLER)
            .max(MIN_PREDICT_DEADLINE);
    let payloads: Vec<&[u8]> = batch.iter().map(|r| &r.payload[..]).collect();
    let predicted = run_predict(model, &payloads, stream, deadline);
    metrics
        .predict_seconds
        .observe(started.elapsed().as_secs_f64());
    match predicted {
        Predicted::Broken(reason) => {
            let reply = Reply::Unavailable(format!(
                "{reason}; the model is being restarted, retry shortly"
            ));
            replies.extend(batch.into_iter().map(|r| (r, reply.clone())));
            return (replies, Some(reason));
        }
        Predicted::Answered(answers) => {
            metrics
                .batch_size
                .observe(answers.iter().map(Vec::len).sum::<usize>() as f64);
            let mut answers = answers.into_iter();
            replies.extend(batch.into_iter().map(|r| (r, reply_of(answers.next()))));
        }
        Predicted::Refused(_) if batch.len() > 1 => {
            // One bad query failed the whole batch: answer each request on its own.
            let mut broken = None;
            for request in batch {
                if let Some(reason) = &broken {
                    replies.push((
                        request,
                        Reply::Unavailable(format!("{reason}; retry shortly")),
                    ));
                    continue;
                }
                let reply = match run_predict(model, &[&request.payload], stream, deadline) {
                    Predicted::Answered(answers) => (request, reply_of(answers.into_iter().next())),
                    Predicted::Refused(error) => (request, Reply::Error(error)),
                    Predicted::Broken(reason) => {
                        let reply = Reply::Unavailable(format!("{reason}; retry shortly"));
                        broken = Some(reason);
                        (request, reply)
                    }
                };
                replies.push(reply);
            }
            return (replies, broken);
        }
        Predicted::Refused(error) => {
            replies.extend(batch.into_iter().map(|r| (r, Reply::Error(error.clone()))))
        }
    }
    (replies, None)
}

/// A request's answers as its reply; a request the model left without answers (a broken
/// contract) is told so rather than left waiting.
fn reply_of(answers: Option<Vec<Value>>) -> Reply {
    match answers {
        Some(mine) => Reply::Ok(Bytes::from(serde_json::to_vec(&mine).unwrap_or_default())),
        None => Reply::Error("the model answered fewer requests than it was sent".to_owned()),
    }
}

/// How one predict call ended.
enum Predicted {
    /// Each request's answers, in the order of the requests.
    Answered(Vec<Vec<Value>>),
    /// The model refused the queries (it raised, or a query is malformed): the caller's fault,
    /// told with [`duma_runtime::TemplateError::public_message`].
    Refused(String),
    /// The model's runner died or hung: it has to be loaded again.
    Broken(String),
}

/// One predict call, on this thread: a model in another process (Python) is killed if it has
/// not answered by `deadline`; a panic is that batch's failure, not the loop's. A failure is
/// logged in full here.
fn run_predict(
    model: &dyn Model,
    payloads: &[&[u8]],
    stream: &str,
    deadline: Instant,
) -> Predicted {
    let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        model.predict_json(payloads, deadline)
    }));
    match call {
        Ok(Ok(answers)) => Predicted::Answered(answers),
        Ok(Err(error @ TemplateError::Hung { .. })) => {
            tracing::warn!(stream, error = %error, "a prediction hung; its runner was killed");
            Predicted::Broken(error.to_string())
        }
        Ok(Err(error @ TemplateError::Runner { .. })) => {
            tracing::warn!(stream, error = %error, "a model's runner broke");
            Predicted::Broken("the model's process ended".to_owned())
        }
        Ok(Err(error)) => {
            tracing::warn!(stream, error = %error, "a prediction failed");
            Predicted::Refused(error.public_message())
        }
        Err(_) => {
            tracing::error!(stream, "a prediction panicked");
            Predicted::Refused("the model failed on this query".to_owned())
        }
    }
}

/// Each answer under the request id it was traced by (the HTTP request behind it), so one id
/// follows a query from nginx to the model: failures always, successes at debug level.
fn log_replies(replies: &[(Request, Reply)]) {
    for (request, reply) in replies {
        match reply {
            Reply::Ok(_) => tracing::debug!(request_id = request.trace, "predicted"),
            Reply::Error(error) => {
                tracing::info!(
                    request_id = request.trace,
                    error,
                    "the model refused the queries"
                )
            }
            Reply::Unavailable(reason) => {
                tracing::warn!(request_id = request.trace, reason, "cannot serve")
            }
            Reply::Expired => tracing::info!(request_id = request.trace, "expired unanswered"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use duma_common::redis::rpc::{MemoryBus, RpcClient, RpcError};
    use duma_runtime::{TemplateError as Error, TrialLogger};
    use serde_json::{Map, json};

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);
    /// How long `"hang"` keeps the model busy: past its caller's deadline (and the replica's).
    const HANG: Duration = Duration::from_millis(800);

    /// Doubles numbers; refuses anything else; on `"hang"`, busy past its caller's deadline, it
    /// ends as a runner killed at the replica's deadline does.
    struct Doubler;

    type Args = Map<String, Value>;

    /// Only served: never trained or evaluated here.
    impl Model for Doubler {
        fn train(&mut self, _: &Path, _: &Args, _: &mut TrialLogger) -> Result<(), Error> {
            unreachable!("a served model is not trained")
        }
        fn evaluate(&mut self, _: &Path, _: &mut TrialLogger) -> Result<f64, Error> {
            unreachable!("a served model is not evaluated")
        }
        fn predict(&self, queries: &[Value]) -> Result<Vec<Value>, TemplateError> {
            queries
                .iter()
                .enumerate()
                .map(|(index, query)| match query {
                    Value::String(s) if s == "hang" => {
                        std::thread::sleep(HANG);
                        Err(TemplateError::Hung { waited: HANG })
                    }
                    _ => query.as_f64().map(|x| json!(x * 2.0)).ok_or_else(|| {
                        TemplateError::InvalidQuery {
                            index,
                            reason: "not a number".into(),
                        }
                    }),
                })
                .collect()
        }
        fn dump_parameters(&self) -> Result<Vec<u8>, TemplateError> {
            Ok(Vec::new())
        }
    }

    struct Served {
        client: RpcClient,
        stop: CancellationToken,
        broken: mpsc::UnboundedReceiver<Broken>,
        bus: MemoryBus,
    }

    impl Drop for Served {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    /// A replica of [`Doubler`] serving target `model` on a fresh bus.
    fn serve() -> Served {
        let bus = MemoryBus::new("t:");
        let (client, _) = RpcClient::in_memory(&bus);
        let server = RpcServer::in_memory(&bus, "replica");
        let replica = Replica {
            stream: server.stream("model"),
            model: Box::new(Doubler),
            server,
            metrics: ServingMetrics::register(&prometheus::Registry::new()).unwrap(),
        };
        let (report, broken) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        spawn(replica, &stop, report);
        Served {
            client,
            stop,
            broken,
            bus,
        }
    }

    /// Runs `replica` as the worker does: on a thread of its own.
    fn spawn(replica: Replica, stop: &CancellationToken, report: mpsc::UnboundedSender<Broken>) {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || serve_here(replica.run(stop, report)).unwrap());
    }

    async fn predict(client: &RpcClient, queries: Value) -> Result<Value, RpcError> {
        client.call_json("model", &queries, "t", WAIT).await
    }

    #[tokio::test]
    async fn one_bad_query_fails_only_its_own_request() {
        let served = serve();
        let client = &served.client;
        let (a, b, c) = tokio::join!(
            predict(client, json!([1, 2])),
            predict(client, json!(["x"])),
            predict(client, json!([3])),
        );
        assert_eq!(a.unwrap(), json!([2.0, 4.0]));
        assert!(matches!(b, Err(RpcError::Remote(m)) if m.contains("not a number")));
        assert_eq!(c.unwrap(), json!([6.0]));
    }

    #[tokio::test]
    async fn a_request_that_is_not_a_list_of_queries_fails_alone() {
        let served = serve();
        let client = &served.client;
        let raw = |payload: &'static [u8]| client.call("model", payload.to_vec(), "t", WAIT);
        let (object, truncated, good) =
            tokio::join!(raw(br#"{"a": 1}"#), raw(b"[1, 2"), raw(b"[4]"));
        assert!(matches!(object, Err(RpcError::Remote(m)) if m.contains("not a JSON array")));
        assert!(matches!(truncated, Err(RpcError::Remote(m)) if m.contains("not a JSON array")));
        assert_eq!(&good.unwrap()[..], b"[8.0]");
    }

    #[tokio::test]
    async fn a_hung_model_answers_unavailable_and_is_reported_broken() {
        let mut served = serve();
        let started = Instant::now();
        let reply = served
            .client
            .call(
                "model",
                br#"["hang"]"#.to_vec(),
                "t",
                Duration::from_millis(300),
            )
            .await;
        assert!(matches!(reply, Err(RpcError::Timeout(_))), "{reply:?}");
        // The caller's own deadline ended its wait, not the model.
        assert!(started.elapsed() < HANG, "{:?}", started.elapsed());
        let broken = tokio::time::timeout(WAIT, served.broken.recv())
            .await
            .expect("reported within its deadline")
            .expect("a report");
        assert!(
            broken.reason.contains("did not answer within"),
            "{}",
            broken.reason
        );
    }

    #[tokio::test]
    async fn a_new_replica_answers_at_once_what_a_gone_one_left_unanswered() {
        let bus = MemoryBus::new("t:");
        let call = tokio::spawn({
            let (client, _) = RpcClient::in_memory(&bus);
            async move { predict(&client, json!([21])).await }
        });
        // A replica that read the request, then went away without answering.
        let mut gone = RpcServer::in_memory(&bus, "gone");
        let streams = vec![gone.stream("model")];
        assert_eq!(gone.read(&streams, 10, WAIT).await.unwrap().len(), 1);
        drop(gone);
        let stream = streams.into_iter().next().unwrap();
        let server = RpcServer::in_memory(&bus, "new");
        let replica = Replica {
            stream,
            model: Box::new(Doubler),
            server,
            metrics: ServingMetrics::register(&prometheus::Registry::new()).unwrap(),
        };
        let (report, _broken) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        spawn(replica, &stop, report);
        let started = Instant::now();
        assert_eq!(call.await.unwrap().unwrap(), json!([42.0]));
        assert!(
            started.elapsed() < RECLAIM_IDLE,
            "the takeover waited for the entry to idle"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn the_stream_depth_is_reported_and_nothing_is_left_pending() {
        let served = serve();
        for i in 0..5 {
            assert_eq!(
                predict(&served.client, json!([i])).await.unwrap(),
                json!([f64::from(i) * 2.0])
            );
        }
        let stream = served.bus.keys().request_stream("model");
        let mut server = RpcServer::in_memory(&served.bus, "observer");
        assert_eq!(server.depth(&stream).await.unwrap(), (0, 0));
    }
}
