//! The admin's public API as the commands use it: JSON in, JSON out, errors as Duma sends them
//! (`{"error": <class>, "message": …}`) turned into one line for the user.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// Why a command failed, and so its exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command line asks for something impossible (a missing file, a bad value): exit 2.
    Usage(String),
    /// The platform refused: its error class and message (exit 1).
    Api {
        status: StatusCode,
        class: String,
        message: String,
    },
    /// Anything else: unreachable services, local I/O (exit 1).
    Other(String),
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    pub fn other(message: impl Into<String>) -> Self {
        Failure::Other(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Api { .. } | Failure::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Other(message) => write!(f, "{message}"),
            Failure::Api {
                status,
                class,
                message,
            } => {
                write!(f, "{class}: {message}")?;
                if *status == StatusCode::UNAUTHORIZED && class == "UnauthorizedError" {
                    write!(f, " (log in again: `duma login`)")?;
                }
                Ok(())
            }
        }
    }
}

pub type Outcome<T> = Result<T, Failure>;

/// Each request's deadline (uploads have none: they take as long as the file needs).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin at `base`, as the user `token` (if logged in).
#[derive(Clone)]
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Admin {
    pub fn new(base: &str, token: Option<String>) -> Outcome<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::other(format!("cannot start an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// A request to `path` (percent-encode its app segments with [`segment`]).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Outcome<Value> {
        self.send(self.request(Method::GET, path).timeout(REQUEST_TIMEOUT))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Outcome<Value> {
        self.send(
            self.request(Method::POST, path)
                .json(body)
                .timeout(REQUEST_TIMEOUT),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Outcome<Value> {
        self.send(self.request(Method::DELETE, path).timeout(REQUEST_TIMEOUT))
            .await
    }

    /// Sends `request`; a 2xx body as JSON, else the platform's error.
    pub async fn send(&self, request: RequestBuilder) -> Outcome<Value> {
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        answer(response).await
    }
}

/// A 2xx response's JSON body, or the error it carries.
pub async fn answer(response: reqwest::Response) -> Outcome<Value> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| Failure::other(format!("reading the answer failed: {e}")))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        return Ok(body);
    }
    let class = body["error"].as_str().unwrap_or("HttpError").to_owned();
    let message = match &body {
        Value::Object(_) => body["message"].as_str().unwrap_or_default().to_owned(),
        Value::String(text) => text.trim().chars().take(300).collect(),
        other => other.to_string(),
    };
    Err(Failure::Api {
        status,
        class,
        message: if message.is_empty() {
            format!("HTTP {status}")
        } else {
            message
        },
    })
}

pub fn unreachable(base: &str, error: &reqwest::Error) -> Failure {
    let why = if error.is_timeout() {
        "no answer in time".to_owned()
    } else if error.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        error.to_string()
    };
    Failure::other(format!(
        "cannot reach {base}: {why} (is Duma running? set --admin or DUMA_ADMIN)"
    ))
}

/// One path segment, percent-encoded (app names may hold any character but `/`).
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("my app/ü?"), "my%20app%2F%C3%BC%3F");
        assert_eq!(segment("plain-name_1.0"), "plain-name_1.0");
    }

    #[test]
    fn failures_say_what_to_do_and_pick_their_exit_code() {
        let expired = Failure::Api {
            status: StatusCode::UNAUTHORIZED,
            class: "UnauthorizedError".into(),
            message: "the token expired".into(),
        };
        assert_eq!(
            expired.to_string(),
            "UnauthorizedError: the token expired (log in again: `duma login`)"
        );
        assert_eq!(expired.exit_code(), 1);
        assert_eq!(Failure::usage("no such file").exit_code(), 2);
    }
}
