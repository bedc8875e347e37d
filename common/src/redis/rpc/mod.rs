//! Request/reply over Redis (DESIGN §3.2), used by train workers → advisors and predictors →
//! inference workers.
//!
//! | module | what |
//! |---|---|
//! | [`wire`] | the stream entry and the reply frame, byte for byte |
//! | [`client`] | the requesting side: [`RpcClient`], one writer and one reply reader per process |
//! | [`server`] | the serving side: [`RpcServer`] reads, reclaims and answers batches |
//! | [`serve_loop`] | [`ServeLoop`] drives a [`StreamService`] (advisors, inference workers) |
//! | [`orphans`] | [`requeue_orphans`]: a dead server's unanswered entries handed to the live ones |
//! | [`memory`] | [`MemoryBus`]: the same streams and replies in process, for tests without Redis |
//!
//! - Requests go to a stream per target, read by a consumer group whose consumers are the
//!   serving replicas. Each entry carries request ids, trace ids (the HTTP request id that caused
//!   each call), the requester's reply list, a deadline (unix ms) and the payloads.
//! - Replies are pushed to the requester's reply list as `<request id><status><payload>`; one
//!   reader task per requesting instance blocks on that list and hands replies to the waiting
//!   calls, draining everything queued per wake-up.
//! - Servers read batches (`COUNT`), reply with one pipelined write per batch and acknowledge
//!   in the same pipeline; entries past their deadline get an "expired" reply without being
//!   processed; entries of dead consumers are reclaimed with `XAUTOCLAIM`.

mod client;
mod memory;
mod orphans;
mod serve_loop;
mod server;
mod wire;

pub use client::{RpcClient, RpcClientTasks};
pub use memory::MemoryBus;
pub use orphans::{SERVING_GROUP, requeue_orphans};
pub use serve_loop::{ServeLoop, StreamService};
pub use server::{Reply, RpcServer};
pub use wire::Request;

use std::time::Duration;

/// A blocking read that has not returned this long after its server-side timeout is on a dead
/// connection (Redis vanished without closing it): the connection is dropped and made anew.
const READ_GRACE: Duration = Duration::from_secs(5);
/// Reconnection back-off of the dedicated connections: from the first to the second.
pub const RECONNECT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_secs(2));

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
    /// The reply (or the request, before sending) is not the JSON the call expects.
    #[error("malformed message: {0}")]
    Malformed(String),
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
