//! What every service exposes to operators: `/metrics` (Prometheus), `/health` (readiness: ready
//! when Postgres and Redis answer, no essential loop is stalled and nothing the service took on is
//! pending), `/live` (liveness: no essential loop stalled), HTTP request metrics, request ids,
//! and the client side of `healthcheck`.

mod liveness;
mod pending;
mod request_id;

pub use liveness::{Liveness, Probe};
pub use pending::{Pending, PendingGuard};
pub use request_id::{RequestId, X_REQUEST_ID, assign_request_id};

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use deadpool_postgres::Pool;
use prometheus::{Encoder, HistogramVec, IntCounterVec, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

use crate::redis::Redis;

const DEPENDENCY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a service needs to be ready: the dependencies it uses, its loops making progress, and
/// nothing it took on still pending.
#[derive(Clone, Default)]
pub struct Readiness {
    pub postgres: Option<Pool>,
    pub redis: Option<Redis>,
    pub liveness: Liveness,
    pub pending: Pending,
}

impl Readiness {
    /// Checks every dependency under a timeout, and every loop's progress; the error lists what
    /// failed.
    pub async fn check(&self) -> Result<(), String> {
        let mut failures = self.liveness.stalled();
        failures.extend(self.pending.reasons());
        if let Some(pool) = &self.postgres {
            match tokio::time::timeout(DEPENDENCY_CHECK_TIMEOUT, crate::db::check(pool)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("postgres: {e}")),
                Err(_) => failures.push("postgres: no answer within 2s".to_owned()),
            }
        }
        if let Some(redis) = &self.redis {
            match tokio::time::timeout(DEPENDENCY_CHECK_TIMEOUT, redis.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("redis: {e}")),
                Err(_) => failures.push("redis: no answer within 2s".to_owned()),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

/// `GET /health`: 200 when ready, 503 naming what is down.
pub async fn health(readiness: web::Data<Readiness>) -> HttpResponse {
    match readiness.check().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "reason": reason})),
    }
}

/// `GET /live`: 200 while every essential loop makes progress, 503 naming the stalled ones. For
/// orchestrators' liveness probes: a service whose database is down is not ready, but restarting
/// it would not help.
pub async fn live(readiness: web::Data<Readiness>) -> HttpResponse {
    let stalled = readiness.liveness.stalled();
    if stalled.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "stalled", "reason": stalled.join("; ")}))
    }
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => HttpResponse::Ok()
            .content_type(prometheus::TEXT_FORMAT)
            .body(buffer),
        Err(error) => HttpResponse::InternalServerError().body(error.to_string()),
    }
}

/// Adds `/health`, `/live` and `/metrics` to an app; the app must hold `Data<Readiness>` and
/// `Data<Registry>`.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health))
        .route("/live", web::get().to(live))
        .route("/metrics", web::get().to(metrics));
}

/// What an HTTP service (admin, predictor) shares with operators: its metrics registry, its
/// HTTP metrics and its readiness.
#[derive(Clone)]
pub struct OpsData {
    registry: web::Data<Registry>,
    http_metrics: web::Data<HttpMetrics>,
    readiness: web::Data<Readiness>,
}

impl OpsData {
    /// Registers the HTTP metrics in `registry` (once per process).
    pub fn new(registry: Registry, readiness: Readiness) -> prometheus::Result<Self> {
        let http_metrics = web::Data::new(HttpMetrics::register(&registry)?);
        Ok(Self {
            registry: web::Data::new(registry),
            http_metrics,
            readiness: web::Data::new(readiness),
        })
    }

    /// An app with request ids, HTTP metrics, `/health`, `/live` and `/metrics`; the service
    /// adds its own data and routes.
    pub fn app(
        self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        App::new()
            .wrap(from_fn(track_http))
            .wrap(from_fn(assign_request_id))
            .app_data(self.http_metrics)
            .app_data(self.registry)
            .app_data(self.readiness)
            .configure(configure)
    }
}

/// Request counts and latencies by route pattern (never the raw path: ids would explode the
/// label space), method and status.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            requests: prometheus::register_int_counter_vec_with_registry!(
                "http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
                registry
            )?,
            duration: prometheus::register_histogram_vec_with_registry!(
                "http_request_duration_seconds",
                "HTTP request latency",
                &["route", "method"],
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
                registry
            )?,
        })
    }
}

/// Middleware (`actix_web::middleware::from_fn(track_http)`) recording [`HttpMetrics`]; the app
/// must hold `Data<HttpMetrics>`.
pub async fn track_http(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &response {
            Ok(res) => res.status().as_u16().to_string(),
            Err(err) => err.as_response_error().status_code().as_u16().to_string(),
        };
        metrics
            .requests
            .with_label_values(&[&route, &method, &status])
            .inc();
        metrics
            .duration
            .with_label_values(&[&route, &method])
            .observe(started.elapsed().as_secs_f64());
    }
    response
}

/// The `/health` + `/metrics` server of a worker (services with their own HTTP API mount
/// [`configure`] instead).
pub struct OpsServer {
    listener: TcpListener,
    registry: Registry,
    readiness: Readiness,
}

impl OpsServer {
    pub fn bind(
        host: &str,
        port: u16,
        registry: Registry,
        readiness: Readiness,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            listener: listen(host, port)?,
            registry,
            readiness,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let registry = web::Data::new(self.registry);
        let readiness = web::Data::new(self.readiness);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(registry.clone())
                .app_data(readiness.clone())
                .configure(configure)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(5)
        .listen(self.listener)?
        .run();
        stop_on(server, shutdown).await
    }
}

/// A listener on `host:port` (port 0: any free port), with an error that names the address.
pub fn listen(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port}: {e}"))
}

/// Runs an actix server until it ends or `shutdown` is cancelled (then stops it gracefully).
pub async fn stop_on(
    server: actix_web::dev::Server,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let stopper = tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    let result = server.await;
    stopper.abort();
    Ok(result?)
}

/// The `healthcheck` subcommand: asks the local service's `/health`, so images need no curl.
pub async fn healthcheck(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/health");
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
    Ok(())
}
