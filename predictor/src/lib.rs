//! The predictor: the stateless HTTP front app users send queries to. Each query fans out to
//! every served trial of its inference job through Redis, replies are awaited under a deadline,
//! and the answers are ensembled. Any number of replicas can run behind nginx.

mod deployments;
mod images;
mod predict;
mod routes;
mod v2;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use actix_web::dev::Server;
use actix_web::{HttpResponse, HttpServer, web};
use duma_common::Settings;
use duma_common::api_error::{ApiError, ErrorCode};
use duma_common::ops::{self, OpsData, Readiness};
use duma_common::redis::Redis;
use duma_common::redis::events::Event;
use duma_common::redis::rpc::RpcClient;
use duma_common::tasks;
use duma_common::worker::{event_feed, next_event};
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::predict::{Limits, PredictMetrics, Predictor};
use crate::routes::RouteTable;

/// A prediction route any web page may call (the dashboard's "try it" box, an app's own page): a
/// prediction key is a header the page's own script sets, never a cookie, so allowing every
/// origin lends a page no credential it does not already hold. The other routes (metadata,
/// health, metrics) stay unreadable to other sites' pages.
fn callable_from_pages(
    path: &str,
    route: actix_web::Route,
) -> impl actix_web::dev::HttpServiceFactory + use<> {
    let cors = actix_cors::Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["POST"])
        .allow_any_header()
        .max_age(3600);
    // Other methods get the same JSON 404 as any unknown route.
    web::resource(path)
        .wrap(cors)
        .route(route)
        .default_service(web::to(not_found))
}

/// Bodies of the routes other than predict (which has its own, configurable limit).
const MAX_OTHER_BODY_BYTES: usize = 64 << 10;

/// The predictor server, bound and ready to run (port 0 picks a free port).
pub struct Application {
    server: Server,
    port: u16,
    predictor: web::Data<Predictor>,
    /// How the RPC client's tasks ended (they run on an HTTP worker).
    rpc_end: tokio::sync::oneshot::Receiver<anyhow::Result<()>>,
    redis: Redis,
    stop: CancellationToken,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = duma_common::db::pool(&settings.database)?;
        let redis = Redis::connect(&settings.redis).await?;
        let listener = ops::listen(&settings.predictor.host, settings.predictor.port)?;
        let port = listener.local_addr()?.port();
        let registry = Registry::new();
        let stop = CancellationToken::new();
        let (rpc, rpc_tasks) = RpcClient::new(
            redis.clone(),
            &format!("predictor-{}", uuid::Uuid::new_v4().simple()),
        );
        let predictor = web::Data::new(Predictor {
            routes: RouteTable::new(pool.clone(), settings.predictor.max_in_flight_per_job),
            deployment_metrics: deployments::DeploymentMetrics::register(&registry)?,
            rpc,
            deadline: Duration::from_millis(settings.predictor.deadline_ms),
            metrics: PredictMetrics::register(&registry)?,
            limits: Limits {
                max_body_bytes: settings.predictor.max_body_bytes,
                max_queries: settings.predictor.max_queries_per_request,
            },
        });
        let ops = OpsData::new(
            registry,
            Readiness {
                postgres: Some(pool),
                redis: Some(redis.clone()),
                liveness: Default::default(),
                pending: Default::default(),
            },
        )?;
        let app_predictor = predictor.clone();
        // The RPC client's writer and reply reader run on the first HTTP worker's thread, with
        // Redis connections of their own made there: on one core a prediction never changes
        // threads in the predictor (two wake-ups fewer per request; docs/serving.md has the
        // figures). Their end (or that worker's) stops the predictor.
        let (rpc_ended, rpc_end) = tokio::sync::oneshot::channel();
        let rpc_start = Arc::new(parking_lot::Mutex::new(Some((rpc_tasks, rpc_ended))));
        let rpc_stop = stop.clone();
        let server = HttpServer::new(move || {
            if let Some((rpc_tasks, rpc_ended)) = rpc_start.lock().take() {
                let rpc_stop = rpc_stop.clone();
                actix_web::rt::spawn(async move {
                    let _ = rpc_ended.send(rpc_tasks.run(rpc_stop).await);
                });
            }
            ops.clone()
                .app()
                .app_data(app_predictor.clone())
                .app_data(web::PayloadConfig::new(MAX_OTHER_BODY_BYTES))
                .route("/", web::get().to(index))
                .service(callable_from_pages(
                    "/inference_jobs/{job}/predict",
                    web::post().to(predict::predict),
                ))
                .service(callable_from_pages(
                    "/predict",
                    web::post().to(predict::predict_at_port),
                ))
                .service(callable_from_pages(
                    "/deployments/{name}/predict",
                    web::post().to(deployments::predict),
                ))
                .route("/echo", web::post().to(echo))
                .route("/v2", web::get().to(v2::server_metadata))
                .route("/v2/health/live", web::get().to(v2::live))
                .route("/v2/health/ready", web::get().to(v2::ready))
                .route("/v2/models/{name}", web::get().to(v2::model_metadata))
                .route("/v2/models/{name}/ready", web::get().to(v2::model_ready))
                .service(callable_from_pages(
                    "/v2/models/{name}/infer",
                    web::post().to(v2::infer),
                ))
                .route(
                    "/v2/models/{name}/versions/{version}",
                    web::get().to(v2::model_metadata),
                )
                .route(
                    "/v2/models/{name}/versions/{version}/ready",
                    web::get().to(v2::model_ready),
                )
                .service(callable_from_pages(
                    "/v2/models/{name}/versions/{version}/infer",
                    web::post().to(v2::infer),
                ))
                .default_service(web::to(not_found))
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?;
        let server = match &settings.predictor.socket {
            Some(path) => server.listen_uds(unix_listener(path)?)?,
            None => server,
        };
        let server = server.run();
        Ok(Self {
            server,
            port,
            predictor,
            rpc_end,
            redis,
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`. The HTTP server, the event feed and the listener that keeps the
    /// route table fresh are supervised together: if one ends, the predictor stops.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "predictor listening");
        let stop = self.stop.clone();
        let mut tasks = JoinSet::new();
        let server = self.server;
        let server_stop = stop.clone();
        tasks.spawn(async move {
            ops::stop_on(server, server_stop)
                .await
                .map_err(|e| e.context("http server"))
        });
        let (events, feed) = event_feed(self.redis.clone(), stop.clone());
        let mut receiver = events.subscribe();
        tasks.spawn(async move { feed.run().await.map_err(|e| e.context("event feed")) });
        let rpc_end = self.rpc_end;
        tasks.spawn(async move {
            match rpc_end.await {
                Ok(ended) => ended.map_err(|e| e.context("rpc client")),
                Err(_) => anyhow::bail!("the rpc client ended with its HTTP worker"),
            }
        });
        let predictor = self.predictor.clone();
        let listener_stop = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = listener_stop.cancelled() => return Ok(()),
                    event = next_event(&mut receiver) => match event {
                        Some(event) => {
                            if let Event::InferenceJobStopped { inference_job_id } = &event {
                                predictor.metrics.forget(*inference_job_id);
                            }
                            predictor.routes.on_event(&event);
                        }
                        None => anyhow::bail!("the event feed closed"),
                    },
                }
            }
        });
        // Shutdown ends this task first, which stops the others (the server gracefully).
        tasks.spawn(async move {
            shutdown.cancelled().await;
            Ok(())
        });
        tasks::supervise(tasks, stop).await
    }
}

/// A unix socket to serve on at `path`: one left by an earlier run is replaced (never a file
/// that is not a socket). Anyone who can reach the folder may connect, as anyone on the machine
/// may reach the port: a front running as another user (nginx's workers drop to `nobody` when
/// started as root) must.
fn unix_listener(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(found) if found.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => anyhow::bail!(
            "predictor.socket {} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("predictor.socket {}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on predictor.socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Duma predictor is up.")
}

/// Answers a predict-shaped body without touching Redis or a model: the floor of the HTTP path
/// (nginx → predictor) that benchmarks compare the full path against.
async fn echo(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({"prediction": null, "predictions": [], "bytes": body.len()}))
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::RouteNotFound,
        format!(
            "no route {} {}; predictions go to POST /inference_jobs/<id>/predict",
            req.method(),
            req.path()
        ),
    ))
}

/// Serves predictions until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_left_behind_is_replaced_and_a_file_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictor.sock");
        drop(unix_listener(&path).unwrap());
        // The socket of the run before: replaced, and open to other users' fronts.
        let listener = unix_listener(&path).unwrap();
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o666
        );
        drop(listener);

        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "kept").unwrap();
        let refused = unix_listener(&file).unwrap_err().to_string();
        assert!(refused.contains("is not a socket"), "{refused}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
    }
}
