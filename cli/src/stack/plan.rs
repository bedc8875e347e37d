//! What `duma up` runs: the same topology as deploy/docker-compose.yml, as processes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use duma_common::Settings;
use duma_common::accounts::Account;
use duma_common::process::{
    init_postgres_cluster, postgres_bin_dir, postgres_os_user, redis_socket_args,
};

use super::layout::{DataDir, private_dir};

/// The nginx configuration shared with compose; `listen.conf` and `upstreams.conf` are written
/// next to it.
const NGINX_CONF: &str = include_str!("../../../nginx/nginx.conf");
/// The alert rules shared with compose.
const ALERT_RULES: &str = include_str!("../../../deploy/prometheus/alerts.yml");
/// Unix socket paths longer than this do not fit `sockaddr_un`.
const MAX_SOCKET_PATH: usize = 100;
const MIGRATION_DEADLINE: Duration = Duration::from_secs(120);

pub struct Ports {
    pub admin: u16,
    pub http: u16,
    pub prometheus: u16,
    pub predictor: u16,
    pub worker: u16,
    /// nginx's ports for inference jobs of their own (only with nginx).
    pub inference_jobs: Option<std::ops::RangeInclusive<u16>>,
}

pub struct Replicas {
    pub predictors: u16,
    pub train_workers: u16,
    pub inference_workers: u16,
}

/// Processes start tier by tier and stop in the reverse order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// PostgreSQL and Redis (then the schema migration).
    Stores,
    /// admin, advisor, train and inference workers, predictors.
    Services,
    /// nginx and Prometheus.
    Front,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Stores, Tier::Services, Tier::Front];
}

/// A kind of worker: its Prometheus job (and process name prefix), binary and settings section.
pub struct WorkerKind {
    job: &'static str,
    binary: &'static str,
    section: &'static str,
}

const ADVISOR_WORKER: WorkerKind = WorkerKind {
    job: "advisor-worker",
    binary: "duma-advisor-worker",
    section: "ADVISOR_WORKER",
};
const TRAIN_WORKER: WorkerKind = WorkerKind {
    job: "train-worker",
    binary: "duma-train-worker",
    section: "TRAIN_WORKER",
};
const INFERENCE_WORKER: WorkerKind = WorkerKind {
    job: "inference-worker",
    binary: "duma-inference-worker",
    section: "INFERENCE_WORKER",
};

/// One worker process of the plan.
struct Worker {
    name: String,
    kind: &'static WorkerKind,
    port: u16,
}

/// How to tell that a process serves.
#[derive(Debug, Clone)]
pub enum Ready {
    /// The service's own `/health` on this port answers 200.
    Health(u16),
    /// A PostgreSQL connection string accepts connections.
    Postgres(String),
    /// A unix socket exists.
    Socket(PathBuf),
    /// A TCP port accepts connections.
    Tcp(u16),
    /// An HTTP URL answers 2xx.
    Http(String),
}

/// Which of `duma up`'s own environment a process inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inherit {
    /// Everything (the admin: every `DUMA_*` setting and the secrets).
    All,
    /// Everything but the admin's secrets (the other Duma services).
    AllButAdminSecrets,
    /// Only `PATH` and `LANG` (PostgreSQL, Redis, nginx, Prometheus).
    Minimal,
}

/// Variables only the admin may see.
pub const ADMIN_SECRETS: [&str; 2] = ["SUPERADMIN_PASSWORD", "DUMA_ADMIN__JWT_SECRET"];

/// One process to supervise.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    pub tier: Tier,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub inherit: Inherit,
    /// Set on top of what it inherits.
    pub env: Vec<(String, String)>,
    /// `(uid, gid)` to run as (PostgreSQL when we are root).
    pub user: Option<(u32, u32)>,
    /// The signal that stops it cleanly (also sent if `duma up` dies).
    pub stop_signal: libc::c_int,
    pub ready: Ready,
}

/// The local PostgreSQL `duma up` runs, unless `DUMA_DATABASE__URL` names another.
struct LocalPostgres {
    bin: PathBuf,
    user: Option<(u32, u32)>,
    socket_dir: PathBuf,
    data: PathBuf,
    /// The password of `postgres`, the superuser that owns the schema (only the migration and
    /// `duma up` itself connect as it).
    password: String,
}

impl LocalPostgres {
    /// Connection string of the superuser for `dbname` over the unix socket.
    fn url(&self, dbname: &str) -> String {
        self.url_as("postgres", &self.password, dbname)
    }

    fn url_as(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "host={} port=5432 user={user} password={password} dbname={dbname}",
            self.socket_dir.display()
        )
    }
}

pub struct Plan {
    data_root: PathBuf,
    data: Paths,
    ports: Ports,
    replicas: Replicas,
    bin_dir: PathBuf,
    postgres: Option<LocalPostgres>,
    redis_socket: Option<PathBuf>,
    nginx: Option<PathBuf>,
    prometheus: Option<PathBuf>,
    /// Environment every Duma service gets on top of ours.
    service_env: Vec<(String, String)>,
    /// What each service gets on top of that: its own database role and Redis user, where
    /// `duma up` runs the stores (docs/security.md, "Service accounts").
    account_env: HashMap<Account, Vec<(String, String)>>,
    /// What only the migration gets: the schema owner and the roles' passwords.
    migrate_env: Vec<(String, String)>,
    /// The Redis ACL file: one user per service, the default user off.
    redis_users: String,
    /// What only the admin gets: the token signing key, the superadmin password.
    admin_env: Vec<(String, String)>,
    superadmin_password_file: Option<PathBuf>,
}

/// Folders of the data directory the plan uses.
struct Paths {
    logs: PathBuf,
    cache: PathBuf,
    redis: PathBuf,
    nginx: PathBuf,
    /// The predictors' unix sockets for nginx.
    predictors: PathBuf,
    prometheus: PathBuf,
}

impl Plan {
    pub fn new(
        data: &DataDir,
        ports: Ports,
        replicas: Replicas,
        config_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let workers = 1 + replicas.train_workers + replicas.inference_workers;
        for (option, first, count) in [
            ("--predictor-port", ports.predictor, replicas.predictors),
            ("--worker-port", ports.worker, workers),
        ] {
            anyhow::ensure!(
                first.checked_add(count - 1).is_some(),
                "{option} {first} leaves no room for {count} consecutive ports"
            );
        }
        let bin_dir = std::env::current_exe()
            .context("cannot find the duma executable")?
            .parent()
            .map(Path::to_path_buf)
            .context("the duma executable has no folder")?;
        let user_env: HashMap<String, String> = std::env::vars().collect();
        let is_set = |name: &str| user_env.get(name).is_some_and(|v| !v.is_empty());

        let postgres = if is_set("DUMA_DATABASE__URL") {
            None
        } else {
            let socket_dir = data.path("postgres");
            check_socket_path(&socket_dir.join(".s.PGSQL.5432"))?;
            Some(LocalPostgres {
                bin: postgres_bin_dir().map_err(anyhow::Error::msg)?,
                user: postgres_os_user().map_err(anyhow::Error::msg)?,
                data: socket_dir.join("data"),
                socket_dir,
                password: data.secret("postgres-password")?,
            })
        };
        let redis_socket = if is_set("DUMA_REDIS__URL") {
            None
        } else {
            let socket = data.path("redis").join("redis.sock");
            check_socket_path(&socket)?;
            find_program("redis-server")
                .context("redis-server is not installed (scripts/setup)")?;
            Some(socket)
        };
        let nginx = find_program("nginx");
        if nginx.is_some() {
            check_socket_path(&predictor_socket(&data.path("predictors"), u16::MAX))?;
        }
        let prometheus = find_program("prometheus");

        let mut service_env = Vec::new();
        let mut admin_env = Vec::new();
        let default = |env: &mut Vec<(String, String)>, name: &str, value: String| {
            if !is_set(name) {
                env.push((name.to_owned(), value));
            }
        };
        // Each service its own account, one password for both stores.
        let mut account_env: HashMap<Account, Vec<(String, String)>> = HashMap::new();
        let mut migrate_env = Vec::new();
        let mut redis_users = String::from("user default off\n");
        let key_prefix = Settings::load(config_file.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .redis
            .key_prefix;
        for account in Account::ALL {
            let password = data.secret(&format!("{}-password", account.name()))?;
            let env = account_env.entry(account).or_default();
            if let Some(postgres) = &postgres {
                env.push((
                    "DUMA_DATABASE__URL".into(),
                    postgres.url_as(account.database_role(), &password, "duma"),
                ));
                migrate_env.push((
                    format!(
                        "DUMA_DATABASE__ROLE_PASSWORDS__{}",
                        account.name().replace('-', "_").to_ascii_uppercase()
                    ),
                    password.clone(),
                ));
            }
            if let Some(socket) = &redis_socket {
                let user = account.redis_user();
                env.push((
                    "DUMA_REDIS__URL".into(),
                    format!(
                        "redis+unix://{}?user={user}&pass={password}",
                        socket.display()
                    ),
                ));
                redis_users.push_str(&format!(
                    "user {user} on >{password} {}\n",
                    account.redis_rules(&key_prefix).join(" ")
                ));
            }
        }
        if let Some(postgres) = &postgres {
            migrate_env.push(("DUMA_DATABASE__URL".into(), postgres.url("duma")));
        }
        default(
            &mut service_env,
            "DUMA_OBJECT_STORE__ROOT",
            data.path("objects").display().to_string(),
        );
        // One environment folder for every worker: what training built, serving reuses.
        default(
            &mut service_env,
            "DUMA_PYTHON__ENV_DIR",
            data.path("envs").display().to_string(),
        );
        if let Some(sdk) = python_sdk(&bin_dir) {
            default(
                &mut service_env,
                "DUMA_PYTHON__SDK_PATH",
                sdk.display().to_string(),
            );
        }
        if let Some(library) = onnx_runtime(&bin_dir) {
            default(
                &mut service_env,
                "DUMA_ONNX__RUNTIME_PATH",
                library.display().to_string(),
            );
        }
        default(
            &mut admin_env,
            "DUMA_ADMIN__JWT_SECRET",
            data.secret("jwt-secret")?,
        );
        let superadmin_password_file = if is_set("SUPERADMIN_PASSWORD") {
            None
        } else {
            default(
                &mut admin_env,
                "SUPERADMIN_PASSWORD",
                data.secret("superadmin-password")?,
            );
            Some(data.path("secrets").join("superadmin-password"))
        };
        let predictor_host = match nginx {
            Some(_) => format!("localhost:{}", ports.http),
            None => format!("localhost:{}", ports.predictor),
        };
        default(&mut admin_env, "DUMA_ADMIN__PREDICTOR_HOST", predictor_host);
        // Deployments' traffic over time (the dashboard's charts) comes from our Prometheus.
        if prometheus.is_some() {
            default(
                &mut admin_env,
                "DUMA_ADMIN__PROMETHEUS_URL",
                format!("http://127.0.0.1:{}", ports.prometheus),
            );
        }
        // nginx listens on exactly these ports, so the admin must hand out these.
        if let (Some(_), Some(ports)) = (&nginx, &ports.inference_jobs) {
            admin_env.push((
                "DUMA_ADMIN__INFERENCE_JOB_PORTS".into(),
                format!("{}-{}", ports.start(), ports.end()),
            ));
        }
        if let Some(file) = config_file {
            let file = file
                .canonicalize()
                .with_context(|| format!("config file {}", file.display()))?;
            service_env.push(("DUMA_CONFIG".into(), file.display().to_string()));
        }

        Ok(Self {
            data_root: data.root().to_path_buf(),
            data: Paths {
                logs: data.logs().to_path_buf(),
                cache: data.path("cache"),
                redis: data.path("redis"),
                nginx: data.path("nginx"),
                predictors: data.path("predictors"),
                prometheus: data.path("prometheus"),
            },
            ports,
            replicas,
            bin_dir,
            postgres,
            redis_socket,
            nginx,
            prometheus,
            service_env,
            account_env,
            migrate_env,
            redis_users,
            admin_env,
            superadmin_password_file,
        })
    }

    /// nginx's ports for inference jobs (none without nginx).
    fn inference_job_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .inference_jobs
            .clone()
            .filter(|_| self.nginx.is_some())
            .into_iter()
            .flatten()
    }

    fn predictor_ports(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.replicas.predictors).map(|i| self.ports.predictor + i)
    }

    /// Every worker process: the advisor, then the train and inference replicas, on consecutive
    /// ports from `--worker-port`.
    fn workers(&self) -> Vec<Worker> {
        // The advisor is one process, named for its kind; the pools number their replicas.
        let mut names = vec![(&ADVISOR_WORKER, ADVISOR_WORKER.job.to_owned())];
        for (kind, replicas) in [
            (&TRAIN_WORKER, self.replicas.train_workers),
            (&INFERENCE_WORKER, self.replicas.inference_workers),
        ] {
            names.extend((1..=replicas).map(|i| (kind, format!("{}-{i}", kind.job))));
        }
        names
            .into_iter()
            .enumerate()
            .map(|(offset, (kind, name))| Worker {
                name,
                kind,
                port: self.ports.worker + offset as u16,
            })
            .collect()
    }

    /// Fails naming the option when a port this plan needs is taken.
    pub fn check_ports_free(&self) -> anyhow::Result<()> {
        let mut wanted = vec![("--admin-port", self.ports.admin)];
        if self.nginx.is_some() {
            wanted.push(("--http-port", self.ports.http));
            wanted.extend(
                self.inference_job_ports()
                    .map(|port| ("--inference-job-ports", port)),
            );
        }
        if self.prometheus.is_some() {
            wanted.push(("--prometheus-port", self.ports.prometheus));
        }
        wanted.extend(
            self.predictor_ports()
                .map(|port| ("--predictor-port", port)),
        );
        wanted.extend(
            self.workers()
                .into_iter()
                .map(|w| ("--worker-port", w.port)),
        );
        for (option, port) in wanted {
            TcpListener::bind(("0.0.0.0", port))
                .with_context(|| format!("port {port} is in use: choose another with {option}"))?;
        }
        Ok(())
    }

    /// What a tier needs before its processes start: a PostgreSQL cluster, generated configs.
    pub async fn prepare(&self, tier: Tier) -> anyhow::Result<()> {
        match tier {
            Tier::Stores => {
                if let Some(postgres) = &self.postgres {
                    init_postgres(postgres, &self.data.logs)?;
                }
                if self.redis_socket.is_some() {
                    write_private(&self.data.redis.join("users.acl"), &self.redis_users)?;
                }
                Ok(())
            }
            Tier::Services => Ok(()),
            Tier::Front => self.write_front_configs(),
        }
    }

    /// What follows a tier's start: the database and the schema after the stores.
    pub async fn after(&self, tier: Tier) -> anyhow::Result<()> {
        if tier != Tier::Stores {
            return Ok(());
        }
        if let Some(postgres) = &self.postgres {
            require_passwords(postgres).await?;
            create_database(&postgres.url("postgres"), "duma").await?;
        }
        eprintln!("duma: migrating the schema");
        let log = log_file(&self.data.logs, "migrate")?;
        let mut migrate = tokio::process::Command::new(self.binary("duma-admin")?);
        migrate
            .arg("migrate")
            .envs(self.service_env.iter().cloned())
            .envs(self.migrate_env.iter().cloned())
            .env_remove(ADMIN_SECRETS[0])
            .env_remove(ADMIN_SECRETS[1])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let status = tokio::time::timeout(MIGRATION_DEADLINE, migrate.status())
            .await
            .with_context(|| format!("the migration took over {MIGRATION_DEADLINE:?}"))??;
        anyhow::ensure!(
            status.success(),
            "the migration failed ({status}); see {}",
            self.data.logs.join("migrate.log").display()
        );
        Ok(())
    }

    /// The processes of one tier, in start order.
    pub fn processes(&self, tier: Tier) -> anyhow::Result<Vec<ProcessSpec>> {
        match tier {
            Tier::Stores => Ok(self.store_processes()),
            Tier::Services => self.service_processes(),
            Tier::Front => Ok(self.front_processes()),
        }
    }

    fn store_processes(&self) -> Vec<ProcessSpec> {
        let mut processes = Vec::new();
        if let Some(postgres) = &self.postgres {
            let mut args: Vec<OsString> = vec!["-D".into(), postgres.data.clone().into()];
            args.extend(["-k".into(), postgres.socket_dir.clone().into()]);
            for setting in ["listen_addresses=", "max_connections=300"] {
                args.extend(["-c".into(), setting.into()]);
            }
            processes.push(ProcessSpec {
                name: "postgres".into(),
                tier: Tier::Stores,
                program: postgres.bin.join("postgres"),
                args,
                inherit: Inherit::Minimal,
                env: Vec::new(),
                user: postgres.user,
                stop_signal: libc::SIGINT, // fast shutdown: roll back clients, checkpoint
                ready: Ready::Postgres(postgres.url("postgres")),
            });
        }
        if let Some(socket) = &self.redis_socket {
            let mut args = redis_socket_args(socket, &self.data.redis);
            // Redis holds transient work only (requests, replies, events), each living seconds:
            // nothing worth a disk write (an append-only file cost 11% of serving throughput);
            // bounded, and full means new requests are refused (503), never that queued ones are
            // evicted.
            args.extend([
                "--appendonly".into(),
                "no".into(),
                "--save".into(),
                "".into(),
            ]);
            args.extend(["--maxmemory".into(), "256mb".into()]);
            args.extend(["--maxmemory-policy".into(), "noeviction".into()]);
            args.extend(["--aclfile".into(), self.data.redis.join("users.acl").into()]);
            processes.push(ProcessSpec {
                name: "redis".into(),
                tier: Tier::Stores,
                program: "redis-server".into(),
                args,
                inherit: Inherit::Minimal,
                env: Vec::new(),
                user: None,
                stop_signal: libc::SIGTERM, // writes the AOF and exits
                ready: Ready::Socket(socket.clone()),
            });
        }
        processes
    }

    fn service_processes(&self) -> anyhow::Result<Vec<ProcessSpec>> {
        let service = |name: String, binary: &str, env: Vec<(String, String)>, port: u16| {
            let mut all = self.service_env.clone();
            all.extend(self.account_env[&account_of(binary)].iter().cloned());
            all.extend(env);
            let inherit = if binary == "duma-admin" {
                Inherit::All
            } else {
                Inherit::AllButAdminSecrets
            };
            Ok::<_, anyhow::Error>(ProcessSpec {
                name,
                tier: Tier::Services,
                program: self.binary(binary)?,
                args: Vec::new(),
                inherit,
                env: all,
                user: None,
                stop_signal: libc::SIGTERM,
                ready: Ready::Health(port),
            })
        };
        let mut admin_env = self.admin_env.clone();
        admin_env.push(("DUMA_ADMIN__PORT".into(), self.ports.admin.to_string()));
        let mut processes = vec![service(
            "admin".into(),
            "duma-admin",
            admin_env,
            self.ports.admin,
        )?];
        for Worker { name, kind, port } in self.workers() {
            let section = kind.section;
            let cache = self.data.cache.join(&name);
            let env = vec![
                (format!("DUMA_{section}__PORT"), port.to_string()),
                (
                    format!("DUMA_{section}__CACHE_DIR"),
                    cache.display().to_string(),
                ),
            ];
            processes.push(service(name, kind.binary, env, port)?);
        }
        for (i, port) in self.predictor_ports().enumerate() {
            let mut env = vec![("DUMA_PREDICTOR__PORT".into(), port.to_string())];
            // nginx reaches the predictors on the same machine through unix sockets.
            if self.nginx.is_some() {
                let socket = predictor_socket(&self.data.predictors, port);
                env.push((
                    "DUMA_PREDICTOR__SOCKET".into(),
                    socket.display().to_string(),
                ));
            }
            processes.push(service(
                format!("predictor-{}", i + 1),
                "duma-predictor",
                env,
                port,
            )?);
        }
        Ok(processes)
    }

    fn front_processes(&self) -> Vec<ProcessSpec> {
        let mut processes = Vec::new();
        if let Some(nginx) = &self.nginx {
            let mut args: Vec<OsString> = vec!["-e".into(), "stderr".into()];
            args.extend(["-p".into(), self.data.nginx.clone().into()]);
            args.extend(["-c".into(), "nginx.conf".into()]);
            args.extend(["-g".into(), "daemon off;".into()]);
            processes.push(ProcessSpec {
                name: "nginx".into(),
                tier: Tier::Front,
                program: nginx.clone(),
                args,
                inherit: Inherit::Minimal,
                env: Vec::new(),
                user: None,
                stop_signal: libc::SIGQUIT, // graceful: finish the requests in flight
                ready: Ready::Tcp(self.ports.http),
            });
        }
        if let Some(prometheus) = &self.prometheus {
            let dir = &self.data.prometheus;
            let args = vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()).into(),
                format!("--storage.tsdb.path={}", dir.join("data").display()).into(),
                // Loopback only: its metrics name every job and worker.
                format!("--web.listen-address=127.0.0.1:{}", self.ports.prometheus).into(),
            ];
            processes.push(ProcessSpec {
                name: "prometheus".into(),
                tier: Tier::Front,
                program: prometheus.clone(),
                args,
                inherit: Inherit::Minimal,
                env: Vec::new(),
                user: None,
                stop_signal: libc::SIGTERM,
                ready: Ready::Http(format!(
                    "http://127.0.0.1:{}/-/ready",
                    self.ports.prometheus
                )),
            });
        }
        processes
    }

    fn write_front_configs(&self) -> anyhow::Result<()> {
        if self.nginx.is_some() {
            let dir = &self.data.nginx;
            std::fs::create_dir_all(dir.join("tmp"))?;
            std::fs::write(dir.join("nginx.conf"), nginx_conf(available_cores()))?;
            let listen: String = std::iter::once(self.ports.http)
                .chain(self.inference_job_ports())
                .map(|port| format!("listen {port};\n"))
                .collect();
            std::fs::write(dir.join("listen.conf"), listen)?;
            let upstreams: String = self
                .predictor_ports()
                .map(|port| {
                    let socket = predictor_socket(&self.data.predictors, port);
                    format!("server unix:{} max_fails=0;\n", socket.display())
                })
                .collect();
            std::fs::write(dir.join("upstreams.conf"), upstreams)?;
        }
        if self.prometheus.is_some() {
            std::fs::write(
                self.data.prometheus.join("prometheus.yml"),
                self.prometheus_config(),
            )?;
            std::fs::write(self.data.prometheus.join("alerts.yml"), ALERT_RULES)?;
        }
        Ok(())
    }

    /// Static targets: every service, every replica.
    fn prometheus_config(&self) -> String {
        let mut jobs: Vec<(&str, Vec<u16>)> = vec![
            ("admin", vec![self.ports.admin]),
            ("predictor", self.predictor_ports().collect()),
        ];
        for worker in self.workers() {
            match jobs.iter_mut().find(|(job, _)| *job == worker.kind.job) {
                Some((_, ports)) => ports.push(worker.port),
                None => jobs.push((worker.kind.job, vec![worker.port])),
            }
        }
        let mut config = String::from(
            "# Written by `duma up` on every start.\nglobal:\n  scrape_interval: 5s\n\n\
             rule_files: [alerts.yml]\n\nscrape_configs:\n",
        );
        for (job, ports) in jobs {
            let targets: Vec<String> = ports
                .iter()
                .map(|port| format!("'127.0.0.1:{port}'"))
                .collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{ targets: [{}] }}]\n",
                targets.join(", ")
            ));
        }
        config
    }

    fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(name);
        anyhow::ensure!(
            path.exists(),
            "{name} is not next to duma in {}: build every binary (cargo build --release)",
            self.bin_dir.display()
        );
        Ok(path)
    }

    pub fn print_ready(&self, took: Duration) {
        let root = self.data_root.display();
        let admin = format!("http://localhost:{}", self.ports.admin);
        let password = match &self.superadmin_password_file {
            Some(file) => format!("password in {}", file.display()),
            None => "password from SUPERADMIN_PASSWORD".to_owned(),
        };
        eprintln!("\nDuma is up ({:.1} s), data in {root}", took.as_secs_f64());
        eprintln!("  admin        {admin}  (superadmin@rafiki, {password})");
        match &self.nginx {
            Some(_) => eprintln!(
                "  predictions  http://localhost:{}  (nginx → {} predictors)",
                self.ports.http, self.replicas.predictors
            ),
            None => eprintln!(
                "  predictions  http://localhost:{}  (nginx is not installed: first predictor only)",
                self.ports.predictor
            ),
        }
        match &self.prometheus {
            Some(_) => eprintln!("  prometheus   http://localhost:{}", self.ports.prometheus),
            None => eprintln!("  prometheus   not installed"),
        }
        eprintln!("  logs         {}", self.data.logs.display());
        eprintln!("Stop with Ctrl-C or `duma down --data-dir {root}`.");
    }
}

/// The service account a Duma binary runs as.
fn account_of(binary: &str) -> Account {
    match binary {
        "duma-admin" => Account::Admin,
        "duma-predictor" => Account::Predictor,
        "duma-advisor-worker" => Account::AdvisorWorker,
        "duma-train-worker" => Account::TrainWorker,
        _ => Account::InferenceWorker,
    }
}

/// Writes `contents` readable by its owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())?;
    Ok(())
}

/// Every connection to the local PostgreSQL must give a password: the superuser gets its own
/// (as a SCRAM verifier), and `pg_hba.conf` asks for it. A cluster is created trusting its
/// private socket (`initdb` has no password yet to check); the first start closes that.
async fn require_passwords(postgres: &LocalPostgres) -> anyhow::Result<()> {
    const HBA: &str = "# Written by duma up: every connection gives a password.\n\
                       local all all scram-sha-256\n";
    let hba_file = postgres.data.join("pg_hba.conf");
    if std::fs::read_to_string(&hba_file).is_ok_and(|current| current == HBA) {
        return Ok(());
    }
    let (client, connection) =
        tokio_postgres::connect(&postgres.url("postgres"), tokio_postgres::NoTls)
            .await
            .context("cannot connect to the local PostgreSQL")?;
    let connection = tokio::spawn(connection);
    let verifier = postgres_protocol::password::scram_sha_256(postgres.password.as_bytes());
    client
        .batch_execute(&format!("ALTER ROLE postgres PASSWORD '{verifier}'"))
        .await
        .context("cannot set the PostgreSQL superuser's password")?;
    write_private(&hba_file, HBA)?;
    if let Some((uid, gid)) = postgres.user {
        std::os::unix::fs::chown(&hba_file, Some(uid), Some(gid))
            .context("cannot hand pg_hba.conf to the postgres user")?;
    }
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .context("cannot reload the PostgreSQL configuration")?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// `initdb` on first use, as the `postgres` OS user when we are root.
fn init_postgres(postgres: &LocalPostgres, logs: &Path) -> anyhow::Result<()> {
    private_dir(&postgres.socket_dir)?;
    if let Some((uid, gid)) = postgres.user {
        std::os::unix::fs::chown(&postgres.socket_dir, Some(uid), Some(gid))
            .context("cannot hand the PostgreSQL folder to the postgres user")?;
    }
    if postgres.data.join("PG_VERSION").exists() {
        return Ok(());
    }
    eprintln!("duma: creating the PostgreSQL cluster");
    let stdout = log_file(logs, "initdb")?.into();
    init_postgres_cluster(&postgres.bin, &postgres.data, postgres.user, false, stdout).map_err(
        |mut reason| {
            if postgres.user.is_some() {
                reason.push_str(
                    "\n(as root, PostgreSQL runs as the `postgres` user, which must be able to \
                     reach the data directory: choose a --data-dir outside root's home, e.g. \
                     /var/lib/duma)",
                );
            }
            anyhow::anyhow!(reason)
        },
    )
}

async fn create_database(maintenance_url: &str, name: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(maintenance_url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to the local PostgreSQL")?;
    let connection = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

pub fn log_file(logs: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = logs.join(format!("{name}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The unix socket in `folder` the predictor on `port` serves nginx on.
fn predictor_socket(folder: &Path, port: u16) -> PathBuf {
    folder.join(format!("{port}.sock"))
}

/// nginx's configuration with one worker per core this stack may use. nginx's own `auto`
/// counts the machine's cores, not those of its CPU affinity or cgroup quota: on a stack
/// confined to one core, its second worker only added switches (one core, 1-row queries:
/// 10,900 req/s with two workers, 13,500 with one; `scripts/bench-onnx`).
fn nginx_conf(cores: usize) -> String {
    NGINX_CONF.replacen(
        "worker_processes auto;",
        &format!("worker_processes {cores};"),
        1,
    )
}

/// The cores this process may run on (affinity, cgroup quota), at least one.
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn check_socket_path(path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.as_os_str().len() <= MAX_SOCKET_PATH,
        "the data directory's path is too long for a unix socket ({}): choose a shorter --data-dir",
        path.display()
    );
    Ok(())
}

/// `name` on PATH, or in the sbin folders Debian puts daemons in.
fn find_program(name: &str) -> Option<PathBuf> {
    duma_common::process::find_program(name.as_ref(), &["/usr/sbin", "/sbin"])
}

/// The first of the checkout's `in_checkout` (from the working directory, or from the checkout
/// `target/<profile>/` is in) and an installed `../lib/duma/<installed>` for which `found` holds,
/// made absolute.
fn locate(
    bin_dir: &Path,
    in_checkout: &str,
    installed: &str,
    found: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(in_checkout));
    }
    candidates.push(bin_dir.join("../..").join(in_checkout));
    candidates.push(bin_dir.join("../lib/duma").join(installed));
    candidates
        .into_iter()
        .find(|path| found(path))
        .and_then(|path| path.canonicalize().ok())
}

/// The ONNX Runtime library ONNX models are served with: the checkout's (`scripts/setup` puts it
/// in `.onnxruntime/`), or one installed beside the binaries.
fn onnx_runtime(bin_dir: &Path) -> Option<PathBuf> {
    locate(
        bin_dir,
        ".onnxruntime/libonnxruntime.so",
        "libonnxruntime.so",
        Path::is_file,
    )
}

/// The folder holding the `duma` Python package: the checkout's `python/`, or an installed
/// `lib/duma/python`.
fn python_sdk(bin_dir: &Path) -> Option<PathBuf> {
    locate(bin_dir, "python", "python", |dir| {
        dir.join("duma").join("__init__.py").is_file()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_gets_one_worker_per_available_core() {
        let conf = nginx_conf(3);
        assert!(conf.contains("\nworker_processes 3;\n"), "{conf}");
        assert!(!conf.contains("worker_processes auto"));
    }
}
