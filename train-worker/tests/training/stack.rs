//! A whole training stack in one test process, each service with its own stop switch.

use std::time::{Duration, Instant};

use duma_common::Settings;
use duma_common::accounts::Account;
use duma_testkit::{TestContext, as_account};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct Stack {
    pub ctx: TestContext,
    pub settings: Settings,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    pub stop: CancellationToken,
    /// Stops the advisor `spawn_stack` started.
    pub advisor: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Admin + one advisor + `train_workers` train workers, with short leases so dead workers are
/// noticed within about a second.
pub async fn spawn_stack(train_workers: usize) -> Stack {
    spawn_stack_with(train_workers, |_| {}).await
}

/// [`spawn_stack`] with `configure` applied to the settings last.
pub async fn spawn_stack_with(
    train_workers: usize,
    configure: impl FnOnce(&mut Settings),
) -> Stack {
    let ctx = duma_testkit::context().await;
    let mut settings = ctx.settings.clone();
    // RUST_LOG=info shows what the services do while a test runs.
    duma_common::telemetry::init(&duma_common::config::LogSettings {
        format: duma_common::config::LogFormat::Pretty,
        filter: "warn".into(),
    });
    settings.admin.reconcile_interval_ms = 200;
    // Shared across tests and runs: virtualenvs take a while to build.
    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for worker in [
        &mut settings.advisor_worker,
        &mut settings.train_worker,
        &mut settings.inference_worker,
    ] {
        worker.heartbeat_interval_ms = 200;
        worker.lease_ttl_ms = 1_000;
        worker.cache_dir = repository.join("target/duma-test-cache");
    }
    settings.python.sdk_path = repository.join("python");
    settings.python.env_dir = repository.join("target/duma-test-cache/venvs");
    settings.advisor_worker.capacity = 16;
    settings.train_worker.capacity = 1;
    settings.inference_worker.capacity = 4;
    settings.predictor.deadline_ms = 2_000;
    configure(&mut settings);
    let stop = CancellationToken::new();
    let admin = duma_admin::Application::build(as_account(&settings, Account::Admin))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", admin.port());
    tokio::spawn(admin.run_until_stopped(stop.clone()));
    let advisor = stop.child_token();
    let mut stack = Stack {
        ctx,
        settings,
        base,
        http: reqwest::Client::new(),
        token: String::new(),
        stop,
        advisor,
    };
    tokio::spawn(duma_advisor_worker::run(
        stack.settings_for(Account::AdvisorWorker),
        stack.advisor.clone(),
    ));
    for _ in 0..train_workers {
        stack.start_train_worker();
    }
    stack.token = stack.login_as_new_admin().await;
    stack
}

impl Stack {
    /// The stack's settings as `account` connects (its own database role and Redis user).
    pub fn settings_for(&self, account: Account) -> Settings {
        as_account(&self.settings, account)
    }

    /// Starts an advisor; cancel the returned token to stop it.
    pub fn start_advisor(&self) -> CancellationToken {
        let stop = self.stop.child_token();
        tokio::spawn(duma_advisor_worker::run(
            self.settings_for(Account::AdvisorWorker),
            stop.clone(),
        ));
        stop
    }

    pub fn start_train_worker(&self) -> CancellationToken {
        let stop = self.stop.child_token();
        tokio::spawn(duma_train_worker::run(
            self.settings_for(Account::TrainWorker),
            stop.clone(),
        ));
        stop
    }

    pub fn start_inference_worker(&self) -> CancellationToken {
        let stop = self.stop.child_token();
        tokio::spawn(duma_inference_worker::run(
            self.settings_for(Account::InferenceWorker),
            stop.clone(),
        ));
        stop
    }

    /// An inference worker whose task can be aborted, which is what SIGKILL looks like to the
    /// rest of the platform: it never deregisters and its leases simply stop being renewed.
    pub fn spawn_inference_worker(&self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        tokio::spawn(duma_inference_worker::run(
            self.settings_for(Account::InferenceWorker),
            self.stop.child_token(),
        ))
    }

    /// Starts a predictor; returns its base URL and its stop switch.
    pub async fn start_predictor(&self) -> (String, CancellationToken) {
        let stop = self.stop.child_token();
        let predictor = duma_predictor::Application::build(self.settings_for(Account::Predictor))
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", predictor.port());
        tokio::spawn(predictor.run_until_stopped(stop.clone()));
        (base, stop)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login_as_new_admin(&self) -> String {
        let login = |email: &str, password: &str| {
            self.http
                .post(self.url("/tokens"))
                .json(&json!({"email": email, "password": password}))
                .send()
        };
        let superadmin: Value = login("superadmin@rafiki", "rafiki")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let superadmin = superadmin["token"].as_str().unwrap();
        let email = format!("app-{}@duma.test", uuid::Uuid::new_v4().simple());
        let created = self
            .http
            .post(self.url("/users"))
            .bearer_auth(superadmin)
            .json(&json!({"email": email, "password": "secret", "user_type": "ADMIN"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 200);
        let token: Value = login(&email, "secret").await.unwrap().json().await.unwrap();
        token["token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "POST {path}: {body}");
        body
    }

    /// Uploads a Python template; returns the model id.
    pub async fn upload_model(
        &self,
        name: &str,
        task: &str,
        source: Vec<u8>,
        class: &str,
        dependencies: Value,
    ) -> String {
        let form = Form::new()
            .text("name", name.to_owned())
            .text("task", task.to_owned())
            .text("model_class", class.to_owned())
            .text("dependencies", dependencies.to_string())
            .part(
                "model_file_bytes",
                Part::bytes(source).file_name("model.py"),
            );
        let response = self
            .http
            .post(self.url("/models"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn upload_dataset(&self, task: &str, csv: String) -> String {
        let form = Form::new()
            .text("name", "data")
            .text("task", task.to_owned())
            .part(
                "dataset",
                Part::bytes(csv.into_bytes()).file_name("data.csv"),
            );
        let response = self
            .http
            .post(self.url("/datasets"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// Ids of the built-in models named `names` for `task`.
    pub async fn builtin_models(&self, task: &str, names: &[&str]) -> Vec<String> {
        let models = self.get(&format!("/models/available?task={task}")).await;
        names
            .iter()
            .map(|name| {
                models
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == *name)
                    .unwrap_or_else(|| panic!("no built-in {name}"))["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// Polls the job until it is no longer live (a test may poll; services may not).
    pub async fn wait_for_end(&self, app: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.get(&format!("/train_jobs/{app}/-1")).await;
            if matches!(job["status"].as_str(), Some("STOPPED" | "ERRORED")) {
                return job;
            }
            if Instant::now() >= deadline {
                let trials = self.get(&format!("/train_jobs/{app}/-1/trials")).await;
                panic!(
                    "train job still {} after {timeout:?}; trials: {trials:#}",
                    job["status"]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn trials(&self, app: &str) -> Vec<Value> {
        self.get(&format!("/train_jobs/{app}/-1/trials"))
            .await
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The predict URL of a created inference job (`POST /inference_jobs` body) at `base`: the admin
/// reports the public host (nginx); tests may talk to a predictor directly.
pub fn predict_url(inference_job: &Value, base: &str) -> String {
    let host = inference_job["predictor_host"].as_str().unwrap();
    format!("{base}{}/predict", &host[host.find('/').unwrap()..])
}

/// Two well-separated classes in 4 features (plus a string column), as Rafiki tabular CSV.
pub fn classification_csv(rows: usize, seed: u64) -> String {
    let mut rng = Lcg(seed);
    let mut csv = String::from("f1,f2,f3,f4,colour,label\n");
    for i in 0..rows {
        let class = i % 2;
        let centre = if class == 0 { -1.5 } else { 1.5 };
        let f: Vec<f64> = (0..4).map(|_| centre + rng.normal()).collect();
        let colour = ["red", "green", "blue"][i % 3];
        csv.push_str(&format!(
            "{:.4},{:.4},{:.4},{:.4},{colour},{class}\n",
            f[0], f[1], f[2], f[3]
        ));
    }
    csv
}

/// y = 3·x1 − 2·x2 + 0.5·x3 + noise.
pub fn regression_csv(rows: usize, seed: u64) -> String {
    let mut rng = Lcg(seed);
    let mut csv = String::from("x1,x2,x3,y\n");
    for _ in 0..rows {
        let x: Vec<f64> = (0..3).map(|_| rng.normal()).collect();
        let y = 3.0 * x[0] - 2.0 * x[1] + 0.5 * x[2] + 0.3 * rng.normal();
        csv.push_str(&format!("{:.4},{:.4},{:.4},{y:.4}\n", x[0], x[1], x[2]));
    }
    csv
}

/// A tiny deterministic generator, so test data needs no extra crate.
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

/// nginx from the system, configured by `nginx/nginx.conf` in a temp prefix, in front of
/// `upstreams`; killed when dropped.
pub struct Nginx {
    child: std::process::Child,
    pub url: String,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    pub fn start(upstreams: &[String]) -> Self {
        let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let prefix = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(prefix.path().join("tmp")).unwrap();
        std::fs::copy(
            repository.join("nginx/nginx.conf"),
            prefix.path().join("nginx.conf"),
        )
        .unwrap();
        let port = duma_testkit::free_port();
        std::fs::write(
            prefix.path().join("listen.conf"),
            format!("listen 127.0.0.1:{port};\n"),
        )
        .unwrap();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {} max_fails=0;\n", u.trim_start_matches("http://")))
            .collect();
        std::fs::write(prefix.path().join("upstreams.conf"), servers).unwrap();
        let binary = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .unwrap_or("nginx");
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(prefix.path())
            .args([
                "-c",
                "nginx.conf",
                "-e",
                "stderr",
                "-g",
                "daemon off; user root;",
            ])
            .spawn()
            .expect("nginx (scripts/setup installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url,
            _prefix: prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
