//! Request/reply over Redis (DESIGN §3.2), used by train workers → advisors and predictors →
//! inference workers.
//!
//! - Requests go to a stream per target, read by a consumer group whose consumers are the
//!   serving replicas. Each entry carries a request id, the requester's reply list, a deadline
//!   (unix ms) and an opaque payload.
//! - Replies are pushed to the requester's reply list as `<request id><status><payload>`; one
//!   reader task per requesting instance blocks on that list and hands replies to the waiting
//!   calls, draining everything queued per wake-up.
//! - Servers read batches (`COUNT`), reply with one pipelined write per batch and acknowledge
//!   in the same pipeline; entries past their deadline get an "expired" reply without being
//!   processed; entries of dead consumers are reclaimed with `XAUTOCLAIM`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Redis;
use crate::ops::Probe;

/// Bound on each request stream: a backlog past this is trimmed (those callers time out).
const STREAM_MAX_LEN: usize = 100_000;
/// How many queued replies the reader takes per extra round trip.
const REPLY_DRAIN: usize = 512;
/// How long the reply reader blocks per `BLPOP`.
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// A blocking read that has not returned this long after its server-side timeout is on a dead
/// connection (Redis vanished without closing it): the connection is dropped and made anew.
const READ_GRACE: Duration = Duration::from_secs(5);
/// Reconnection back-off of the dedicated connections: from the first to the second.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// Replies nobody collects (the requester died) vanish after this.
const REPLY_LIST_TTL_MS: i64 = 60_000;
const REQUEST_ID_LEN: usize = 32;

const STATUS_OK: u8 = b'O';
const STATUS_ERROR: u8 = b'E';
const STATUS_EXPIRED: u8 = b'X';
const STATUS_UNAVAILABLE: u8 = b'U';
/// Local only: the request could not be written to Redis.
const STATUS_SEND_FAILED: u8 = b'R';

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the request expired before a worker took it")]
    Expired,
    /// The request was refused: the caller's input is at fault (e.g. a query the model rejects).
    #[error("the worker failed: {0}")]
    Remote(String),
    /// The worker could not serve the request through no fault of the caller's.
    #[error("the worker cannot serve this now: {0}")]
    Unavailable(String),
    #[error("the request could not be sent: {0}")]
    Unsent(String),
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<(u8, Bytes)>>>>;

/// The requesting side: one per process instance, shared by all its tasks.
///
/// Calls are written by one writer task: a lone call goes out at once, and calls made while a
/// write is in flight go out together in the next pipelined round trip (no batching delay).
#[derive(Clone)]
pub struct RpcClient {
    redis: Redis,
    waiters: Waiters,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

/// A request waiting for the writer.
struct Outgoing {
    stream: String,
    request_id: String,
    deadline_ms: i64,
    payload: Vec<u8>,
}

/// Requests written per pipelined round trip, at most.
const WRITE_BATCH: usize = 256;

impl RpcClient {
    /// Starts the reply reader and the request writer for `instance` (unique per process); both
    /// stop with `shutdown`.
    pub fn start(redis: Redis, instance: &str, shutdown: CancellationToken) -> Self {
        let reply_list = redis.keys().reply_list(instance);
        let waiters: Waiters = Arc::default();
        tokio::spawn(read_replies(
            redis.clone(),
            reply_list.clone(),
            waiters.clone(),
            shutdown.clone(),
        ));
        let (outgoing, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(
            redis.clone(),
            reply_list,
            queue,
            waiters.clone(),
            shutdown,
        ));
        Self {
            redis,
            waiters,
            outgoing,
        }
    }

    /// Sends `payload` to `target` and waits up to `timeout` for the reply.
    pub async fn call(
        &self,
        target: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (sender, receiver) = oneshot::channel();
        lock(&self.waiters).insert(request_id.clone(), sender);
        let deadline_ms = chrono::Utc::now().timestamp_millis()
            + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let queued = self.outgoing.send(Outgoing {
            stream: self.redis.keys().request_stream(target),
            request_id: request_id.clone(),
            deadline_ms,
            payload: payload.to_vec(),
        });
        let result = match queued {
            Err(_) => Err(RpcError::Unavailable("the RPC client is shut down".into())),
            Ok(()) => match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok((STATUS_OK, body))) => Ok(body),
                Ok(Ok((STATUS_EXPIRED, _))) => Err(RpcError::Expired),
                Ok(Ok((STATUS_SEND_FAILED, body))) => Err(RpcError::Unsent(
                    String::from_utf8_lossy(&body).into_owned(),
                )),
                Ok(Ok((STATUS_UNAVAILABLE, body))) => Err(RpcError::Unavailable(
                    String::from_utf8_lossy(&body).into_owned(),
                )),
                Ok(Ok((_, body))) => Err(RpcError::Remote(
                    String::from_utf8_lossy(&body).into_owned(),
                )),
                Ok(Err(_)) | Err(_) => Err(RpcError::Timeout(timeout)),
            },
        };
        lock(&self.waiters).remove(&request_id);
        result
    }
}

fn lock(
    waiters: &Waiters,
) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<(u8, Bytes)>>> {
    waiters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            let ids: Vec<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
            let deadline = requests
                .iter()
                .map(|r| r.deadline_ms)
                .min()
                .unwrap_or_default();
            let mut body = Vec::with_capacity(requests.iter().map(|r| 4 + r.payload.len()).sum());
            for request in &requests {
                body.extend_from_slice(
                    &u32::try_from(request.payload.len())
                        .unwrap_or(u32::MAX)
                        .to_be_bytes(),
                );
                body.extend_from_slice(&request.payload);
            }
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("rids")
                .arg(ids.join(","))
                .arg("reply")
                .arg(&reply_list)
                .arg("deadline")
                .arg(deadline)
                .arg("body")
                .arg(body)
                .ignore();
        }
        // Entries that met a dead connection were not appended: sending them again is safe.
        if let Err(error) = redis
            .retrying(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async::<()>(&mut conn).await }
            })
            .await
        {
            let message = Bytes::from(error.to_string());
            let mut waiters = lock(&waiters);
            for request in &batch {
                if let Some(waiter) = waiters.remove(&request.request_id) {
                    let _ = waiter.send((STATUS_SEND_FAILED, message.clone()));
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
        let popped: RedisResult<Option<(String, Vec<u8>)>> = tokio::select! {
            _ = shutdown.cancelled() => return,
            popped = tokio::time::timeout(REPLY_WAIT + READ_GRACE, active.blpop(&reply_list, REPLY_WAIT.as_secs_f64())) => {
                popped.unwrap_or_else(|_| Err(silent_connection()))
            }
        };
        if popped.is_ok() {
            backoff = RECONNECT_BACKOFF.0;
        }
        match popped {
            Ok(None) => conn = Some(active),
            Ok(Some((_, first))) => {
                deliver(&waiters, &first);
                let more: RedisResult<Option<Vec<Vec<u8>>>> = redis::cmd("LPOP")
                    .arg(&reply_list)
                    .arg(REPLY_DRAIN)
                    .query_async(&mut active)
                    .await;
                for reply in more.ok().flatten().unwrap_or_default() {
                    deliver(&waiters, &reply);
                }
                conn = Some(active);
            }
            Err(error) => {
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

fn deliver(waiters: &Waiters, reply: &[u8]) {
    if reply.len() <= REQUEST_ID_LEN {
        return;
    }
    let (id, rest) = reply.split_at(REQUEST_ID_LEN);
    let Ok(id) = std::str::from_utf8(id) else {
        return;
    };
    let waiter = waiters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(id);
    // A missing waiter gave up (timed out) already: the late reply is dropped.
    if let Some(waiter) = waiter {
        let _ = waiter.send((rest[0], Bytes::copy_from_slice(&rest[1..])));
    }
}

/// One request as a server reads it.
#[derive(Debug, Clone)]
pub struct Request {
    pub stream: String,
    pub entry_id: String,
    pub request_id: String,
    pub reply_to: String,
    /// Unix milliseconds after which nobody waits for the reply.
    pub deadline_ms: i64,
    pub payload: Bytes,
}

impl Request {
    pub fn is_expired(&self) -> bool {
        chrono::Utc::now().timestamp_millis() > self.deadline_ms
    }
}

/// The serving side: reads batches of requests as one consumer of a group.
///
/// It owns a dedicated connection (blocking reads must not hold up other commands). A command
/// that fails because the connection died drops it, and the next command connects anew: after a
/// Redis restart the server resumes by itself, and a read that meets a consumer group Redis lost
/// creates it again.
pub struct RpcServer {
    redis: Redis,
    conn: Option<MultiplexedConnection>,
    group: String,
    consumer: String,
}

/// Whether a failed command means the connection is unusable (rather than a refused command).
fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// The error of a blocking read that outlived its server-side timeout.
fn silent_connection() -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer a blocking read in time; reconnecting",
    )
    .into()
}

impl RpcServer {
    pub async fn new(redis: &Redis, group: &str, consumer: &str) -> RedisResult<Self> {
        let conn = redis.blocking_connection().await?;
        Ok(Self {
            redis: redis.clone(),
            conn: Some(conn),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
        })
    }

    /// The dedicated connection, made anew if the last one died.
    async fn connection(&mut self) -> RedisResult<MultiplexedConnection> {
        match &self.conn {
            Some(conn) => Ok(conn.clone()),
            None => {
                let conn = self.redis.blocking_connection().await?;
                tracing::info!(group = self.group, "request reader reconnected to Redis");
                self.conn = Some(conn.clone());
                Ok(conn)
            }
        }
    }

    /// Passes `result` on; a connection failure drops the connection first.
    fn checked<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result
            && is_connection_error(error)
        {
            self.conn = None;
        }
        result
    }

    /// Runs `command` on the dedicated connection, and once more on a new connection if the
    /// first had died unnoticed (Redis restarted while it sat idle, as a standby's does). A
    /// command that timed out is not repeated.
    async fn run<T, F: Future<Output = RedisResult<T>>>(
        &mut self,
        mut command: impl FnMut(MultiplexedConnection) -> F,
    ) -> RedisResult<T> {
        let first = command(self.connection().await?).await;
        match self.checked(first) {
            Err(error) if error.is_connection_dropped() => {
                tracing::debug!(%error, "the request reader's connection had died; trying again");
                let second = command(self.connection().await?).await;
                self.checked(second)
            }
            other => other,
        }
    }

    /// The stream key of a target.
    pub fn stream(&self, target: &str) -> String {
        self.redis.keys().request_stream(target)
    }

    /// Creates the consumer group (and the stream) if missing; reads start at the beginning,
    /// so requests sent before any server existed are served.
    pub async fn ensure_group(&mut self, stream: &str) -> RedisResult<()> {
        let group = self.group.clone();
        let created: RedisResult<()> = self
            .run(|mut conn| {
                let group = &group;
                async move { conn.xgroup_create_mkstream(stream, group, "0").await }
            })
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Reads up to `count` new requests from each of `streams`, waiting up to `block` for the
    /// first. Requests already past their deadline are answered "expired" and acknowledged here.
    pub async fn read(
        &mut self,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> RedisResult<Vec<Request>> {
        if streams.is_empty() {
            tokio::time::sleep(block).await;
            return Ok(Vec::new());
        }
        let ids = vec![">"; streams.len()];
        let options = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(count)
            .block(
                usize::try_from(block.as_millis())
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
        let reply: RedisResult<Option<StreamReadReply>> = self
            .run(|mut conn| {
                let (ids, options) = (&ids, &options);
                async move {
                    tokio::time::timeout(
                        block + READ_GRACE,
                        conn.xread_options(streams, ids, options),
                    )
                    .await
                    .unwrap_or_else(|_| Err(silent_connection()))
                }
            })
            .await;
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => {
                for stream in streams {
                    self.ensure_group(stream).await?;
                }
                return Ok(Vec::new());
            }
            other => other?,
        };
        let mut requests = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                requests.extend(parse_entry(&key.key, entry.id, &entry.map));
            }
        }
        self.drop_expired(requests).await
    }

    /// Takes over entries that another consumer read but did not acknowledge for `min_idle`
    /// (it died mid-request).
    pub async fn reclaim(
        &mut self,
        stream: &str,
        min_idle: Duration,
        count: usize,
    ) -> RedisResult<Vec<Request>> {
        let idle = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let (group, consumer) = (self.group.clone(), self.consumer.clone());
        let reply: RedisResult<StreamAutoClaimReply> = self
            .run(|mut conn| {
                let (group, consumer) = (&group, &consumer);
                let options = StreamAutoClaimOptions::default().count(count);
                async move {
                    conn.xautoclaim_options(stream, group, consumer, idle, "0-0", options)
                        .await
                }
            })
            .await;
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
            other => other?,
        };
        let requests = reply
            .claimed
            .into_iter()
            .flat_map(|e| parse_entry(stream, e.id, &e.map))
            .collect();
        self.drop_expired(requests).await
    }

    async fn drop_expired(&mut self, requests: Vec<Request>) -> RedisResult<Vec<Request>> {
        let (expired, live): (Vec<_>, Vec<_>) = requests.into_iter().partition(Request::is_expired);
        if !expired.is_empty() {
            let replies = expired.into_iter().map(|r| (r, Reply::Expired)).collect();
            self.respond(replies).await?;
        }
        Ok(live)
    }

    /// `(entries in the stream, entries read but not yet acknowledged)` for monitoring.
    pub async fn depth(&mut self, stream: &str) -> RedisResult<(u64, u64)> {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN")
            .arg(stream)
            .cmd("XPENDING")
            .arg(stream)
            .arg(&self.group);
        let (length, pending): (u64, Value) = self
            .run(|mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        let pending = match pending {
            Value::Array(summary) => match summary.first() {
                Some(Value::Int(count)) => u64::try_from(*count).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        Ok((length, pending))
    }

    /// Replies to a batch, acknowledges and deletes it, in one pipelined round trip: one `RPUSH`
    /// (and expiry) per requesting instance, one `XACK` and one `XDEL` per stream.
    pub async fn respond(&mut self, replies: Vec<(Request, Reply)>) -> RedisResult<()> {
        if replies.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut frames: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
        let mut acks: HashMap<&str, Vec<&str>> = HashMap::new();
        for (request, reply) in &replies {
            let (status, body): (u8, &[u8]) = match reply {
                Reply::Ok(body) => (STATUS_OK, body),
                Reply::Error(message) => (STATUS_ERROR, message.as_bytes()),
                Reply::Unavailable(message) => (STATUS_UNAVAILABLE, message.as_bytes()),
                Reply::Expired => (STATUS_EXPIRED, b""),
            };
            let mut frame = Vec::with_capacity(REQUEST_ID_LEN + 1 + body.len());
            frame.extend_from_slice(request.request_id.as_bytes());
            frame.push(status);
            frame.extend_from_slice(body);
            frames
                .entry(request.reply_to.as_str())
                .or_default()
                .push(frame);
            acks.entry(request.stream.as_str())
                .or_default()
                .push(request.entry_id.as_str());
        }
        for (reply_list, frames) in frames {
            pipe.rpush(reply_list, frames).ignore();
            pipe.pexpire(reply_list, REPLY_LIST_TTL_MS).ignore();
        }
        for (stream, mut ids) in acks {
            // Requests that shared an entry share its id.
            ids.sort_unstable();
            ids.dedup();
            pipe.xack(stream, &self.group, &ids).ignore();
            // Answered is done: the entry goes, so a stream holds only unanswered requests.
            pipe.xdel(stream, &ids).ignore();
        }
        self.run(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }
}

/// What a server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(Bytes),
    /// The request itself is at fault; the caller gets a 4xx.
    Error(String),
    /// A platform fault (e.g. this replica no longer serves the target); the caller gets a 5xx.
    Unavailable(String),
    Expired,
}

/// The requests of one stream entry: `rids` lists their ids, `body` their payloads, each
/// prefixed by its 4-byte big-endian length.
fn parse_entry(stream: &str, entry_id: String, map: &HashMap<String, Value>) -> Vec<Request> {
    let bytes = |field: &str| match map.get(field) {
        Some(Value::BulkString(b)) => Bytes::copy_from_slice(b),
        Some(Value::SimpleString(s)) => Bytes::copy_from_slice(s.as_bytes()),
        _ => Bytes::new(),
    };
    let text = |field: &str| String::from_utf8_lossy(&bytes(field)).into_owned();
    let reply_to = text("reply");
    let deadline_ms = text("deadline").parse().unwrap_or(0);
    let body = bytes("body");
    let mut offset = 0;
    let mut requests = Vec::new();
    for request_id in text("rids").split(',').filter(|id| !id.is_empty()) {
        let Some(length) = body
            .get(offset..offset + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            break;
        };
        let length = u32::from_be_bytes(length) as usize;
        let Some(payload) = body.get(offset + 4..offset + 4 + length) else {
            break;
        };
        offset += 4 + length;
        requests.push(Request {
            stream: stream.to_owned(),
            entry_id: entry_id.clone(),
            request_id: request_id.to_owned(),
            reply_to: reply_to.clone(),
            deadline_ms,
            payload: body.slice_ref(payload),
        });
    }
    requests
}

/// A server of request streams with housekeeping between reads (claiming and dropping work,
/// reclaiming orphaned entries): the advisors and the inference workers.
pub trait StreamService {
    /// The streams to read from now.
    fn streams(&self) -> Vec<String>;
    fn server(&mut self) -> &mut RpcServer;
    fn tick(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn serve(&mut self, requests: Vec<Request>) -> impl Future<Output = ()> + Send;
}

/// How a [`StreamService`] is driven.
#[derive(Debug, Clone, Copy)]
pub struct ServeLoop {
    /// Housekeeping at most this often.
    pub tick: Duration,
    /// How long one read waits for requests.
    pub block: Duration,
    /// Requests per stream per read, at most.
    pub batch: usize,
}

impl ServeLoop {
    /// Reads, serves and ticks until `shutdown`, beating `probe` once per round. Reads are not
    /// raced against shutdown: a read dropped midway would lose the entries it took. A failed
    /// read (Redis down or restarting) is retried with a growing back-off; the server reconnects
    /// by itself.
    pub async fn run<S: StreamService>(
        self,
        service: &mut S,
        name: &str,
        probe: &Probe,
        shutdown: &CancellationToken,
    ) {
        let mut next_tick = std::time::Instant::now();
        let mut backoff = RECONNECT_BACKOFF.0;
        while !shutdown.is_cancelled() {
            probe.beat();
            if std::time::Instant::now() >= next_tick {
                if let Err(error) = service.tick().await {
                    tracing::warn!(error = format!("{error:#}"), "{name} tick failed");
                }
                next_tick = std::time::Instant::now() + self.tick;
            }
            let streams = service.streams();
            match service
                .server()
                .read(&streams, self.batch, self.block)
                .await
            {
                Ok(requests) => {
                    backoff = RECONNECT_BACKOFF.0;
                    service.serve(requests).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "{name}: reading requests failed; retrying in {backoff:?}");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                }
            }
        }
    }
}
