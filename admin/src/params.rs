//! Rafiki's parameter rules: one flat set of parameters per request, merged from the JSON body
//! (if the body is JSON), else form fields, with query-string parameters on top.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use serde_json::{Map, Value};

use duma_common::api_error::{ApiError, ErrorCode};

/// Bodies of non-upload requests are small; anything larger is refused with 413.
const MAX_BODY_BYTES: usize = 2 << 20;

#[derive(Debug, Default, Clone)]
pub struct Params(pub Map<String, Value>);

impl FromRequest for Params {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::invalid_request(format!("reading the body failed: {e}"))
                })?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ApiError::too_large(format!(
                        "the request body exceeds {MAX_BODY_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            let mut params = Params::from_body(&req, &body)?;
            params.merge_query(req.query_string())?;
            params.refuse_nul()?;
            Ok(params)
        })
    }
}

impl Params {
    fn from_body(req: &HttpRequest, body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let pairs = web::Query::<Vec<(String, String)>>::from_query(
                std::str::from_utf8(body)
                    .map_err(|_| ApiError::invalid_request("the form body is not UTF-8"))?,
            )
            .map_err(|e| ApiError::invalid_request(format!("malformed form body: {e}")))?;
            return Ok(Params(
                pairs
                    .into_inner()
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Params(map)),
            Ok(_) => Err(ApiError::invalid_request("the JSON body must be an object")),
            Err(e) => Err(ApiError::invalid_request(format!(
                "malformed JSON body: {e}"
            ))),
        }
    }

    /// Query-string parameters win over body parameters.
    pub fn merge_query(&mut self, query: &str) -> Result<(), ApiError> {
        if query.is_empty() {
            return Ok(());
        }
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| ApiError::invalid_request(format!("malformed query string: {e}")))?;
        for (key, value) in pairs.into_inner() {
            self.0.insert(key, Value::String(value));
        }
        Ok(())
    }

    /// PostgreSQL text cannot hold NUL characters: a parameter with one is the caller's error,
    /// said here, rather than a failed query later.
    pub fn refuse_nul(&self) -> Result<(), ApiError> {
        fn has_nul(value: &Value) -> bool {
            match value {
                Value::String(s) => s.contains('\0'),
                Value::Array(items) => items.iter().any(has_nul),
                Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
                _ => false,
            }
        }
        match self.0.iter().find(|(k, v)| k.contains('\0') || has_nul(v)) {
            Some((key, _)) => Err(ApiError::invalid_request(format!(
                "parameter `{}` contains a NUL character",
                key.replace('\0', "\\0")
            ))),
            None => Ok(()),
        }
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        self.0.insert(key.into(), value);
    }

    fn wrong_type(key: &str, expected: &str) -> ApiError {
        ApiError::invalid_request(format!("parameter `{key}` must be {expected}"))
    }

    /// A string parameter, if present (null counts as absent).
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Self::wrong_type(key, "a string")),
        }
    }

    /// A required, non-blank string parameter.
    pub fn str(&self, key: &str) -> Result<&str, ApiError> {
        match self.opt_str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(ApiError::invalid_request(format!(
                "parameter `{key}` must not be empty"
            ))),
            None => Err(ApiError::invalid_request(format!(
                "missing parameter `{key}`"
            ))),
        }
    }

    /// An integer given as a JSON number or a decimal string (query strings are text).
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::wrong_type(key, "an integer")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Self::wrong_type(key, "an integer")),
            Some(_) => Err(Self::wrong_type(key, "an integer")),
        }
    }

    /// A JSON object, given as an object or as JSON text (multipart and form fields are text).
    pub fn opt_object(&self, key: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map.clone())),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Ok(Some(map)),
                // JSON text of null: what Rafiki's client sends for an absent value.
                Ok(Value::Null) => Ok(None),
                _ => Err(Self::wrong_type(key, "a JSON object")),
            },
            Some(_) => Err(Self::wrong_type(key, "a JSON object")),
        }
    }

    /// A list of strings, given as a JSON array or as JSON text.
    pub fn opt_str_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let list = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items)) => items,
                Ok(Value::Null) => return Ok(None),
                _ => return Err(Self::wrong_type(key, "a list of strings")),
            },
            Some(_) => return Err(Self::wrong_type(key, "a list of strings")),
        };
        list.into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(Self::wrong_type(key, "a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A required id parameter; a malformed one is reported as `invalid`.
    pub fn id<T: std::str::FromStr>(&self, key: &str, invalid: ErrorCode) -> Result<T, ApiError> {
        let raw = self.str(key)?;
        raw.parse()
            .map_err(|_| ApiError::new(invalid, format!("`{key}` is not a valid id: {raw}")))
    }
}

/// Parses an id from a path segment; a malformed id cannot exist, so it is "not found".
pub fn path_id<T: std::str::FromStr>(
    raw: &str,
    not_found: ErrorCode,
    what: &str,
) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(not_found, format!("no {what} with id {raw}")))
}

/// The `app_version` path segment: a positive version or -1 for the latest.
pub fn app_version(raw: &str) -> Result<Option<i32>, ApiError> {
    match raw.parse::<i32>() {
        Ok(-1) => Ok(None),
        Ok(v) if v > 0 => Ok(Some(v)),
        _ => Err(ApiError::new(
            ErrorCode::InvalidTrainJob,
            format!("app_version must be a positive integer or -1 (latest), not `{raw}`"),
        )),
    }
}

/// Middleware: a path with an encoded NUL (`%00`) is refused with 400 before routing, since no
/// name or id can contain one (PostgreSQL text cannot).
pub async fn refuse_nul_in_path(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::ResponseError;
    if req.uri().path().to_ascii_lowercase().contains("%00") {
        let refused = ApiError::invalid_request("the path contains a NUL character (%00)");
        let response = refused.error_response();
        return Ok(req.into_response(response));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
