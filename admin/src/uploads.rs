//! Uploads: multipart bodies streamed to the object store (never held in memory), and datasets
//! fetched from a URL without letting the URL reach into our own network.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::HttpRequest;
use actix_web::http::header;
use duma_common::store::{ObjectStore, StoredObject};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::params::Params;
use duma_common::api_error::{ApiError, ErrorCode};

/// Text fields of an upload are small; their total is bounded too.
const MAX_TEXT_FIELD_BYTES: usize = 256 << 10;

/// A file part an upload may carry: its field name and where in the object store it goes.
pub struct FilePart<'a> {
    pub field: &'a str,
    pub path: &'a str,
}

/// The text fields of a multipart body and its file parts, in the order they were asked for
/// (`None`: that part was not sent).
pub struct Upload {
    pub params: Params,
    pub files: Vec<Option<StoredObject>>,
}

pub fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Reads a multipart body: text fields into parameters (query string on top), each of `parts`
/// streamed into the object store at its path; all files together are refused past `limit` bytes.
pub async fn read_multipart(
    req: &HttpRequest,
    mut multipart: Multipart,
    parts: &[FilePart<'_>],
    store: &ObjectStore,
    limit: u64,
) -> Result<Upload, ApiError> {
    let result = read_parts(&mut multipart, parts, store, limit).await;
    let mut upload = match result {
        Ok(upload) => upload,
        Err(error) => {
            // Whatever was stored before the failure must not linger.
            for part in parts {
                let _ = store.delete(part.path).await;
            }
            return Err(error);
        }
    };
    upload.params.merge_query(req.query_string())?;
    Ok(upload)
}

async fn read_parts(
    multipart: &mut Multipart,
    parts: &[FilePart<'_>],
    store: &ObjectStore,
    limit: u64,
) -> Result<Upload, ApiError> {
    let mut params = Params::default();
    let mut files: Vec<Option<StoredObject>> = parts.iter().map(|_| None).collect();
    let mut left = limit;
    let mut text_bytes = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = field
            .map_err(|e| ApiError::invalid_request(format!("malformed multipart body: {e}")))?;
        let (name, is_file) = match field.content_disposition() {
            Some(cd) => (
                cd.get_name().unwrap_or_default().to_owned(),
                cd.get_filename().is_some(),
            ),
            None => (String::new(), false),
        };
        if let Some(slot) = parts.iter().position(|p| p.field == name) {
            if files[slot].is_some() {
                return Err(ApiError::invalid_request(format!(
                    "more than one `{name}` part"
                )));
            }
            let body = field.by_ref().map_err(|e| e.to_string());
            let stored = store.put_stream(parts[slot].path, body, left).await?;
            left = left.saturating_sub(stored.size_bytes);
            files[slot] = Some(stored);
        } else if is_file {
            let names: Vec<String> = parts.iter().map(|p| format!("`{}`", p.field)).collect();
            return Err(ApiError::invalid_request(format!(
                "unexpected file part `{name}`; files go in part {}",
                names.join(" or ")
            )));
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::invalid_request(format!("malformed multipart body: {e}"))
                })?;
                text_bytes += chunk.len();
                if text_bytes > MAX_TEXT_FIELD_BYTES {
                    return Err(ApiError::too_large(
                        "the form fields of the upload are too large",
                    ));
                }
                text.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(text).map_err(|_| {
                ApiError::invalid_request(format!("field `{name}` is not UTF-8 text"))
            })?;
            params.insert(name, Value::String(text));
        }
    }
    params.refuse_nul()?;
    Ok(Upload { params, files })
}

/// Where `dataset_url` may point.
pub struct FetchPolicy {
    pub timeout: Duration,
    pub allow_private: bool,
    pub limit: u64,
}

/// Downloads `url` into the object store at `path`.
pub async fn fetch_url(
    url: &str,
    policy: &FetchPolicy,
    store: &ObjectStore,
    path: &str,
) -> Result<StoredObject, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidDataset, message);
    let parsed =
        url::Url::parse(url).map_err(|e| invalid(format!("dataset_url is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "dataset_url must be http or https, not {}",
            parsed.scheme()
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid("dataset_url has no host".into()))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addresses: Vec<SocketAddr> = tokio::time::timeout(
        policy.timeout,
        tokio::net::lookup_host((lookup_host.as_str(), port)),
    )
    .await
    .map_err(|_| invalid(format!("resolving {host} timed out")))?
    .map_err(|e| invalid(format!("cannot resolve {host}: {e}")))?
    .collect();
    let address = *addresses
        .first()
        .ok_or_else(|| invalid(format!("{host} has no address")))?;
    if !policy.allow_private && addresses.iter().any(|a| !is_public(a.ip())) {
        return Err(invalid(format!(
            "refusing to fetch from {host}: it resolves to a loopback, private or otherwise internal address"
        )));
    }
    // Pin the address we vetted, so a second DNS answer cannot redirect the download.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.timeout)
        .resolve(&lookup_host, address)
        .build()
        .map_err(|e| ApiError::Internal(e.into()))?;
    let response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| invalid(format!("fetching dataset_url failed: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(invalid(format!("dataset_url answered {status}")));
    }
    if response
        .content_length()
        .is_some_and(|len| len > policy.limit)
    {
        return Err(ApiError::too_large(format!(
            "the dataset exceeds the limit of {} bytes",
            policy.limit
        )));
    }
    let body = response.bytes_stream().map_err(|e| e.to_string());
    Ok(store.put_stream(path, body, policy.limit).await?)
}

/// True for globally routable unicast addresses.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
