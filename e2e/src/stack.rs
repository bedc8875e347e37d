//! A whole training stack in one test process, each service with its own stop switch.

use std::time::{Duration, Instant};

use duma_common::Settings;
use duma_common::accounts::Account;
use duma_testkit::{TestContext, as_account};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::{AdminClient, ModelUpload, PASSWORD, SUPERADMIN, json_ok};

pub struct Stack {
    pub ctx: TestContext,
    pub settings: Settings,
    pub client: AdminClient,
    /// An admin's token (a user created for the stack).
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
    settings.onnx.runtime_path = repository.join(".onnxruntime/libonnxruntime.so");
    // The admin runs in this process: its ONNX inspector is the built admin binary.
    settings.onnx.inspector = Some(admin_binary());
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
    let client = AdminClient::new(format!("http://127.0.0.1:{}", admin.port()));
    tokio::spawn(admin.run_until_stopped(stop.clone()));
    let advisor = stop.child_token();
    let mut stack = Stack {
        ctx,
        settings,
        client,
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
    let superadmin = stack.client.login(SUPERADMIN, PASSWORD).await;
    stack.token = stack.client.new_user(&superadmin, "ADMIN").await.token;
    stack
}

impl Stack {
    /// What `base`/metrics answers (Prometheus text).
    pub async fn metrics_text(&self, base: &str) -> String {
        self.client
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of the samples of metric `name` (a prefix: `_count` and label sets included)
    /// at `base`/metrics whose lines contain each of `labels` (e.g. `version="2"`).
    pub async fn metric_sum(&self, base: &str, name: &str, labels: &[&str]) -> f64 {
        self.metrics_text(base)
            .await
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

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

    /// `GET path` as the stack's admin; asserts a 200.
    pub async fn get(&self, path: &str) -> Value {
        json_ok(self.client.get(Some(&self.token), path).await).await
    }

    /// `POST path` as the stack's admin; asserts a 200.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        json_ok(self.client.post(Some(&self.token), path, body).await).await
    }

    /// The predictions at `url` (a predict route) for `queries`, once it serves (within 60 s).
    pub async fn predictions(&self, url: &str, queries: &Value) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = self
                .client
                .http
                .post(url)
                .json(&json!({ "queries": queries }))
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                let body: Value = response.json().await.unwrap();
                return body["predictions"].as_array().unwrap().clone();
            }
            assert!(
                Instant::now() < deadline,
                "never served: {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Uploads a private Python template; returns the model id.
    pub async fn upload_model(
        &self,
        name: &str,
        task: &str,
        source: Vec<u8>,
        class: &str,
        dependencies: Value,
    ) -> String {
        let upload = ModelUpload {
            name,
            task,
            class,
            source,
            dependencies,
            access_right: "PRIVATE",
            checkpoint: None,
        };
        let model = json_ok(self.client.upload_model(&self.token, upload).await).await;
        model["id"].as_str().expect("a model id").to_owned()
    }

    /// Uploads `csv` as a dataset for `task`; returns its id.
    pub async fn upload_dataset(&self, task: &str, csv: String) -> String {
        let response = self
            .client
            .upload_dataset(&self.token, "data", task, csv.into_bytes())
            .await;
        json_ok(response).await["id"]
            .as_str()
            .expect("a dataset id")
            .to_owned()
    }

    /// Starts a train job of `app` on datasets `csv` generates (300 training and 150
    /// validation rows).
    pub async fn start_train_job(
        &self,
        app: &str,
        task: &str,
        model_ids: &[String],
        budget: Value,
        csv: fn(usize, u64) -> String,
    ) {
        let train = self.upload_dataset(task, csv(300, 1)).await;
        let val = self.upload_dataset(task, csv(150, 2)).await;
        let job = json!({"app": app, "task": task, "train_dataset_id": train,
                         "val_dataset_id": val, "budget": budget, "model_ids": model_ids});
        self.post("/train_jobs", job).await;
    }

    /// Starts a long classification job of `app` (random forests on generated data, `budget`)
    /// and returns once one of its trials runs.
    pub async fn start_a_job_and_wait_for_a_trial(&self, app: &str, budget: Value, what: &str) {
        let task = "TABULAR_CLASSIFICATION";
        let models = self.builtin_models(task, &["RandomForestClassifier"]).await;
        let csv = crate::data::classification_csv;
        self.start_train_job(app, task, &models, budget, csv).await;
        self.wait_for_a_running_trial(app, what).await;
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

    /// Polls until a trial of `app` runs; panics with `what` after a minute.
    pub async fn wait_for_a_running_trial(&self, app: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .trials(app)
            .await
            .iter()
            .any(|t| t["status"] == "RUNNING")
        {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
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

/// The statuses of `trials` (a trials listing), in order.
pub fn statuses(trials: &[Value]) -> Vec<&str> {
    trials
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect()
}

/// The `duma-admin` binary next to this test binary's folder (`target/<profile>/`): `cargo test
/// --workspace` builds it (the admin package has integration tests).
fn admin_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(std::path::Path::parent).unwrap();
    let admin = profile.join("duma-admin");
    assert!(
        admin.exists(),
        "{} is missing: `cargo build -p duma-admin` (the admin inspects ONNX uploads with it)",
        admin.display()
    );
    admin
}
