use std::sync::Arc;
use std::time::Duration;

use duma_common::Settings;
use duma_common::db::PgPool;
use duma_common::redis::Redis;
use duma_common::store::ObjectStore;
use secrecy::ExposeSecret;

use crate::auth::{LoginThrottle, TokenKeys};
use crate::prometheus_api::Prometheus;

/// What every handler can reach, shared by all workers of the server.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub redis: Redis,
    pub store: ObjectStore,
    pub tokens: TokenKeys,
    pub logins: LoginThrottle,
    /// Where deployments' traffic over time is read; `None` without `admin.prometheus_url`.
    pub prometheus: Option<Prometheus>,
}

impl AppState {
    pub fn new(settings: Settings, pool: PgPool, redis: Redis, store: ObjectStore) -> Self {
        let tokens = TokenKeys::new(
            settings.admin.jwt_secret.expose_secret().as_bytes(),
            Duration::from_secs(settings.admin.token_ttl_hours.saturating_mul(3600)),
        );
        let logins = LoginThrottle::new(
            settings.admin.login_failures_per_account,
            settings.admin.login_failures_per_address,
            Duration::from_secs(settings.admin.login_window_secs),
            settings.admin.password_hashing_concurrency,
        );
        let prometheus = Prometheus::new(&settings.admin.prometheus_url).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot make a client for admin.prometheus_url");
            None
        });
        Self {
            logins,
            prometheus,
            settings: Arc::new(settings),
            pool,
            redis,
            store,
            tokens,
        }
    }

    /// Publishes a lifecycle event; workers also reconcile from Postgres, so a lost event only
    /// delays them — it is logged, not returned to the client.
    pub async fn publish(&self, event: duma_common::redis::events::Event) {
        if let Err(error) = duma_common::redis::events::publish(&self.redis, &event).await {
            tracing::warn!(%error, ?event, "could not publish an event");
        }
    }
}
