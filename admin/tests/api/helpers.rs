//! `spawn_app()` and a typed client for the admin tests.

use duma_admin::Application;
use duma_common::Settings;
use duma_testkit::TestContext;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const SUPERADMIN: &str = "superadmin@rafiki";
pub const PASSWORD: &str = "rafiki";

pub struct TestApp {
    pub base: String,
    pub ctx: TestContext,
    pub http: reqwest::Client,
    pub superadmin: String,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A user created by the superadmin and logged in.
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let ctx = duma_testkit::context().await;
    let mut settings = ctx.settings.clone();
    configure(&mut settings);
    let app = Application::build(duma_testkit::as_account(
        &settings,
        duma_common::accounts::Account::Admin,
    ))
    .await
    .expect("admin starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::new();
    let mut app = TestApp {
        base,
        ctx,
        http,
        superadmin: String::new(),
        shutdown,
    };
    app.superadmin = app.login(SUPERADMIN, PASSWORD).await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let body = json_ok(
            self.post(
                None,
                "/tokens",
                json!({"email": email, "password": password}),
            )
            .await,
        )
        .await;
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn user(&self, user_type: &str) -> TestUser {
        let email = format!(
            "{}-{}@duma.test",
            user_type.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let created = json_ok(
            self.post(
                Some(&self.superadmin),
                "/users",
                json!({"email": email, "password": PASSWORD, "user_type": user_type}),
            )
            .await,
        )
        .await;
        let token = self.login(&email, PASSWORD).await;
        TestUser {
            id: created["id"].as_str().unwrap().to_owned(),
            email,
            token,
        }
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Value) -> Response {
        with_token(self.http.post(self.url(path)).json(&body), token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Response {
        with_token(self.http.get(self.url(path)), token)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, token: Option<&str>, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.delete(self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        with_token(request, token).send().await.unwrap()
    }

    pub async fn upload_dataset(
        &self,
        token: &str,
        name: &str,
        task: &str,
        content: Vec<u8>,
    ) -> Response {
        let form = Form::new()
            .text("name", name.to_owned())
            .text("task", task.to_owned())
            .part("dataset", Part::bytes(content).file_name("data.csv"));
        self.http
            .post(self.url("/datasets"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn dataset(&self, token: &str, task: &str) -> String {
        let body = json_ok(
            self.upload_dataset(token, "data", task, b"a,b,y\n1,2,0\n3,4,1\n".to_vec())
                .await,
        )
        .await;
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn upload_model(
        &self,
        token: &str,
        name: &str,
        task: &str,
        access_right: &str,
    ) -> Response {
        let form = Form::new()
            .text("name", name.to_owned())
            .text("task", task.to_owned())
            .text("model_class", "MyModel")
            .text("dependencies", r#"{"numpy": "1.26.4"}"#)
            .text("access_right", access_right.to_owned())
            .part(
                "model_file_bytes",
                Part::bytes(b"class MyModel: pass\n".to_vec()).file_name("model.py"),
            );
        self.http
            .post(self.url("/models"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn model(&self, token: &str, name: &str, task: &str, access_right: &str) -> String {
        let body = json_ok(self.upload_model(token, name, task, access_right).await).await;
        body["id"].as_str().unwrap().to_owned()
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

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Asserts a 200 with `Content-Type` exactly `application/json` and returns the body.
pub async fn json_ok(response: Response) -> Value {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Asserts an error response with `status` and error class `class`; returns the message.
pub async fn expect_error(response: Response, status: u16, class: &str) -> String {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{text}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], class, "{text}");
    let message = body["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty());
    message
}
