//! A typed client for the admin's REST API, as tests drive it: raw responses where a test checks
//! statuses and errors, [`json_ok`] and [`expect_error`] to check them.

use reqwest::multipart::{Form, Part};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// The superadmin every fresh database is seeded with.
pub const SUPERADMIN: &str = "superadmin@rafiki";
/// The superadmin's password, and the password of every user the client creates.
pub const PASSWORD: &str = "rafiki";

/// The admin at `base`.
#[derive(Clone)]
pub struct AdminClient {
    pub base: String,
    pub http: reqwest::Client,
}

/// A user created through the API and logged in.
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// A template upload (`POST /models`).
pub struct ModelUpload<'a> {
    pub name: &'a str,
    pub task: &'a str,
    pub class: &'a str,
    pub source: Vec<u8>,
    /// `{"<PyPI name>": "<version>"}`.
    pub dependencies: Value,
    pub access_right: &'a str,
    /// Trained parameters uploaded with the template (file part `checkpoint_id`).
    pub checkpoint: Option<Vec<u8>>,
}

impl AdminClient {
    pub fn new(base: String) -> Self {
        Self {
            base,
            // The services close a connection idle for 5 s (actix-web's keep-alive): a pooled
            // connection kept longer may be closed under a request (a broken pipe on POST).
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .expect("a reqwest client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Value) -> Response {
        send(self.http.post(self.url(path)).json(&body), token).await
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Response {
        send(self.http.get(self.url(path)), token).await
    }

    pub async fn delete(&self, token: Option<&str>, path: &str, body: Option<Value>) -> Response {
        let mut request = self.http.delete(self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request, token).await
    }

    /// Logs in; returns the token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let body = json!({"email": email, "password": password});
        let token = json_ok(self.post(None, "/tokens", body).await).await;
        token["token"].as_str().expect("a token").to_owned()
    }

    /// Creates a user of `user_type` with a fresh email (as `creator`) and logs it in.
    pub async fn new_user(&self, creator: &str, user_type: &str) -> TestUser {
        let email = format!(
            "{}-{}@duma.test",
            user_type.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let body = json!({"email": email, "password": PASSWORD, "user_type": user_type});
        let created = json_ok(self.post(Some(creator), "/users", body).await).await;
        let token = self.login(&email, PASSWORD).await;
        TestUser {
            id: created["id"].as_str().expect("a user id").to_owned(),
            email,
            token,
        }
    }

    /// `POST /datasets` with `content` as the file.
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
        send(
            self.http.post(self.url("/datasets")).multipart(form),
            Some(token),
        )
        .await
    }

    /// `POST /models`.
    pub async fn upload_model(&self, token: &str, upload: ModelUpload<'_>) -> Response {
        let form = Form::new()
            .text("name", upload.name.to_owned())
            .text("task", upload.task.to_owned())
            .text("model_class", upload.class.to_owned())
            .text("dependencies", upload.dependencies.to_string())
            .text("access_right", upload.access_right.to_owned())
            .part(
                "model_file_bytes",
                Part::bytes(upload.source).file_name("model.py"),
            );
        let form = match upload.checkpoint {
            Some(bytes) => form.part("checkpoint_id", Part::bytes(bytes).file_name("params")),
            None => form,
        };
        send(
            self.http.post(self.url("/models")).multipart(form),
            Some(token),
        )
        .await
    }
}

async fn send(request: RequestBuilder, token: Option<&str>) -> Response {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.expect("the admin answers")
}

/// Asserts a 200 with `Content-Type` exactly `application/json` and returns the body.
pub async fn json_ok(response: Response) -> Value {
    let status = response.status();
    let url = response.url().path().to_owned();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let text = response.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "{url}: {text}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
    serde_json::from_str(&text).expect("a JSON body")
}

/// Asserts an error response with `status` and error class `class`; returns the message.
pub async fn expect_error(response: Response, status: u16, class: &str) -> String {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "{text}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_eq!(body["error"], class, "{text}");
    let message = body["message"].as_str().expect("a message").to_owned();
    assert!(!message.is_empty());
    message
}
