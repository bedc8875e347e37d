//! One id per HTTP request, from nginx to the model and back: the caller's `X-Request-Id` when it
//! is a plausible id (nginx sets one on every request it forwards), else a new one. It names the
//! request's tracing span, goes back in the response's `X-Request-Id`, and the predictor sends it
//! inside the RPC envelope so the inference worker that answers logs it too.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tracing::Instrument;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a caller; longer ones are replaced.
const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id (32 hex digits, the shape of nginx's `$request_id`).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// `raw` if it is 1–64 characters of `[A-Za-z0-9._-]`: safe in logs, headers and the comma
    /// separated lists of the RPC envelope.
    pub fn parse(raw: &str) -> Option<Self> {
        let plausible = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        plausible.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id [`assign_request_id`] gave the request (a fresh one where the middleware is not
/// mounted).
impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ready(Ok(id.unwrap_or_else(RequestId::generate)))
    }
}

/// Middleware (`from_fn(assign_request_id)`): gives every request its id and span, and answers
/// with the id in `X-Request-Id`.
pub async fn assign_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = %req.method(),
        route = req.match_pattern().unwrap_or_default(),
    );
    let mut response = next.call(req).instrument(span).await?;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_plausible_ids_and_refuses_the_rest() {
        assert!(RequestId::parse("0f8e4c2a9b1d4e6f8a0b2c4d6e8f0a1b").is_some());
        assert!(RequestId::parse("client-7.retry_2").is_some());
        for hostile in ["", "a,b", "a b", "x\r\nSet-Cookie: y", &"a".repeat(65), "é"] {
            assert!(RequestId::parse(hostile).is_none(), "{hostile:?}");
        }
    }
}
