//! Redis: one shared auto-reconnecting connection for commands, dedicated connections for
//! blocking reads, and the key names every service agrees on.

pub mod events;
mod keys;
pub mod rpc;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

pub use keys::Keys;

/// A handle to Redis: cheap to clone, shared by every task of a service.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    shared: ConnectionManager,
    keys: Keys,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Redis {
    /// Connects the shared connection. It reconnects by itself after Redis restarts; a command
    /// issued while Redis is down fails (it never hangs past the response timeout).
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Self> {
        let client = Client::open(settings.url.expose_secret())
            .map_err(|e| anyhow::anyhow!("DUMA_REDIS__URL is invalid: {e}"))?;
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let response_timeout = Duration::from_millis(settings.response_timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        let shared = tokio::time::timeout(
            connect_timeout + Duration::from_secs(1),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis did not answer within {connect_timeout:?}"))??;
        Ok(Self {
            client,
            shared,
            keys: Keys::new(&settings.key_prefix),
            connect_timeout,
            response_timeout,
        })
    }

    /// The shared connection for ordinary commands (clone it freely).
    pub fn shared(&self) -> ConnectionManager {
        self.shared.clone()
    }

    /// A new connection without a response timeout, for commands that block on the server
    /// (`BLMPOP`, `XREADGROUP BLOCK`). Give each blocking reader its own: a blocked command holds
    /// up everything queued behind it on the same connection.
    pub async fn blocking_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A connection of its own for ordinary commands (with the response timeout), driven on
    /// the runtime of the task that makes it: a task sending commands all the time (an RPC
    /// writer) keeps them on its own thread instead of handing each to the shared connection's.
    /// It does not reconnect by itself.
    pub async fn own_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A connection for subscribing to channels.
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        self.client.get_async_pubsub().await
    }

    /// Deletes the request streams whose RPC target `orphaned` picks; returns how many. Walks
    /// the keyspace with `SCAN` (a bounded number of steps), never `KEYS`.
    pub async fn delete_request_streams(
        &self,
        mut orphaned: impl FnMut(&str) -> bool,
    ) -> redis::RedisResult<usize> {
        const SCAN_COUNT: usize = 1000;
        const SCAN_STEPS: usize = 1000;
        let pattern = self.keys.request_stream_pattern();
        let mut conn = self.shared();
        let (mut cursor, mut deleted) = (0_u64, 0);
        for _ in 0..SCAN_STEPS {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await?;
            let doomed: Vec<&String> = found
                .iter()
                .filter(|key| self.keys.target_of_stream(key).is_some_and(&mut orphaned))
                .collect();
            if !doomed.is_empty() {
                let _: () = redis::cmd("UNLINK")
                    .arg(&doomed)
                    .query_async(&mut conn)
                    .await?;
                deleted += doomed.len();
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(deleted)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs `command` on the shared connection, and once more if the first attempt met a
    /// connection that had died unnoticed (Redis restarted while it sat idle: the manager learns
    /// of it only from that failure, and reconnects). Only for commands that are safe to repeat.
    pub async fn retrying<T, F: Future<Output = redis::RedisResult<T>>>(
        &self,
        mut command: impl FnMut(ConnectionManager) -> F,
    ) -> redis::RedisResult<T> {
        match command(self.shared()).await {
            Err(error) if error.is_connection_dropped() => {
                tracing::debug!(%error, "the shared Redis connection had died; trying again");
                command(self.shared()).await
            }
            other => other,
        }
    }

    /// Proves Redis answers.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        self.retrying(
            |mut conn| async move { redis::cmd("PING").query_async::<()>(&mut conn).await },
        )
        .await
    }
}
