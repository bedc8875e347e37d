//! The admin: Duma's REST control plane (Rafiki's admin API).

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use duma_common::Settings;
use duma_common::db::PgPool;
use duma_common::ops::{self, HttpMetrics, Readiness};
use duma_common::redis::Redis;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// The admin server, bound and ready to run. Binding to port 0 picks a free port
/// ([`Application::port`] tells which), so tests never race for ports.
pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate_jwt_secret()?;
        let pool = duma_common::db::pool(&settings.database)?;
        let redis = Redis::connect(&settings.redis).await?;
        Self::build_with(settings, pool, redis)
    }

    pub fn build_with(settings: Settings, pool: PgPool, redis: Redis) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.admin.host.as_str(), settings.admin.port))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}:{}: {e}",
                    settings.admin.host,
                    settings.admin.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let registry = Registry::new();
        let http_metrics = web::Data::new(HttpMetrics::register(&registry)?);
        let registry = web::Data::new(registry);
        let readiness = web::Data::new(Readiness {
            postgres: Some(pool),
            redis: Some(redis),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(ops::track_http))
                .app_data(http_metrics.clone())
                .app_data(registry.clone())
                .app_data(readiness.clone())
                .configure(ops::configure)
                .route("/", web::get().to(index))
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Self { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "admin listening");
        ops::stop_on(self.server, shutdown).await
    }
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Duma admin is up.")
}

/// Serves the admin until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}
