//! The admin alone over the test kit's servers, for the API tests: [`spawn_app`] and shortcuts
//! that create what a test needs through the API.

use std::ops::Deref;

use duma_admin::Application;
use duma_common::Settings;
use duma_common::accounts::Account;
use duma_testkit::TestContext;
use reqwest::Response;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::{AdminClient, ModelUpload, PASSWORD, SUPERADMIN, TestUser, json_ok};

pub struct TestApp {
    pub client: AdminClient,
    pub ctx: TestContext,
    /// The superadmin's token.
    pub superadmin: String,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Requests go through the app's client.
impl Deref for TestApp {
    type Target = AdminClient;

    fn deref(&self) -> &AdminClient {
        &self.client
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with `configure` applied to the settings last.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let ctx = duma_testkit::context().await;
    let mut settings = ctx.settings.clone();
    configure(&mut settings);
    let app = Application::build(duma_testkit::as_account(&settings, Account::Admin))
        .await
        .expect("admin starts");
    let client = AdminClient::new(format!("http://127.0.0.1:{}", app.port()));
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let superadmin = client.login(SUPERADMIN, PASSWORD).await;
    TestApp {
        client,
        ctx,
        superadmin,
        shutdown,
    }
}

impl TestApp {
    /// A new user of `user_type`, created by the superadmin and logged in.
    pub async fn user(&self, user_type: &str) -> TestUser {
        self.client.new_user(&self.superadmin, user_type).await
    }

    /// A small dataset of `token`'s user for `task`; returns its id.
    pub async fn dataset(&self, token: &str, task: &str) -> String {
        let content = b"a,b,y\n1,2,0\n3,4,1\n".to_vec();
        let body = json_ok(self.upload_dataset(token, "data", task, content).await).await;
        body["id"].as_str().expect("a dataset id").to_owned()
    }

    /// A trivial template upload (class `MyModel`, a numpy dependency).
    pub async fn upload_model(
        &self,
        token: &str,
        name: &str,
        task: &str,
        access_right: &str,
    ) -> Response {
        let upload = ModelUpload {
            name,
            task,
            class: "MyModel",
            source: b"class MyModel: pass\n".to_vec(),
            dependencies: json!({"numpy": "1.26.4"}),
            access_right,
            checkpoint: None,
        };
        self.client.upload_model(token, upload).await
    }

    /// [`TestApp::upload_model`]; returns the model id.
    pub async fn model(&self, token: &str, name: &str, task: &str, access_right: &str) -> String {
        let body = json_ok(self.upload_model(token, name, task, access_right).await).await;
        body["id"].as_str().expect("a model id").to_owned()
    }

    /// A train job of `app` for `task` on fresh datasets of `user`, with the given models.
    pub async fn train_job(
        &self,
        user: &TestUser,
        app: &str,
        task: &str,
        model_ids: &[&str],
    ) -> Response {
        let train = self.dataset(&user.token, task).await;
        let val = self.dataset(&user.token, task).await;
        let mut body = json!({"app": app, "task": task, "train_dataset_id": train, "val_dataset_id": val,
                              "budget": {"MODEL_TRIAL_COUNT": 2}, "train_args": {}});
        // No ids: every model available for the task.
        if !model_ids.is_empty() {
            body["model_ids"] = json!(model_ids);
        }
        self.post(Some(&user.token), "/train_jobs", body).await
    }
}
