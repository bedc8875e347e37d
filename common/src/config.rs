//! Typed, layered configuration shared by every service.
//!
//! Layers, last wins: compiled-in defaults → optional TOML file → `DUMA_*` environment variables
//! (`__` separates nesting levels: `DUMA_DATABASE__MAX_CONNECTIONS=32`). `SUPERADMIN_PASSWORD`
//! is also read, as Rafiki did. Any of them may instead name a file holding the value, with a
//! `_FILE` suffix (`DUMA_DATABASE__URL_FILE=/run/secrets/database_url`): how Docker and
//! Kubernetes hand secrets to a process. Secrets are [`SecretString`]s, so `Debug` never prints
//! them.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Environment variable prefix of every setting.
pub const ENV_PREFIX: &str = "DUMA_";

/// JWT secrets that must never protect a real deployment.
const WELL_KNOWN_SECRETS: &[&str] = &[
    "",
    "secret",
    "changeme",
    "change-me",
    "rafiki",
    "duma",
    // MinIO's default root password.
    "minioadmin",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    /// Development mode: allows well-known secrets and other unsafe shortcuts.
    pub dev_mode: bool,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub object_store: ObjectStoreSettings,
    pub admin: AdminSettings,
    pub predictor: PredictorSettings,
    pub advisor_worker: WorkerSettings,
    pub train_worker: WorkerSettings,
    pub inference_worker: WorkerSettings,
    pub python: PythonSettings,
    pub onnx: OnnxSettings,
}

/// How ONNX models are served.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnnxSettings {
    /// The ONNX Runtime shared library, loaded at run time by the admin (to check uploads) and
    /// the workers (to serve): the pinned PyPI wheel's, which `scripts/setup` unpacks into
    /// `.onnxruntime/`. Without it, ONNX uploads are refused in words; nothing else changes.
    pub runtime_path: PathBuf,
    /// The executable the admin runs as `<it> inspect-onnx --library <runtime_path>` to load an
    /// uploaded ONNX file in a child process (so a file that crashes ONNX Runtime's parser cannot
    /// take the admin down). Default: the running admin binary itself.
    pub inspector: Option<PathBuf>,
}

impl Default for OnnxSettings {
    fn default() -> Self {
        Self {
            runtime_path: PathBuf::from("./.onnxruntime/libonnxruntime.so"),
            inspector: None,
        }
    }
}

/// How workers run Python templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PythonSettings {
    /// The interpreter virtualenvs are created from.
    pub interpreter: PathBuf,
    /// The folder holding the `duma` SDK package (the repository's `python/`).
    pub sdk_path: PathBuf,
    /// Where template environments are built: one folder shared by every worker of a host, so
    /// what training installed, serving reuses.
    pub env_dir: PathBuf,
    /// How template processes (runners and pip) are confined (`docs/security.md`).
    pub sandbox: SandboxSettings,
}

impl Default for PythonSettings {
    fn default() -> Self {
        Self {
            // The system's Python: its prefix is readable by the sandbox's unprivileged uids
            // (an interpreter under a private home, such as pyenv's in /root, is not).
            interpreter: PathBuf::from("/usr/bin/python3"),
            sdk_path: PathBuf::from("./python"),
            env_dir: PathBuf::from("./.duma/envs"),
            sandbox: SandboxSettings::default(),
        }
    }
}

/// Whether model code runs confined.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Every template process runs in a bubblewrap sandbox; where one cannot be made, Python
    /// templates are refused with the reason.
    Bubblewrap,
    /// Template processes run unconfined, as the worker: only for a single trusted user.
    Off,
}

/// The confinement and limits of every process that runs model code (`docs/security.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    /// The bubblewrap program.
    pub bwrap: PathBuf,
    /// A worker running as root runs each template process as a uid of its own, drawn from
    /// `uid_base .. uid_base + uid_count` (uids no account uses).
    pub uid_base: u32,
    pub uid_count: u32,
    /// Address space of one template process, in MiB.
    pub memory_mib: u64,
    /// CPU seconds of one training process (serving processes are bounded per call instead).
    pub train_cpu_seconds: u64,
    /// Processes and threads of one sandbox.
    pub processes: u64,
    /// Open files of one template process.
    pub open_files: u64,
    /// The largest file a template process may write, in MiB (its saved parameters too).
    pub file_mib: u64,
    /// The template's scratch space (its working directory, `HOME` and `/tmp`), in MiB of memory.
    pub scratch_mib: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            mode: SandboxMode::Bubblewrap,
            bwrap: PathBuf::from("bwrap"),
            uid_base: 200_000,
            uid_count: 10_000,
            memory_mib: 4096,
            train_cpu_seconds: 4 * 3600,
            processes: 256,
            open_files: 1024,
            file_mib: 2048,
            scratch_mib: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal (containers), pretty otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directives; `RUST_LOG` overrides them.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// libpq-style URL or key/value string (`host=/run/postgresql dbname=duma`).
    pub url: SecretString,
    pub max_connections: usize,
    pub connect_timeout_ms: u64,
    /// How long a caller waits for a free pooled connection before failing.
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    /// Passwords `duma-admin migrate` gives the services' own roles (`crate::accounts`); only
    /// the migration reads them. A role without one cannot log in.
    pub role_passwords: RolePasswords,
}

/// One password per service role (`DUMA_DATABASE__ROLE_PASSWORDS__PREDICTOR`, …).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolePasswords {
    pub admin: Option<SecretString>,
    pub predictor: Option<SecretString>,
    pub advisor_worker: Option<SecretString>,
    pub train_worker: Option<SecretString>,
    pub inference_worker: Option<SecretString>,
}

impl RolePasswords {
    pub fn of(&self, account: crate::accounts::Account) -> Option<&SecretString> {
        use crate::accounts::Account;
        match account {
            Account::Admin => self.admin.as_ref(),
            Account::Predictor => self.predictor.as_ref(),
            Account::AdvisorWorker => self.advisor_worker.as_ref(),
            Account::TrainWorker => self.train_worker.as_ref(),
            Account::InferenceWorker => self.inference_worker.as_ref(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://duma@localhost:5432/duma"),
            max_connections: 16,
            connect_timeout_ms: 5_000,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            role_passwords: RolePasswords::default(),
        }
    }
}

impl DatabaseSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db` or `redis+unix:///path/to/socket`.
    pub url: SecretString,
    /// Prepended to every key and channel, so several deployments can share one Redis.
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    /// Response timeout of the shared (non-blocking) connection.
    pub response_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("redis://localhost:6379"),
            key_prefix: "duma:".into(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStoreKind {
    Local,
    /// S3-compatible storage (AWS S3, MinIO, Ceph RGW, Garage, SeaweedFS).
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreSettings {
    pub kind: ObjectStoreKind,
    /// Root folder of the local store.
    pub root: PathBuf,
    /// Bucket of the S3 store (it must exist; Duma does not create it).
    pub bucket: String,
    /// Key prefix inside the bucket, so that several installations can share one bucket.
    pub prefix: String,
    /// URL of an S3-compatible server; empty: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: String,
    /// Empty: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// Empty: `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// Empty: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: SecretString,
}

impl Default for ObjectStoreSettings {
    fn default() -> Self {
        Self {
            kind: ObjectStoreKind::Local,
            root: PathBuf::from("./.duma/objects"),
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: SecretString::from(String::new()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    pub host: String,
    pub port: u16,
    pub jwt_secret: SecretString,
    pub token_ttl_hours: u64,
    pub superadmin_email: String,
    /// Also read from `SUPERADMIN_PASSWORD`.
    pub superadmin_password: SecretString,
    pub max_dataset_bytes: u64,
    pub max_model_file_bytes: u64,
    /// `host:port[/path]` the predictors are reached at; inference jobs append their path.
    pub predictor_host: String,
    /// Ports of nginx (`FIRST-LAST`) that each give one live inference job a port of its own, so
    /// its `predictor_host` is `host:port` and `http://{predictor_host}/predict` reaches it. Empty:
    /// no own ports; `predictor_host` is then `host:port/inference_jobs/<id>`.
    pub inference_job_ports: String,
    pub dataset_url_timeout_ms: u64,
    /// Let `dataset_url` reach loopback and private addresses (off: no SSRF into the network).
    pub dataset_url_allow_private: bool,
    /// Trials of one model that may run at once (capped by the job's trial budget).
    pub trial_parallelism: u32,
    /// How often the reconciler looks for dead workers and finished jobs.
    pub reconcile_interval_ms: u64,
    /// Failed logins of one account within `login_window_secs` before it is locked out (429).
    pub login_failures_per_account: usize,
    /// Failed logins from one client address within `login_window_secs` before it is locked out.
    pub login_failures_per_address: usize,
    pub login_window_secs: u64,
    /// Password hashes computed at once (each takes ~19 MiB); more wait their turn.
    pub password_hashing_concurrency: usize,
    /// Per-user quotas (the superadmin has none): bytes of datasets and template files stored,
    /// train jobs and inference jobs live at once.
    pub quota_stored_bytes: u64,
    pub quota_live_train_jobs: u32,
    pub quota_live_inference_jobs: u32,
    /// Trials of one user's jobs running at once on the whole platform (train workers read it
    /// when they claim work), so one user cannot take every train worker.
    pub quota_concurrent_trials: u32,
    /// The Prometheus that scrapes the predictors (`http://host:port`): deployments' request
    /// rates, latencies and errors over time are read from it. Empty: not offered (503).
    pub prometheus_url: String,
}

/// At most this many ports in `admin.inference_job_ports` (nginx listens on each).
pub const MAX_INFERENCE_JOB_PORTS: usize = 1000;

/// A port range `FIRST-LAST` (or one port) of at most [`MAX_INFERENCE_JOB_PORTS`] ports; `None`
/// when `text` is empty; else why it is wrong.
pub fn port_range(text: &str) -> Result<Option<RangeInclusive<u16>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let malformed = || format!("`{text}` is not a port range like 30000-30019");
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let first: u16 = first.trim().parse().map_err(|_| malformed())?;
    let last: u16 = last.trim().parse().map_err(|_| malformed())?;
    if first == 0 || first > last {
        return Err(malformed());
    }
    if usize::from(last - first) >= MAX_INFERENCE_JOB_PORTS {
        return Err(format!(
            "`{text}` holds more than {MAX_INFERENCE_JOB_PORTS} ports"
        ));
    }
    Ok(Some(first..=last))
}

impl AdminSettings {
    /// `inference_job_ports` parsed (see [`port_range`]).
    pub fn inference_job_port_range(&self) -> Result<Option<RangeInclusive<u16>>, String> {
        port_range(&self.inference_job_ports)
    }

    /// The host part of `predictor_host` (its port and path removed): where inference jobs' own
    /// ports are reached.
    pub fn predictor_hostname(&self) -> &str {
        let host = self.predictor_host.split('/').next().unwrap_or_default();
        match host.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                name
            }
            _ => host,
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3000,
            jwt_secret: SecretString::from(""),
            token_ttl_hours: 12,
            superadmin_email: "superadmin@rafiki".into(),
            superadmin_password: SecretString::from(""),
            max_dataset_bytes: 1 << 30,
            max_model_file_bytes: 64 << 20,
            predictor_host: "localhost:8080".into(),
            inference_job_ports: String::new(),
            dataset_url_timeout_ms: 60_000,
            dataset_url_allow_private: false,
            trial_parallelism: 2,
            reconcile_interval_ms: 1_000,
            login_failures_per_account: 10,
            login_failures_per_address: 50,
            login_window_secs: 300,
            password_hashing_concurrency: 2,
            quota_stored_bytes: 20 << 30,
            quota_live_train_jobs: 10,
            quota_live_inference_jobs: 10,
            quota_concurrent_trials: 8,
            prometheus_url: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredictorSettings {
    pub host: String,
    pub port: u16,
    /// How long a query waits for the inference workers' replies.
    pub deadline_ms: u64,
    /// Requests in flight per inference job before new ones get 503.
    pub max_in_flight_per_job: usize,
    /// Largest predict body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most queries one predict request may carry; more get 413.
    pub max_queries_per_request: usize,
    /// A unix socket to serve on too, for a front on the same machine (`duma up`'s nginx): the
    /// same routes as the port, without TCP's cost per message. Unset: the port only.
    pub socket: Option<PathBuf>,
}

impl Default for PredictorSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3100,
            deadline_ms: 5_000,
            max_in_flight_per_job: 1024,
            max_body_bytes: 4 << 20,
            max_queries_per_request: 1_000,
            socket: None,
        }
    }
}

/// Settings common to the worker pools; they serve only `/health` and `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    pub host: String,
    pub port: u16,
    pub heartbeat_interval_ms: u64,
    /// A worker whose lease is not renewed for this long is considered dead.
    pub lease_ttl_ms: u64,
    /// Work held at once: sub jobs advised, trials trained, or models served
    /// (0: the pool's default — 256, 1 and 4).
    pub capacity: usize,
    /// Where datasets fetched from the object store are cached (by checksum).
    pub cache_dir: PathBuf,
    /// A trial (or model load) running longer than this is abandoned as ERRORED.
    pub task_timeout_secs: u64,
    /// An essential loop (serving, claiming, heartbeat) that makes no progress for this long
    /// fails `/health` and ends the process, so its supervisor restarts it.
    pub stall_timeout_ms: u64,
    /// Inference workers only: the deployment service levels whose models this worker serves
    /// (e.g. `["production"]`); absent: every level. Inference jobs started outside a
    /// deployment are `development`.
    pub service_levels: Option<Vec<String>>,
    /// Train and inference workers: the GPUs this worker schedules work on. `auto`: every GPU
    /// the NVIDIA driver reports (none where it is absent); `none`; or device indices, `0,1`
    /// (to split a machine's GPUs between workers).
    pub gpus: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 0,
            heartbeat_interval_ms: 1_000,
            lease_ttl_ms: 5_000,
            capacity: 0,
            cache_dir: PathBuf::from("./.duma/cache"),
            task_timeout_secs: 3_600,
            stall_timeout_ms: 60_000,
            service_levels: None,
            gpus: "auto".into(),
        }
    }
}

impl WorkerSettings {
    /// The service levels this (inference) worker serves.
    pub fn served_levels(&self) -> Vec<String> {
        self.service_levels.clone().unwrap_or_else(|| {
            crate::db::deployments::SERVICE_LEVELS
                .iter()
                .map(|level| (*level).to_owned())
                .collect()
        })
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout_secs)
    }
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }
}

impl Settings {
    /// Loads the layers: defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        let figment = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    // `_FILE` variables are read below.
                    .filter(|key| !key.as_str().to_ascii_lowercase().ends_with("_file"))
                    .split("__")
                    // `DUMA_ADMIN` and `DUMA_PREDICTOR` are the `duma` command's URLs for the
                    // user (no `__`): not the services' `admin` and `predictor` sections. The
                    // others are the test kit's.
                    .ignore(&[
                        "test_database_url",
                        "test_redis_url",
                        "test_moto_server",
                        "admin",
                        "predictor",
                    ]),
            )
            .merge(
                Env::raw()
                    .only(&["SUPERADMIN_PASSWORD"])
                    .map(|_| "admin.superadmin_password".into()),
            );
        let mut figment = figment;
        for (key, value) in values_from_files(std::env::vars_os())? {
            figment = figment.merge(Serialized::default(&key, value));
        }
        let mut settings: Settings = figment.extract().map_err(describe_figment_error)?;
        settings.apply_worker_defaults();
        settings.validate()?;
        Ok(settings)
    }

    fn apply_worker_defaults(&mut self) {
        for (worker, port, capacity) in [
            (&mut self.advisor_worker, 3201, 256),
            (&mut self.train_worker, 3202, 1),
            (&mut self.inference_worker, 3203, 4),
        ] {
            if worker.port == 0 {
                worker.port = port;
            }
            if worker.capacity == 0 {
                worker.capacity = capacity;
            }
        }
    }

    /// Checks what serde cannot: ranges, non-empty names, URL syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, why: &str| {
            Err(ConfigError::Invalid(format!(
                "{} ({}): {why}",
                env_var_name(key),
                key
            )))
        };
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self
            .database
            .url
            .expose_secret()
            .parse::<tokio_postgres::Config>()
            .is_err()
        {
            return invalid(
                "database.url",
                "is not a valid PostgreSQL connection string",
            );
        }
        if redis::Client::open(self.redis.url.expose_secret()).is_err() {
            return invalid("redis.url", "is not a valid Redis URL");
        }
        if self.redis.key_prefix.is_empty()
            || !self.redis.key_prefix.chars().all(|c| c.is_ascii_graphic())
        {
            return invalid(
                "redis.key_prefix",
                "must be non-empty printable ASCII without spaces",
            );
        }
        if let Err(why) = self.admin.inference_job_port_range() {
            return invalid("admin.inference_job_ports", &why);
        }
        if !self.admin.inference_job_ports.is_empty() && self.admin.predictor_host.contains('/') {
            return invalid(
                "admin.predictor_host",
                "must be `host[:port]` without a path when inference jobs have ports of their own",
            );
        }
        if !self.admin.prometheus_url.is_empty()
            && !["http://", "https://"].iter().any(|scheme| {
                self.admin
                    .prometheus_url
                    .strip_prefix(scheme)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
            })
        {
            return invalid(
                "admin.prometheus_url",
                "must be an http(s) URL such as http://localhost:9090",
            );
        }
        if self.admin.trial_parallelism == 0 {
            return invalid("admin.trial_parallelism", "must be at least 1");
        }
        if self.predictor.deadline_ms == 0 {
            return invalid("predictor.deadline_ms", "must be positive");
        }
        if self.admin.login_failures_per_account == 0 {
            return invalid("admin.login_failures_per_account", "must be at least 1");
        }
        if self.admin.login_failures_per_address == 0 {
            return invalid("admin.login_failures_per_address", "must be at least 1");
        }
        if self.admin.quota_concurrent_trials == 0 {
            return invalid("admin.quota_concurrent_trials", "must be at least 1");
        }
        if self.admin.quota_live_train_jobs == 0 || self.admin.quota_live_inference_jobs == 0 {
            return invalid(
                "admin.quota_live_train_jobs",
                "and quota_live_inference_jobs must be at least 1",
            );
        }
        if self.admin.password_hashing_concurrency == 0 {
            return invalid("admin.password_hashing_concurrency", "must be at least 1");
        }
        if self.predictor.max_body_bytes < 1024 {
            return invalid("predictor.max_body_bytes", "must be at least 1024");
        }
        if self.predictor.max_queries_per_request == 0 {
            return invalid("predictor.max_queries_per_request", "must be at least 1");
        }
        if self.predictor.max_in_flight_per_job == 0 {
            return invalid("predictor.max_in_flight_per_job", "must be at least 1");
        }
        for (name, worker) in [
            ("advisor_worker", &self.advisor_worker),
            ("train_worker", &self.train_worker),
            ("inference_worker", &self.inference_worker),
        ] {
            if worker.heartbeat_interval_ms == 0
                || worker.heartbeat_interval_ms >= worker.lease_ttl_ms
            {
                return invalid(
                    &format!("{name}.heartbeat_interval_ms"),
                    "must be positive and shorter than lease_ttl_ms",
                );
            }
            if name != "inference_worker" && worker.service_levels.is_some() {
                return invalid(
                    &format!("{name}.service_levels"),
                    "is for inference workers only",
                );
            }
            if let Some(levels) = &worker.service_levels
                && (levels.is_empty()
                    || levels
                        .iter()
                        .any(|l| !crate::db::deployments::SERVICE_LEVELS.contains(&l.as_str())))
            {
                return invalid(
                    &format!("{name}.service_levels"),
                    "must list some of development, staging, production",
                );
            }
            if worker.stall_timeout_ms < 1_000 {
                return invalid(
                    &format!("{name}.stall_timeout_ms"),
                    "must be at least 1000 (one second)",
                );
            }
            if let Err(why) = crate::worker::gpus::GpuSelection::parse(&worker.gpus) {
                return invalid(&format!("{name}.gpus"), &why);
            }
        }
        let sandbox = &self.python.sandbox;
        for (key, value) in [
            ("python.sandbox.memory_mib", sandbox.memory_mib),
            (
                "python.sandbox.train_cpu_seconds",
                sandbox.train_cpu_seconds,
            ),
            ("python.sandbox.processes", sandbox.processes),
            ("python.sandbox.open_files", sandbox.open_files),
            ("python.sandbox.file_mib", sandbox.file_mib),
            ("python.sandbox.scratch_mib", sandbox.scratch_mib),
            ("python.sandbox.uid_count", u64::from(sandbox.uid_count)),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if sandbox.uid_base < 1000 || sandbox.uid_base.checked_add(sandbox.uid_count).is_none() {
            return invalid(
                "python.sandbox.uid_base",
                "must be at least 1000, and uid_base + uid_count must fit in 32 bits",
            );
        }
        if self.object_store.kind == ObjectStoreKind::S3 {
            let store = &self.object_store;
            if store.bucket.is_empty() {
                return invalid(
                    "object_store.bucket",
                    "is required when object_store.kind is s3",
                );
            }
            if !store.endpoint.is_empty()
                && !reqwest::Url::parse(&store.endpoint)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            {
                return invalid(
                    "object_store.endpoint",
                    "must be an http:// or https:// URL with a host",
                );
            }
            if store.prefix.starts_with('/') || store.prefix.split('/').any(|part| part == "..") {
                return invalid(
                    "object_store.prefix",
                    "must be a relative key prefix without `..` (like `duma/prod`)",
                );
            }
        }
        Ok(())
    }

    /// The admin refuses to run with guessable secrets outside dev mode: the token signing key
    /// (empty, well-known or under 16 characters), and a well-known superadmin, PostgreSQL or
    /// Redis password.
    pub fn validate_secrets(&self) -> Result<(), ConfigError> {
        if self.dev_mode {
            return Ok(());
        }
        let refuse = |key: &str, why: &str| {
            Err(ConfigError::Invalid(format!(
                "{} ({key}): {why} (or DUMA_DEV_MODE=true for local experiments)",
                env_var_name(key)
            )))
        };
        let secret = self.admin.jwt_secret.expose_secret();
        if is_well_known(secret) || secret.len() < 16 {
            return refuse(
                "admin.jwt_secret",
                "set a random secret of at least 16 characters",
            );
        }
        if is_well_known(self.admin.superadmin_password.expose_secret())
            && !self.admin.superadmin_password.expose_secret().is_empty()
        {
            return Err(ConfigError::Invalid(
                "SUPERADMIN_PASSWORD: a well-known password is refused outside dev mode".into(),
            ));
        }
        let database_password = self
            .database
            .url
            .expose_secret()
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|config| config.get_password().map(<[u8]>::to_vec));
        if let Some(password) = database_password
            && is_well_known(&String::from_utf8_lossy(&password))
        {
            return refuse("database.url", "the password is a well-known one");
        }
        for account in crate::accounts::Account::ALL {
            if let Some(password) = self.database.role_passwords.of(account) {
                let password = password.expose_secret();
                if is_well_known(password) || password.len() < 16 {
                    let key = format!(
                        "database.role_passwords.{}",
                        account.name().replace('-', "_")
                    );
                    return refuse(&key, "set a random password of at least 16 characters");
                }
            }
        }
        let redis_password = redis::Client::open(self.redis.url.expose_secret())
            .ok()
            .and_then(|client| {
                client
                    .get_connection_info()
                    .redis_settings()
                    .password()
                    .map(str::to_owned)
            });
        if let Some(password) = redis_password
            && is_well_known(&password)
        {
            return refuse("redis.url", "the password is a well-known one");
        }
        let s3_secret = self.object_store.secret_access_key.expose_secret();
        if self.object_store.kind == ObjectStoreKind::S3
            && !s3_secret.is_empty()
            && is_well_known(s3_secret)
        {
            return refuse(
                "object_store.secret_access_key",
                "the key is a well-known one",
            );
        }
        Ok(())
    }
}

/// Placeholders and defaults an attacker would try first.
fn is_well_known(secret: &str) -> bool {
    WELL_KNOWN_SECRETS.contains(&secret.to_ascii_lowercase().as_str())
}

/// The settings given as `DUMA_<KEY>_FILE=path` (or `SUPERADMIN_PASSWORD_FILE`): `(key path,
/// the file's content without its final newline)`. Naming a setting both ways is refused.
fn values_from_files(
    variables: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let variables: Vec<(String, std::ffi::OsString)> = variables
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .collect();
    let mut values = Vec::new();
    for (name, path) in &variables {
        let Some(direct) = name.strip_suffix("_FILE") else {
            continue;
        };
        let key = if direct == "SUPERADMIN_PASSWORD" {
            "admin.superadmin_password".to_owned()
        } else if let Some(rest) = direct.strip_prefix(ENV_PREFIX)
            && rest.contains("__")
        {
            rest.to_ascii_lowercase().replace("__", ".")
        } else {
            continue;
        };
        if variables.iter().any(|(other, _)| other == direct) {
            return Err(ConfigError::Invalid(format!(
                "{direct} and {name} are both set: set one of them"
            )));
        }
        let path = Path::new(path);
        let content = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!("{name}: cannot read {}: {e}", path.display()))
        })?;
        let value = content
            .strip_suffix('\n')
            .map(|v| v.strip_suffix('\r').unwrap_or(v))
            .unwrap_or(&content);
        values.push((key, value.to_owned()));
    }
    Ok(values)
}

/// `admin.port` → `DUMA_ADMIN__PORT`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn describe_figment_error(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.to_lowercase().contains("environment"));
            let source = match (&e.metadata, from_env) {
                (_, true) if key == "admin.superadmin_password" => "SUPERADMIN_PASSWORD".to_owned(),
                (_, true) => env_var_name(&key),
                (Some(m), false) => format!("key `{key}` in {}", m.name),
                (None, false) => format!("key `{key}`"),
            };
            format!("{source}: {}", e.kind)
        })
        .collect();
    ConfigError::Invalid(messages.join("; "))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_load_without_any_source() {
        Jail::expect_with(|_| {
            let settings = Settings::load(None).expect("defaults are valid");
            assert_eq!(settings.admin.port, 3000);
            assert_eq!(settings.redis.key_prefix, "duma:");
            assert_eq!(settings.train_worker.port, 3202);
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "duma.toml",
                "[admin]\nport = 4000\nmax_dataset_bytes = 10\n",
            )?;
            jail.set_env("DUMA_ADMIN__PORT", "5000");
            jail.set_env("SUPERADMIN_PASSWORD", "hunter2-hunter2");
            let settings = Settings::load(Some(Path::new("duma.toml"))).expect("valid");
            assert_eq!(settings.admin.port, 5000);
            assert_eq!(settings.admin.max_dataset_bytes, 10);
            assert_eq!(
                settings.admin.superadmin_password.expose_secret(),
                "hunter2-hunter2"
            );
            Ok(())
        });
    }

    #[test]
    fn wrong_type_in_environment_names_the_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_ADMIN__PORT", "three thousand");
            let err = Settings::load(None)
                .expect_err("a port must be a number")
                .to_string();
            assert!(err.contains("DUMA_ADMIN__PORT"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_nested_key_is_rejected_by_name() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_DATABASE__MAX_CONECTIONS", "3");
            let err = Settings::load(None)
                .expect_err("typo must fail")
                .to_string();
            assert!(err.contains("max_conections"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_setting_can_come_from_a_file_as_docker_secrets_give_it() {
        Jail::expect_with(|jail| {
            jail.create_file("url", "postgres://duma:from-a-file@db/duma\n")?;
            jail.create_file("password", "superadmin-from-a-file")?;
            jail.set_env("DUMA_DATABASE__URL_FILE", "url");
            jail.set_env("SUPERADMIN_PASSWORD_FILE", "password");
            let settings = Settings::load(None).expect("loads");
            assert_eq!(
                settings.database.url.expose_secret(),
                "postgres://duma:from-a-file@db/duma"
            );
            assert_eq!(
                settings.admin.superadmin_password.expose_secret(),
                "superadmin-from-a-file"
            );

            jail.set_env("DUMA_DATABASE__URL", "postgres://duma:direct@db/duma");
            let error = Settings::load(None).unwrap_err().to_string();
            assert!(
                error.contains("DUMA_DATABASE__URL and DUMA_DATABASE__URL_FILE"),
                "{error}"
            );
            jail.clear_env();
            jail.set_env("DUMA_REDIS__URL_FILE", "/nonexistent/secret");
            let error = Settings::load(None).unwrap_err().to_string();
            assert!(
                error.contains("DUMA_REDIS__URL_FILE") && error.contains("/nonexistent/secret"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn an_s3_store_needs_a_bucket_a_usable_endpoint_and_a_relative_prefix() {
        for (variables, named) in [
            (&[][..], "DUMA_OBJECT_STORE__BUCKET"),
            (
                &[("BUCKET", "b"), ("ENDPOINT", "minio:9000")][..],
                "DUMA_OBJECT_STORE__ENDPOINT",
            ),
            (
                &[("BUCKET", "b"), ("ENDPOINT", "ftp://minio")][..],
                "DUMA_OBJECT_STORE__ENDPOINT",
            ),
            (
                &[("BUCKET", "b"), ("PREFIX", "/abs")][..],
                "DUMA_OBJECT_STORE__PREFIX",
            ),
            (
                &[("BUCKET", "b"), ("PREFIX", "a/../b")][..],
                "DUMA_OBJECT_STORE__PREFIX",
            ),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env("DUMA_OBJECT_STORE__KIND", "s3");
                for (key, value) in variables {
                    jail.set_env(format!("DUMA_OBJECT_STORE__{key}"), value);
                }
                let err = Settings::load(None)
                    .expect_err("an unusable S3 store was accepted")
                    .to_string();
                assert!(err.contains(named), "{variables:?}: {err}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_OBJECT_STORE__KIND", "s3");
            jail.set_env("DUMA_OBJECT_STORE__BUCKET", "duma");
            jail.set_env("DUMA_OBJECT_STORE__ENDPOINT", "http://minio:9000");
            jail.set_env("DUMA_OBJECT_STORE__PREFIX", "prod/");
            jail.set_env("DUMA_OBJECT_STORE__SECRET_ACCESS_KEY", "s3cr3t");
            let settings = Settings::load(None).expect("a usable S3 store");
            assert_eq!(settings.object_store.endpoint, "http://minio:9000");
            assert_eq!(
                settings.object_store.secret_access_key.expose_secret(),
                "s3cr3t"
            );
            Ok(())
        });
    }

    #[test]
    fn invalid_value_fails_validation_with_the_variable_name() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_DATABASE__MAX_CONNECTIONS", "0");
            let err = Settings::load(None)
                .expect_err("zero connections")
                .to_string();
            assert!(err.contains("DUMA_DATABASE__MAX_CONNECTIONS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn well_known_secrets_are_refused_outside_dev_mode() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_ADMIN__JWT_SECRET", "secret");
            let settings = Settings::load(None).expect("loads");
            let error = settings.validate_secrets().unwrap_err().to_string();
            assert!(error.contains("DUMA_ADMIN__JWT_SECRET"), "{error}");

            jail.set_env("DUMA_ADMIN__JWT_SECRET", "a-random-secret-of-some-length");
            assert!(Settings::load(None).unwrap().validate_secrets().is_ok());
            for (name, value, named) in [
                ("SUPERADMIN_PASSWORD", "change-me", "SUPERADMIN_PASSWORD"),
                (
                    "DUMA_DATABASE__URL",
                    "postgres://duma:change-me@db/duma",
                    "DUMA_DATABASE__URL",
                ),
                (
                    "DUMA_REDIS__URL",
                    "redis://:changeme@redis:6379",
                    "DUMA_REDIS__URL",
                ),
            ] {
                jail.set_env(name, value);
                let error = Settings::load(None)
                    .unwrap()
                    .validate_secrets()
                    .unwrap_err();
                assert!(error.to_string().contains(named), "{name}: {error}");
                jail.set_env("DUMA_DEV_MODE", "true");
                assert!(Settings::load(None).unwrap().validate_secrets().is_ok());
                jail.clear_env();
                jail.set_env("DUMA_ADMIN__JWT_SECRET", "a-random-secret-of-some-length");
            }
            jail.set_env("DUMA_DATABASE__URL", "postgres://duma:Xk3v9q2LmT8s@db/duma");
            jail.set_env("DUMA_REDIS__URL", "redis://:Xk3v9q2LmT8s@redis:6379");
            assert!(Settings::load(None).unwrap().validate_secrets().is_ok());
            jail.set_env("DUMA_OBJECT_STORE__KIND", "s3");
            jail.set_env("DUMA_OBJECT_STORE__BUCKET", "duma");
            jail.set_env("DUMA_OBJECT_STORE__SECRET_ACCESS_KEY", "minioadmin");
            let error = Settings::load(None)
                .unwrap()
                .validate_secrets()
                .unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("DUMA_OBJECT_STORE__SECRET_ACCESS_KEY"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_ADMIN__JWT_SECRET", "super-secret-value-123");
            let settings = Settings::load(None).expect("loads");
            assert!(!format!("{settings:?}").contains("super-secret-value-123"));
            Ok(())
        });
    }

    #[test]
    fn inference_job_ports_are_a_bounded_range_and_the_host_loses_its_port() {
        let admin = |ports: &str, host: &str| AdminSettings {
            inference_job_ports: ports.into(),
            predictor_host: host.into(),
            ..AdminSettings::default()
        };
        assert_eq!(admin("", "x").inference_job_port_range(), Ok(None));
        assert_eq!(
            admin(" 30000-30019 ", "x").inference_job_port_range(),
            Ok(Some(30000..=30019))
        );
        assert_eq!(
            admin("4000", "x").inference_job_port_range(),
            Ok(Some(4000..=4000))
        );
        for wrong in ["30019-30000", "0-10", "a-b", "30000-", "1-70000", "1-2000"] {
            assert!(
                admin(wrong, "x").inference_job_port_range().is_err(),
                "{wrong}"
            );
        }
        assert_eq!(
            admin("", "localhost:8080").predictor_hostname(),
            "localhost"
        );
        assert_eq!(
            admin("", "predictions.example.com").predictor_hostname(),
            "predictions.example.com"
        );
        assert_eq!(admin("", "[::1]:8080").predictor_hostname(), "[::1]");
        assert_eq!(admin("", "h:80/prefix").predictor_hostname(), "h");
    }

    #[test]
    fn job_ports_need_a_predictor_host_without_a_path() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_ADMIN__INFERENCE_JOB_PORTS", "30000-30009");
            jail.set_env("DUMA_ADMIN__PREDICTOR_HOST", "h:8080/predict-here");
            let err = Settings::load(None).expect_err("a path").to_string();
            assert!(err.contains("DUMA_ADMIN__PREDICTOR_HOST"), "{err}");
            jail.set_env("DUMA_ADMIN__INFERENCE_JOB_PORTS", "9-2");
            let err = Settings::load(None).expect_err("reversed").to_string();
            assert!(err.contains("DUMA_ADMIN__INFERENCE_JOB_PORTS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_command_lines_urls_are_not_the_services_sections() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_ADMIN", "http://localhost:3000");
            jail.set_env("DUMA_PREDICTOR", "http://localhost:8080");
            jail.set_env("DUMA_ADMIN__PORT", "3111");
            jail.set_env("DUMA_DEV_MODE", "true");
            let settings = Settings::load(None).expect("the URLs are ignored");
            assert_eq!(settings.admin.port, 3111);
            Ok(())
        });
    }

    #[test]
    fn only_inference_workers_take_service_levels_and_only_known_ones() {
        Jail::expect_with(|jail| {
            jail.set_env("DUMA_DEV_MODE", "true");
            jail.set_env("DUMA_INFERENCE_WORKER__SERVICE_LEVELS", "[\"production\"]");
            let settings = Settings::load(None).expect("a known level");
            assert_eq!(settings.inference_worker.served_levels(), ["production"]);
            assert_eq!(settings.train_worker.service_levels, None);
            jail.set_env("DUMA_INFERENCE_WORKER__SERVICE_LEVELS", "[\"gold\"]");
            let err = Settings::load(None).expect_err("unknown").to_string();
            assert!(
                err.contains("DUMA_INFERENCE_WORKER__SERVICE_LEVELS"),
                "{err}"
            );
            jail.set_env("DUMA_INFERENCE_WORKER__SERVICE_LEVELS", "[\"production\"]");
            jail.set_env("DUMA_TRAIN_WORKER__SERVICE_LEVELS", "[\"production\"]");
            let err = Settings::load(None)
                .expect_err("not a train worker's")
                .to_string();
            assert!(err.contains("DUMA_TRAIN_WORKER__SERVICE_LEVELS"), "{err}");
            Ok(())
        });
    }
}
