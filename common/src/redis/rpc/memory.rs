//! [`MemoryBus`]: the RPC's request streams and replies inside one process, so the serving loops
//! (an advisor's, a hosted model's) can be tested without Redis. It keeps what those loops rely
//! on: an entry goes to one consumer, stays pending until it is answered, can be taken over
//! once it has idled, and its reply reaches the call waiting for it. Servers made with
//! [`RpcServer::in_memory`](super::RpcServer::in_memory) and clients made with
//! [`RpcClient::in_memory`](super::RpcClient::in_memory) on the same bus talk to each other.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::wire::{Request, Status};
use crate::redis::Keys;

/// The reply list every in-memory request names (replies go straight to the waiting call).
const REPLY_TO: &str = "memory";

#[derive(Clone)]
pub struct MemoryBus {
    keys: Arc<Keys>,
    state: Arc<Mutex<BusState>>,
    /// Woken whenever a request is queued.
    arrived: Arc<Notify>,
}

#[derive(Default)]
struct BusState {
    streams: HashMap<String, Stream>,
    waiters: HashMap<String, oneshot::Sender<(Status, Bytes)>>,
    entries: u64,
}

#[derive(Default)]
struct Stream {
    queued: VecDeque<Request>,
    pending: Vec<Pending>,
}

struct Pending {
    request: Request,
    consumer: String,
    since: Instant,
}

impl MemoryBus {
    /// A bus whose stream names carry `prefix`, as Redis keys would.
    pub fn new(prefix: &str) -> Self {
        Self {
            keys: Arc::new(Keys::new(prefix)),
            state: Arc::default(),
            arrived: Arc::default(),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Queues one request; the receiver gets its reply.
    pub(super) fn send(
        &self,
        stream: String,
        request_id: String,
        trace: String,
        deadline_ms: i64,
        payload: Bytes,
    ) -> oneshot::Receiver<(Status, Bytes)> {
        let (sender, receiver) = oneshot::channel();
        let mut state = self.state.lock();
        state.entries += 1;
        let request = Request {
            stream: stream.clone(),
            entry_id: format!("{}-0", state.entries),
            request_id: request_id.clone(),
            trace,
            reply_to: REPLY_TO.to_owned(),
            deadline_ms,
            payload,
        };
        state.waiters.insert(request_id, sender);
        state
            .streams
            .entry(stream)
            .or_default()
            .queued
            .push_back(request);
        drop(state);
        self.arrived.notify_waiters();
        receiver
    }

    /// The call behind `request_id` stopped waiting.
    pub(super) fn forget(&self, request_id: &str) {
        self.state.lock().waiters.remove(request_id);
    }

    /// Up to `count` queued requests of each of `streams`, now pending for `consumer`; waits up
    /// to `block` for the first.
    pub(super) async fn read(
        &self,
        consumer: &str,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Registered before looking, so a request queued in between still wakes this read.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let taken = self.take(consumer, streams, count);
            if !taken.is_empty() {
                return taken;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Vec::new();
            }
        }
    }

    fn take(&self, consumer: &str, streams: &[String], count: usize) -> Vec<Request> {
        let mut state = self.state.lock();
        let mut taken = Vec::new();
        for name in streams {
            let Some(stream) = state.streams.get_mut(name) else {
                continue;
            };
            let n = stream.queued.len().min(count);
            for request in stream.queued.drain(..n) {
                taken.push(request.clone());
                stream.pending.push(Pending {
                    request,
                    consumer: consumer.to_owned(),
                    since: Instant::now(),
                });
            }
        }
        taken
    }

    /// Takes over for `consumer` up to `count` requests of `stream` pending for `min_idle`.
    pub(super) fn reclaim(
        &self,
        consumer: &str,
        stream: &str,
        min_idle: Duration,
        count: usize,
    ) -> Vec<Request> {
        let mut state = self.state.lock();
        let Some(stream) = state.streams.get_mut(stream) else {
            return Vec::new();
        };
        stream
            .pending
            .iter_mut()
            .filter(|p| p.since.elapsed() >= min_idle)
            .take(count)
            .map(|p| {
                p.consumer = consumer.to_owned();
                p.since = Instant::now();
                p.request.clone()
            })
            .collect()
    }

    /// `(requests in the stream, requests read but not answered)`.
    pub(super) fn depth(&self, stream: &str) -> (u64, u64) {
        let state = self.state.lock();
        let Some(stream) = state.streams.get(stream) else {
            return (0, 0);
        };
        let pending = stream.pending.len() as u64;
        (stream.queued.len() as u64 + pending, pending)
    }

    /// Answers requests: each leaves its stream and its reply goes to the waiting call, if any.
    pub(super) fn respond(&self, replies: Vec<(Request, Status, Bytes)>) {
        let mut state = self.state.lock();
        for (request, status, body) in replies {
            if let Some(stream) = state.streams.get_mut(&request.stream) {
                stream
                    .pending
                    .retain(|p| p.request.request_id != request.request_id);
            }
            if let Some(waiter) = state.waiters.remove(&request.request_id) {
                let _ = waiter.send((status, body));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::MemoryBus;
    use crate::redis::rpc::{Reply, RpcClient, RpcError, RpcServer};

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn each_reply_reaches_its_call_with_its_status() {
        let bus = MemoryBus::new("t:");
        let (client, _tasks) = RpcClient::in_memory(&bus);
        let mut server = RpcServer::in_memory(&bus, "s1");
        let stream = server.stream("target");
        let calls = ["ok", "refused", "unavailable"]
            .map(|body| client.call("target", body.as_bytes().to_vec(), "trace-1", WAIT));
        let serve = async {
            let mut requests = Vec::new();
            while requests.len() < 3 {
                requests.extend(
                    server
                        .read(std::slice::from_ref(&stream), 10, WAIT)
                        .await
                        .unwrap(),
                );
            }
            assert!(requests.iter().all(|r| r.trace == "trace-1"));
            let replies = requests
                .into_iter()
                .map(|r| {
                    let reply = match &r.payload[..] {
                        b"ok" => Reply::Ok(Bytes::from_static(b"yes")),
                        b"refused" => Reply::Error("bad query".into()),
                        _ => Reply::Unavailable("restarting".into()),
                    };
                    (r, reply)
                })
                .collect();
            server.respond(replies).await.unwrap();
        };
        let (replies, ()) = tokio::join!(futures::future::join_all(calls), serve);
        let [ok, refused, unavailable]: [_; 3] = replies.try_into().unwrap();
        assert_eq!(&ok.unwrap()[..], b"yes");
        assert!(matches!(refused, Err(RpcError::Remote(m)) if m == "bad query"));
        assert!(matches!(unavailable, Err(RpcError::Unavailable(m)) if m == "restarting"));
        assert_eq!(server.depth(&stream).await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn a_request_read_after_its_deadline_is_answered_expired_not_served() {
        let bus = MemoryBus::new("t:");
        let (client, _tasks) = RpcClient::in_memory(&bus);
        let mut server = RpcServer::in_memory(&bus, "s1");
        let stream = server.stream("target");
        let call = client.call("target", b"late".to_vec(), "", Duration::from_millis(20));
        assert!(matches!(call.await, Err(RpcError::Timeout(_))));
        assert_eq!(server.depth(&stream).await.unwrap(), (1, 0));
        let read = server
            .read(std::slice::from_ref(&stream), 10, Duration::from_millis(10))
            .await
            .unwrap();
        assert!(read.is_empty(), "an expired request was handed out");
        assert_eq!(server.depth(&stream).await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn a_request_its_reader_never_answered_is_taken_over_and_answered() {
        let bus = MemoryBus::new("t:");
        let (client, _tasks) = RpcClient::in_memory(&bus);
        let mut dead = RpcServer::in_memory(&bus, "dead");
        let mut heir = RpcServer::in_memory(&bus, "heir");
        let stream = heir.stream("target");
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.call("target", b"q".to_vec(), "", WAIT).await }
        });
        let taken = dead
            .read(std::slice::from_ref(&stream), 10, WAIT)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        drop(dead);
        let idle = Duration::from_millis(50);
        assert!(heir.reclaim(&stream, idle, 10).await.unwrap().is_empty());
        tokio::time::sleep(idle).await;
        let orphans = heir.reclaim(&stream, idle, 10).await.unwrap();
        assert_eq!(orphans.len(), 1);
        let replies = orphans
            .into_iter()
            .map(|r| (r, Reply::Ok(Bytes::from_static(b"late but served"))))
            .collect();
        heir.respond(replies).await.unwrap();
        assert_eq!(&call.await.unwrap().unwrap()[..], b"late but served");
    }
}
