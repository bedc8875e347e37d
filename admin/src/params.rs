//! Rafiki's parameter rules: one flat set of parameters per request, merged from the JSON body
//! (if the body is JSON), else form fields, with query-string parameters on top.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;
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

    /// A path segment of a route SINGA-Auto's client calls with placeholders
    /// (`/inference_jobs/app/app_version?app=…&app_version=…`): a segment that spells its own
    /// name stands for the parameter of that name, when one is given.
    pub fn segment(&self, segment: &str, name: &str) -> String {
        match self.0.get(name) {
            Some(Value::String(value)) if segment == name => value.clone(),
            Some(Value::Number(value)) if segment == name => value.to_string(),
            _ => segment.to_owned(),
        }
    }

    /// The parameters as the request type `T`, whose fields say what each parameter must be
    /// (`requests.rs`); a missing or mistyped parameter is a 400 naming it.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_path_to_error::deserialize(Value::Object(self.0.clone())).map_err(|error| {
            let field = error.path().to_string();
            let problem = error.into_inner().to_string();
            ApiError::invalid_request(match problem.strip_prefix("missing field ") {
                Some(name) => format!("missing parameter {name}"),
                None => format!("parameter `{field}` {problem}"),
            })
        })
    }
}

/// How request fields read Rafiki's parameters, which arrive as JSON values, form fields or
/// query-string text: numbers may come as decimal text, objects and lists as JSON text, and null
/// (or, for optional text, an empty string) means absent. For `#[serde(deserialize_with)]`;
/// optional fields also need `#[serde(default)]`.
pub mod field {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::{Map, Value};

    /// A required, non-blank string.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s.trim().is_empty() => Err(Error::custom("must not be empty")),
            Value::String(s) => Ok(s),
            _ => Err(Error::custom("must be a string")),
        }
    }

    /// A string; null, absent or empty is `None`.
    pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => Err(Error::custom("must be a string")),
        }
    }

    /// An integer, as a JSON number or decimal text.
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let wrong = || Error::custom("must be an integer");
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_i64().map(Some).ok_or_else(wrong),
            Value::String(s) => s.trim().parse().map(Some).map_err(|_| wrong()),
            _ => Err(wrong()),
        }
    }

    /// A JSON object, or JSON text of one (null or blank text: absent).
    pub fn opt_object<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Map<String, Value>>, D::Error> {
        let wrong = || Error::custom("must be a JSON object");
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Object(map) => Ok(Some(map)),
            Value::String(text) if text.trim().is_empty() => Ok(None),
            // JSON text of null: what Rafiki's client sends for an absent value.
            Value::String(text) => match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => Ok(Some(map)),
                Ok(Value::Null) => Ok(None),
                _ => Err(wrong()),
            },
            _ => Err(wrong()),
        }
    }

    /// Any JSON value, `null` included, when the field is there (absent: `None`): for fields
    /// where `null` means something (removing a setting).
    pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Value::deserialize(d).map(Some)
    }

    /// A list of strings, or JSON text of one (null: absent).
    pub fn opt_text_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let wrong = || Error::custom("must be a list of strings");
        let items = match Value::deserialize(d)? {
            Value::Null => return Ok(None),
            Value::Array(items) => items,
            Value::String(text) => match serde_json::from_str(&text) {
                Ok(Value::Array(items)) => items,
                Ok(Value::Null) => return Ok(None),
                _ => return Err(wrong()),
            },
            _ => return Err(wrong()),
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(wrong()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The `{app}/{app_version}` segments of a job route, placeholders filled in
/// ([`Params::segment`]).
pub fn app_version_segments(params: &Params, path: &(String, String)) -> (String, String) {
    (
        params.segment(&path.0, "app"),
        params.segment(&path.1, "app_version"),
    )
}

/// Parses a parameter that names an id; a malformed one is reported as `invalid`.
pub fn param_id<T: std::str::FromStr>(
    raw: &str,
    key: &str,
    invalid: ErrorCode,
) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(invalid, format!("`{key}` is not a valid id: {raw}")))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::requests::{CreateInferenceJobRequest, CreateTrainJobRequest, TrialsQuery};

    fn params(value: Value) -> Params {
        match value {
            Value::Object(map) => Params(map),
            _ => unreachable!(),
        }
    }

    fn refusal<T: DeserializeOwned>(value: Value) -> String {
        match params(value).parse::<T>() {
            Err(error) => error.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn numbers_objects_and_lists_may_come_as_text() {
        let job: CreateInferenceJobRequest =
            params(json!({"app": "a", "app_version": " 3 ", "budget": "{\"GPU_COUNT\": 0}"}))
                .parse()
                .unwrap();
        assert_eq!(job.app_version, Some(3));
        assert_eq!(job.budget.unwrap()["GPU_COUNT"], 0);
        let job: CreateTrainJobRequest = params(json!({"app": "a", "task": "T",
            "train_dataset_id": "x", "val_dataset_id": "y", "model_ids": "[\"m\"]",
            "budget": "null", "train_args": ""}))
        .parse()
        .unwrap();
        assert_eq!(job.model_ids.unwrap(), ["m"]);
        assert!(job.budget.is_none() && job.train_args.is_none());
        let query: TrialsQuery = params(json!({"type": "best", "max_count": "5"}))
            .parse()
            .unwrap();
        assert_eq!(
            (query.kind.as_deref(), query.max_count),
            (Some("best"), Some(5))
        );
    }

    #[test]
    fn a_missing_blank_or_mistyped_parameter_is_named() {
        let refused = refusal::<CreateInferenceJobRequest>(json!({"app_version": 1}));
        assert!(refused.contains("missing parameter `app`"), "{refused}");
        let refused = refusal::<CreateInferenceJobRequest>(json!({"app": "  "}));
        assert!(
            refused.contains("parameter `app` must not be empty"),
            "{refused}"
        );
        let refused = refusal::<CreateInferenceJobRequest>(json!({"app": 5}));
        assert!(
            refused.contains("parameter `app` must be a string"),
            "{refused}"
        );
        let refused = refusal::<CreateInferenceJobRequest>(json!({"app": "a", "app_version": 1.5}));
        assert!(
            refused.contains("`app_version` must be an integer"),
            "{refused}"
        );
        let refused = refusal::<CreateTrainJobRequest>(json!({"app": "a", "task": "T",
            "train_dataset_id": "x", "val_dataset_id": "y", "model_ids": [1]}));
        assert!(
            refused.contains("`model_ids` must be a list of strings"),
            "{refused}"
        );
    }
}
