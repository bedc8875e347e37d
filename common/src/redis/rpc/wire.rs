//! The bytes on Redis. A stream entry holds the requests one client sent one target in one
//! round trip:
//!
//! | field | value |
//! |---|---|
//! | `rids` | the requests' ids (32 hex digits each), comma separated |
//! | `traces` | the id each request is traced by (an HTTP request id), comma separated, same order |
//! | `reply` | the requesting instance's reply list |
//! | `deadline` | unix milliseconds after which nobody waits (the earliest of the requests') |
//! | `body` | the payloads, each prefixed by its 4-byte big-endian length |
//!
//! A reply frame is `<request id><status byte><payload>`.

use std::collections::HashMap;

use bytes::Bytes;
use redis::Value;

pub(super) const REQUEST_ID_LEN: usize = 32;

/// How a request ended, as its reply frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    /// The caller's input is at fault.
    Error,
    /// Nobody took the request before its deadline.
    Expired,
    /// A platform fault on the serving side.
    Unavailable,
    /// Local only: the request could not be written to Redis.
    SendFailed,
}

impl Status {
    pub(super) const fn byte(self) -> u8 {
        match self {
            Status::Ok => b'O',
            Status::Error => b'E',
            Status::Expired => b'X',
            Status::Unavailable => b'U',
            Status::SendFailed => b'R',
        }
    }

    /// An unknown status byte (a newer server) is read as the request failing.
    fn from_byte(byte: u8) -> Self {
        [
            Status::Ok,
            Status::Expired,
            Status::Unavailable,
            Status::SendFailed,
        ]
        .into_iter()
        .find(|status| status.byte() == byte)
        .unwrap_or(Status::Error)
    }
}

/// One request as a client queues it.
pub(super) struct Outgoing {
    pub stream: String,
    pub request_id: String,
    pub trace: String,
    pub deadline_ms: i64,
    pub payload: Bytes,
}

/// The fields of the one entry that carries `requests` (all to one stream).
pub(super) fn entry_fields(
    requests: &[&Outgoing],
    reply_list: &str,
) -> Vec<(&'static str, Vec<u8>)> {
    let join = |part: fn(&Outgoing) -> &str| {
        requests
            .iter()
            .map(|r| part(r))
            .collect::<Vec<_>>()
            .join(",")
            .into_bytes()
    };
    let deadline = requests
        .iter()
        .map(|r| r.deadline_ms)
        .min()
        .unwrap_or_default();
    let mut body = Vec::with_capacity(requests.iter().map(|r| 4 + r.payload.len()).sum());
    for request in requests {
        let length = u32::try_from(request.payload.len()).unwrap_or(u32::MAX);
        body.extend_from_slice(&length.to_be_bytes());
        body.extend_from_slice(&request.payload);
    }
    vec![
        ("rids", join(|r| &r.request_id)),
        ("traces", join(|r| &r.trace)),
        ("reply", reply_list.as_bytes().to_vec()),
        ("deadline", deadline.to_string().into_bytes()),
        ("body", body),
    ]
}

/// A trace id safe inside the comma separated `traces` field.
pub(super) fn trace_field(trace: &str) -> String {
    trace.replace(',', "_")
}

/// One request as a server reads it.
#[derive(Debug, Clone)]
pub struct Request {
    pub stream: String,
    pub entry_id: String,
    pub request_id: String,
    /// What the caller traces this request by (the HTTP request id behind a prediction); empty
    /// when the caller sent none.
    pub trace: String,
    pub reply_to: String,
    /// Unix milliseconds after which nobody waits for the reply.
    pub deadline_ms: i64,
    pub payload: Bytes,
}

impl Request {
    pub fn is_expired(&self) -> bool {
        chrono::Utc::now().timestamp_millis() > self.deadline_ms
    }

    /// How long the caller still waits for the reply (zero once it stopped).
    pub fn time_left(&self) -> std::time::Duration {
        let left = self.deadline_ms - chrono::Utc::now().timestamp_millis();
        std::time::Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }
}

/// The requests of one stream entry; a truncated body ends the list where it breaks.
pub(super) fn parse_entry(
    stream: &str,
    entry_id: String,
    map: &HashMap<String, Value>,
) -> Vec<Request> {
    let bytes = |field: &str| match map.get(field) {
        Some(Value::BulkString(b)) => Bytes::copy_from_slice(b),
        Some(Value::SimpleString(s)) => Bytes::copy_from_slice(s.as_bytes()),
        _ => Bytes::new(),
    };
    let text = |field: &str| String::from_utf8_lossy(&bytes(field)).into_owned();
    let reply_to = text("reply");
    let deadline_ms = text("deadline").parse().unwrap_or(0);
    let traces = text("traces");
    let mut traces = traces.split(',');
    let body = bytes("body");
    let mut offset = 0;
    let mut requests = Vec::new();
    for request_id in text("rids").split(',').filter(|id| !id.is_empty()) {
        let Some(length) = body
            .get(offset..offset + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            break;
        };
        let length = u32::from_be_bytes(length) as usize;
        let Some(payload) = body.get(offset + 4..offset + 4 + length) else {
            break;
        };
        offset += 4 + length;
        requests.push(Request {
            stream: stream.to_owned(),
            entry_id: entry_id.clone(),
            request_id: request_id.to_owned(),
            trace: traces.next().unwrap_or_default().to_owned(),
            reply_to: reply_to.clone(),
            deadline_ms,
            payload: body.slice_ref(payload),
        });
    }
    requests
}

pub(super) fn reply_frame(request_id: &str, status: Status, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(REQUEST_ID_LEN + 1 + body.len());
    frame.extend_from_slice(request_id.as_bytes());
    frame.push(status.byte());
    frame.extend_from_slice(body);
    frame
}

/// `(request id, status, payload)` of a reply frame; `None` for a frame too short to be one.
pub(super) fn parse_reply_frame(frame: &[u8]) -> Option<(&str, Status, Bytes)> {
    if frame.len() <= REQUEST_ID_LEN {
        return None;
    }
    let (id, rest) = frame.split_at(REQUEST_ID_LEN);
    let id = std::str::from_utf8(id).ok()?;
    Some((
        id,
        Status::from_byte(rest[0]),
        Bytes::copy_from_slice(&rest[1..]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(id: char, trace: &str, payload: &[u8], deadline_ms: i64) -> Outgoing {
        Outgoing {
            stream: "s".into(),
            request_id: id.to_string().repeat(REQUEST_ID_LEN),
            trace: trace.into(),
            deadline_ms,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn an_entry_reads_back_as_the_requests_it_carries() {
        let (a, b) = (
            outgoing('a', "t1", b"{}", 20),
            outgoing('b', "", b"[1,2]", 10),
        );
        let fields = entry_fields(&[&a, &b], "replies");
        let map = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::BulkString(v)))
            .collect();
        let requests = parse_entry("s", "1-0".into(), &map);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].request_id, a.request_id);
        assert_eq!(requests[0].trace, "t1");
        assert_eq!(&requests[0].payload[..], b"{}");
        assert_eq!(requests[1].trace, "");
        assert_eq!(&requests[1].payload[..], b"[1,2]");
        assert!(
            requests
                .iter()
                .all(|r| r.deadline_ms == 10 && r.reply_to == "replies")
        );
    }

    #[test]
    fn a_truncated_body_yields_the_whole_requests_only() {
        let a = outgoing('a', "t", b"abcdef", 1);
        let mut map: HashMap<String, Value> = entry_fields(&[&a, &a], "r")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::BulkString(v)))
            .collect();
        if let Some(Value::BulkString(body)) = map.get_mut("body") {
            body.truncate(12);
        }
        assert_eq!(parse_entry("s", "1-0".into(), &map).len(), 1);
    }

    #[test]
    fn reply_frames_round_trip_and_unknown_statuses_are_failures() {
        let id = "f".repeat(REQUEST_ID_LEN);
        for status in [
            Status::Ok,
            Status::Error,
            Status::Expired,
            Status::Unavailable,
        ] {
            let frame = reply_frame(&id, status, b"body");
            let (read_id, read_status, body) = parse_reply_frame(&frame).unwrap();
            assert_eq!(
                (read_id, read_status, &body[..]),
                (id.as_str(), status, &b"body"[..])
            );
        }
        let mut odd = reply_frame(&id, Status::Ok, b"");
        odd[REQUEST_ID_LEN] = b'?';
        assert_eq!(parse_reply_frame(&odd).unwrap().1, Status::Error);
        assert!(parse_reply_frame(id.as_bytes()).is_none());
    }
}
