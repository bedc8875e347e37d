//! The serving side: [`RpcServer`] reads batches of requests as one consumer of a group,
//! reclaims the entries of consumers that died, and answers a batch in one round trip — over
//! Redis streams, or over a [`MemoryBus`] in tests.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, RedisResult, Value};

use super::memory::MemoryBus;
use super::wire::{self, Request, Status};
use super::{READ_GRACE, is_connection_error, silent_connection};
use crate::redis::Redis;

/// Replies nobody collects (the requester died) vanish after this.
const REPLY_LIST_TTL_MS: i64 = 60_000;

/// The serving side: reads batches of requests as one consumer of a group.
///
/// It owns a dedicated connection (blocking reads must not hold up other commands). A command
/// that fails because the connection died drops it, and the next command connects anew: after a
/// Redis restart the server resumes by itself, and a read that meets a consumer group Redis lost
/// creates it again.
pub struct RpcServer {
    transport: Transport,
}

enum Transport {
    Redis(Box<RedisStreams>),
    Memory { bus: MemoryBus, consumer: String },
}

/// A consumer of Redis request streams on its own connection.
struct RedisStreams {
    redis: Redis,
    conn: Option<MultiplexedConnection>,
    group: String,
    consumer: String,
}

/// The error code Redis answered with, also for a command in a pipeline (whose errors
/// `RedisError::code` does not name).
fn server_code(error: &redis::RedisError) -> Option<String> {
    error.code().map(str::to_owned).or_else(|| {
        let errors = error.clone().into_server_errors()?;
        errors.first().map(|(_, e)| e.code().to_owned())
    })
}

impl RpcServer {
    /// `consumer` of the group `group` of Redis's request streams, on its own connection.
    pub async fn new(redis: &Redis, group: &str, consumer: &str) -> RedisResult<Self> {
        let conn = redis.blocking_connection().await?;
        Ok(Self {
            transport: Transport::Redis(Box::new(RedisStreams {
                redis: redis.clone(),
                conn: Some(conn),
                group: group.to_owned(),
                consumer: consumer.to_owned(),
            })),
        })
    }

    /// `consumer` of the request streams of `bus`.
    pub fn in_memory(bus: &MemoryBus, consumer: &str) -> Self {
        Self {
            transport: Transport::Memory {
                bus: bus.clone(),
                consumer: consumer.to_owned(),
            },
        }
    }

    /// The stream key of a target.
    pub fn stream(&self, target: &str) -> String {
        match &self.transport {
            Transport::Redis(redis) => redis.redis.keys().request_stream(target),
            Transport::Memory { bus, .. } => bus.keys().request_stream(target),
        }
    }

    /// Creates the consumer group (and the stream) if missing; reads start at the beginning,
    /// so requests sent before any server existed are served.
    pub async fn ensure_group(&mut self, stream: &str) -> RedisResult<()> {
        match &mut self.transport {
            Transport::Redis(redis) => redis.ensure_group(stream).await,
            Transport::Memory { .. } => Ok(()),
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
        self.respond_and_read(Vec::new(), streams, count, block)
            .await
    }

    /// Answers a batch, then reads as [`Self::read`] — over Redis in one round trip, so a
    /// server that answered does not wait for Redis's word on it before its next read. A
    /// failure may come from either: the replies may or may not have gone out.
    pub async fn respond_and_read(
        &mut self,
        replies: Vec<(Request, Reply)>,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> RedisResult<Vec<Request>> {
        if streams.is_empty() {
            self.respond(replies).await?;
            tokio::time::sleep(block).await;
            return Ok(Vec::new());
        }
        let replies = frames(replies);
        let requests = match &mut self.transport {
            Transport::Redis(redis) => redis.read(replies, streams, count, block).await?,
            Transport::Memory { bus, consumer } => {
                bus.respond(replies);
                bus.read(consumer, streams, count, block).await
            }
        };
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
        let requests = match &mut self.transport {
            Transport::Redis(redis) => redis.reclaim(stream, min_idle, count).await?,
            Transport::Memory { bus, consumer } => bus.reclaim(consumer, stream, min_idle, count),
        };
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
        match &mut self.transport {
            Transport::Redis(redis) => redis.depth(stream).await,
            Transport::Memory { bus, .. } => Ok(bus.depth(stream)),
        }
    }

    /// Replies to a batch and acknowledges it (over Redis: in one pipelined round trip).
    pub async fn respond(&mut self, replies: Vec<(Request, Reply)>) -> RedisResult<()> {
        if replies.is_empty() {
            return Ok(());
        }
        let replies = frames(replies);
        match &mut self.transport {
            Transport::Redis(redis) => redis.respond(replies).await,
            Transport::Memory { bus, .. } => {
                bus.respond(replies);
                Ok(())
            }
        }
    }
}

/// Each reply as the status and body its frame carries.
fn frames(replies: Vec<(Request, Reply)>) -> Vec<(Request, Status, Bytes)> {
    replies
        .into_iter()
        .map(|(request, reply)| {
            let (status, body) = reply.into_frame();
            (request, status, body)
        })
        .collect()
}

impl RedisStreams {
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

    async fn ensure_group(&mut self, stream: &str) -> RedisResult<()> {
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

    /// Sends `replies` (as [`Self::respond`]) and reads, in one pipeline.
    async fn read(
        &mut self,
        replies: Vec<(Request, Status, Bytes)>,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> RedisResult<Vec<Request>> {
        let ids = vec![">"; streams.len()];
        let options = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(count)
            .block(
                usize::try_from(block.as_millis())
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
        let mut pipe = self.reply_pipeline(&replies);
        pipe.xread_options(streams, &ids, &options);
        let reply: RedisResult<(Option<StreamReadReply>,)> = self
            .run(|mut conn| {
                let pipe = &pipe;
                async move {
                    tokio::time::timeout(block + READ_GRACE, pipe.query_async(&mut conn))
                        .await
                        .unwrap_or_else(|_| Err(silent_connection()))
                }
            })
            .await;
        let reply = match reply.map(|(read,)| read) {
            Err(e) if server_code(&e).as_deref() == Some("NOGROUP") => {
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
                requests.extend(wire::parse_entry(&key.key, entry.id, &entry.map));
            }
        }
        Ok(requests)
    }

    async fn reclaim(
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
        Ok(reply
            .claimed
            .into_iter()
            .flat_map(|e| wire::parse_entry(stream, e.id, &e.map))
            .collect())
    }

    async fn depth(&mut self, stream: &str) -> RedisResult<(u64, u64)> {
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
    async fn respond(&mut self, replies: Vec<(Request, Status, Bytes)>) -> RedisResult<()> {
        let pipe = self.reply_pipeline(&replies);
        self.run(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    /// The commands of [`Self::respond`], their results ignored.
    fn reply_pipeline(&self, replies: &[(Request, Status, Bytes)]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let mut frames: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
        let mut acks: HashMap<&str, Vec<&str>> = HashMap::new();
        for (request, status, body) in replies {
            let frame = wire::reply_frame(&request.request_id, *status, body);
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
        pipe
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

impl Reply {
    fn into_frame(self) -> (Status, Bytes) {
        match self {
            Reply::Ok(body) => (Status::Ok, body),
            Reply::Error(message) => (Status::Error, Bytes::from(message)),
            Reply::Unavailable(message) => (Status::Unavailable, Bytes::from(message)),
            Reply::Expired => (Status::Expired, Bytes::new()),
        }
    }
}
