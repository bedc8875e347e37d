//! The requesting side: one [`RpcClient`] per process instance, shared by all its tasks (over
//! Redis; over a [`MemoryBus`] in tests).
//!
//! Calls are written by one writer task: a lone call goes out at once, and calls made while a
//! write is in flight go out together in the next pipelined round trip (no batching delay).
//! Requests to the same target in one round trip share one stream entry. One reader task
//! blocks on the instance's reply list and hands each reply to its waiting call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::memory::MemoryBus;
use super::wire::{self, Outgoing, Status};
use super::{READ_GRACE, RECONNECT_BACKOFF, RpcError, is_connection_error, silent_connection};
use crate::redis::{Keys, Redis};

/// Bound on each request stream: a backlog past this is trimmed (those callers time out).
const STREAM_MAX_LEN: usize = 100_000;
/// How many queued replies the reader takes per wake-up, at most.
const REPLY_DRAIN: usize = 512;
/// How long the reply reader blocks per `BLMPOP`.
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// Requests written per pipelined round trip, at most.
const WRITE_BATCH: usize = 256;

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<(Status, Bytes)>>>>;

#[derive(Clone)]
pub struct RpcClient {
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Redis {
        keys: Keys,
        waiters: Waiters,
        outgoing: mpsc::UnboundedSender<Outgoing>,
    },
    Memory(MemoryBus),
}

/// The writer and the reply reader of an [`RpcClient`]: the owner runs them among its
/// supervised tasks; calls wait (and time out) while they are not running.
pub struct RpcClientTasks {
    /// `None` for a client of a [`MemoryBus`], which needs no task.
    redis: Option<RedisTasks>,
}

struct RedisTasks {
    redis: Redis,
    reply_list: String,
    waiters: Waiters,
    queue: mpsc::UnboundedReceiver<Outgoing>,
}

impl RpcClient {
    /// A client for `instance` (unique per process), and the tasks that move its messages.
    pub fn new(redis: Redis, instance: &str) -> (Self, RpcClientTasks) {
        let waiters: Waiters = Arc::default();
        let (outgoing, queue) = mpsc::unbounded_channel();
        let tasks = RpcClientTasks {
            redis: Some(RedisTasks {
                reply_list: redis.keys().reply_list(instance),
                redis: redis.clone(),
                waiters: waiters.clone(),
                queue,
            }),
        };
        let client = Self {
            transport: Transport::Redis {
                keys: redis.keys().clone(),
                waiters,
                outgoing,
            },
        };
        (client, tasks)
    }

    /// A client of the servers on `bus`.
    pub fn in_memory(bus: &MemoryBus) -> (Self, RpcClientTasks) {
        let client = Self {
            transport: Transport::Memory(bus.clone()),
        };
        (client, RpcClientTasks { redis: None })
    }

    /// Sends `payload` to `target` and waits up to `timeout` for the reply. `trace` (an HTTP
    /// request id, a trial id) is logged by the server that answers.
    pub async fn call(
        &self,
        target: &str,
        payload: impl Into<Bytes>,
        trace: &str,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let payload = payload.into();
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let deadline_ms = chrono::Utc::now().timestamp_millis()
            + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let trace = wire::trace_field(trace);
        let receiver = match &self.transport {
            Transport::Redis {
                keys,
                waiters,
                outgoing,
            } => {
                let (sender, receiver) = oneshot::channel();
                waiters.lock().insert(request_id.clone(), sender);
                let queued = outgoing.send(Outgoing {
                    stream: keys.request_stream(target),
                    request_id: request_id.clone(),
                    trace,
                    deadline_ms,
                    payload,
                });
                if queued.is_err() {
                    waiters.lock().remove(&request_id);
                    return Err(RpcError::Unavailable("the RPC client is shut down".into()));
                }
                receiver
            }
            Transport::Memory(bus) => {
                let stream = bus.keys().request_stream(target);
                bus.send(stream, request_id.clone(), trace, deadline_ms, payload)
            }
        };
        let text = |body: Bytes| String::from_utf8_lossy(&body).into_owned();
        let result = match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok((Status::Ok, body))) => Ok(body),
            Ok(Ok((Status::Expired, _))) => Err(RpcError::Expired),
            Ok(Ok((Status::SendFailed, body))) => Err(RpcError::Unsent(text(body))),
            Ok(Ok((Status::Unavailable, body))) => Err(RpcError::Unavailable(text(body))),
            Ok(Ok((Status::Error, body))) => Err(RpcError::Remote(text(body))),
            Ok(Err(_)) | Err(_) => Err(RpcError::Timeout(timeout)),
        };
        match &self.transport {
            Transport::Redis { waiters, .. } => {
                waiters.lock().remove(&request_id);
            }
            Transport::Memory(bus) => bus.forget(&request_id),
        }
        result
    }

    /// [`call`](Self::call) with a JSON request and a JSON reply.
    pub async fn call_json<Q: Serialize + ?Sized, A: DeserializeOwned>(
        &self,
        target: &str,
        request: &Q,
        trace: &(impl std::fmt::Display + ?Sized),
        timeout: Duration,
    ) -> Result<A, RpcError> {
        let payload =
            serde_json::to_vec(request).map_err(|e| RpcError::Malformed(e.to_string()))?;
        let reply = self
            .call(target, payload, &trace.to_string(), timeout)
            .await?;
        serde_json::from_slice(&reply).map_err(|e| RpcError::Malformed(e.to_string()))
    }
}

impl RpcClientTasks {
    /// Moves requests out and replies in until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Some(tasks) = self.redis else {
            shutdown.cancelled().await;
            return Ok(());
        };
        let reader = read_replies(
            tasks.redis.clone(),
            tasks.reply_list.clone(),
            tasks.waiters.clone(),
            shutdown.clone(),
        );
        let writer = write_requests(
            tasks.redis,
            tasks.reply_list,
            tasks.queue,
            tasks.waiters,
            shutdown,
        );
        tokio::join!(reader, writer);
        Ok(())
    }
}

/// The one writer task of an instance: takes every request queued since its last write and
/// appends them all in one pipeline.
async fn write_requests(
    redis: Redis,
    reply_list: String,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    waiters: Waiters,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut conn = None;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = queue.recv() => match first { Some(first) => first, None => return },
        };
        batch.push(first);
        while batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Requests to the same target share one stream entry: the server reads, acknowledges and
        // answers them as a group.
        let mut by_stream: HashMap<&str, Vec<&Outgoing>> = HashMap::new();
        for request in &batch {
            by_stream
                .entry(request.stream.as_str())
                .or_default()
                .push(request);
        }
        let mut pipe = redis::pipe();
        for (stream, requests) in by_stream {
            let fields = wire::entry_fields(&requests, &reply_list);
            let xadd = pipe
                .cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*");
            for (field, value) in fields {
                xadd.arg(field).arg(value);
            }
            xadd.ignore();
        }
        if let Err(error) = send(&redis, &mut conn, &pipe).await {
            let message = Bytes::from(error.to_string());
            let mut waiters = waiters.lock();
            for request in &batch {
                if let Some(waiter) = waiters.remove(&request.request_id) {
                    let _ = waiter.send((Status::SendFailed, message.clone()));
                }
            }
        }
        batch.clear();
    }
}

/// The one reader task of an instance: blocks on its reply list on a dedicated connection.
async fn read_replies(
    redis: Redis,
    reply_list: String,
    waiters: Waiters,
    shutdown: CancellationToken,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = RECONNECT_BACKOFF.0;
    while !shutdown.is_cancelled() {
        let mut active = match conn.take() {
            Some(active) => active,
            None => match redis.blocking_connection().await {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::warn!(%error, "reply reader cannot connect to Redis; retrying in {backoff:?}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                    continue;
                }
            },
        };
        // One round trip per wake-up: blocks while the list is empty, then takes everything
        // queued (up to `REPLY_DRAIN`).
        let pop = redis::cmd("BLMPOP")
            .arg(REPLY_WAIT.as_secs_f64())
            .arg(1)
            .arg(&reply_list)
            .arg("LEFT")
            .arg("COUNT")
            .arg(REPLY_DRAIN)
            .to_owned();
        let popped: RedisResult<Option<(String, Vec<Vec<u8>>)>> = tokio::select! {
            _ = shutdown.cancelled() => return,
            popped = tokio::time::timeout(REPLY_WAIT + READ_GRACE, pop.query_async(&mut active)) => {
                popped.unwrap_or_else(|_| Err(silent_connection()))
            }
        };
        if popped.is_ok() {
            backoff = RECONNECT_BACKOFF.0;
        }
        match popped {
            Ok(None) => conn = Some(active),
            Ok(Some((_, replies))) => {
                for reply in &replies {
                    deliver(&waiters, reply);
                }
                conn = Some(active);
            }
            Err(error) => {
                // Redis keeps nothing on disk: if it went away, so did the requests waiting in
                // it and the replies not yet read. Their callers hear it now (retryable), not at
                // their deadlines.
                fail_waiting(
                    &waiters,
                    &format!("lost contact with Redis ({error}); retry"),
                );
                // Redis restarting (refusing, or `LOADING` its data) is waited out, not hammered.
                tracing::warn!(%error, "reply reader lost its Redis connection; reconnecting in {backoff:?}");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
            }
        }
    }
}

/// Sends `pipe` on the writer's own connection (see [`Redis::own_connection`]), made anew
/// after one failed, and once more on a new one if it had died unnoticed (Redis restarted while
/// it sat idle): entries that met a dead connection were not appended, so sending them again
/// is safe.
async fn send(
    redis: &Redis,
    conn: &mut Option<MultiplexedConnection>,
    pipe: &redis::Pipeline,
) -> RedisResult<()> {
    let mut retried = false;
    loop {
        let mut active = match conn.take() {
            Some(active) => active,
            None => redis.own_connection().await?,
        };
        match pipe.query_async::<()>(&mut active).await {
            Ok(()) => {
                *conn = Some(active);
                return Ok(());
            }
            Err(error) if error.is_connection_dropped() && !retried => retried = true,
            Err(error) => {
                if !is_connection_error(&error) {
                    *conn = Some(active);
                }
                return Err(error);
            }
        }
    }
}

/// Ends every call waiting for a reply as unavailable, with `reason`.
fn fail_waiting(waiters: &Waiters, reason: &str) {
    let waiting: Vec<_> = waiters.lock().drain().collect();
    if !waiting.is_empty() {
        tracing::warn!(calls = waiting.len(), reason, "calls in flight failed");
    }
    let reason = Bytes::from(reason.to_owned());
    for (_, waiter) in waiting {
        let _ = waiter.send((Status::Unavailable, reason.clone()));
    }
}

fn deliver(waiters: &Waiters, frame: &[u8]) {
    let Some((id, status, body)) = wire::parse_reply_frame(frame) else {
        return;
    };
    // A missing waiter gave up (timed out) already: the late reply is dropped.
    if let Some(waiter) = waiters.lock().remove(id) {
        let _ = waiter.send((status, body));
    }
}
