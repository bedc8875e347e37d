//! Work a worker holds under leases and serves from one request stream each: the sub jobs of an
//! advisor, the trial replicas of an inference worker.

use std::collections::HashMap;

use prometheus::IntGauge;

use crate::db::{PgPool, workers};
use duma_domain::{LeaseId, LeaseKind, WorkerId};

/// What a worker holds: per lease, the stream it serves and its state `T`.
pub struct LeasedStreams<T> {
    held: HashMap<LeaseId, (String, T)>,
    by_stream: HashMap<String, LeaseId>,
    /// How much is held, for `/metrics`.
    gauge: IntGauge,
}

impl<T> LeasedStreams<T> {
    pub fn new(gauge: IntGauge) -> Self {
        Self {
            held: HashMap::new(),
            by_stream: HashMap::new(),
            gauge,
        }
    }

    pub fn insert(&mut self, lease: LeaseId, stream: String, value: T) {
        self.remove(lease);
        self.by_stream.insert(stream.clone(), lease);
        self.held.insert(lease, (stream, value));
        self.update_gauge();
    }

    pub fn remove(&mut self, lease: LeaseId) -> Option<T> {
        let (stream, value) = self.held.remove(&lease)?;
        self.by_stream.remove(&stream);
        self.update_gauge();
        Some(value)
    }

    /// The lease serving `stream` and its state.
    pub fn by_stream_mut(&mut self, stream: &str) -> Option<(LeaseId, &mut T)> {
        let lease = *self.by_stream.get(stream)?;
        self.held.get_mut(&lease).map(|(_, value)| (lease, value))
    }

    pub fn get_mut(&mut self, lease: LeaseId) -> Option<&mut T> {
        self.held.get_mut(&lease).map(|(_, value)| value)
    }

    /// The streams to read from now.
    pub fn streams(&self) -> Vec<String> {
        self.by_stream.keys().cloned().collect()
    }

    pub fn leases(&self) -> Vec<LeaseId> {
        self.held.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Matches what is held here with what Postgres says this worker holds, both ways:
    /// - drops (and returns) what the worker no longer holds there (a lease expired and was
    ///   reclaimed while the worker stalled, or its job ended and the lease was deleted);
    /// - gives back what it holds there but does not serve: a claim whose hosting failed midway
    ///   (Redis or Postgres gone between the claim and [`Self::insert`]). Kept, such a lease would
    ///   be renewed by every heartbeat and served by nobody, for good.
    ///
    /// Call it from the loop that claims, never concurrently with a claim in progress.
    pub async fn reconcile(
        &mut self,
        pool: &PgPool,
        worker: WorkerId,
    ) -> anyhow::Result<Vec<(LeaseId, T)>> {
        let db = pool.get().await?;
        let still_held: Vec<LeaseId> = workers::leases_held(&db, worker)
            .await?
            .into_iter()
            .map(|l| l.id)
            .collect();
        for stray in still_held.iter().filter(|id| !self.held.contains_key(id)) {
            tracing::warn!(lease_id = %stray, "giving back a lease claimed but never served");
            workers::release(&db, *stray, worker).await?;
        }
        drop(db);
        let lost: Vec<LeaseId> = self
            .held
            .keys()
            .filter(|id| !still_held.contains(id))
            .copied()
            .collect();
        Ok(lost
            .into_iter()
            .filter_map(|lease| self.remove(lease).map(|value| (lease, value)))
            .collect())
    }

    /// Claims the next free lease of `kind` while fewer than `capacity` are held.
    pub async fn claim_next(
        &self,
        pool: &PgPool,
        kind: LeaseKind,
        worker: WorkerId,
        capacity: usize,
        ttl: std::time::Duration,
    ) -> anyhow::Result<Option<workers::Lease>> {
        if self.held.len() >= capacity {
            return Ok(None);
        }
        let db = pool.get().await?;
        Ok(workers::claim(&db, kind, worker, ttl).await?)
    }

    /// Claims the next free SERVE lease at one of `levels` needing at most `free_gpus` GPUs
    /// (see [`workers::claim_serving`]) while fewer than `capacity` are held.
    pub async fn claim_next_serving(
        &self,
        pool: &PgPool,
        worker: WorkerId,
        capacity: usize,
        ttl: std::time::Duration,
        levels: &[String],
        free_gpus: u32,
    ) -> anyhow::Result<Option<workers::Lease>> {
        if self.held.len() >= capacity {
            return Ok(None);
        }
        let db = pool.get().await?;
        Ok(workers::claim_serving(&db, worker, ttl, levels, free_gpus).await?)
    }

    fn update_gauge(&self) {
        self.gauge
            .set(i64::try_from(self.held.len()).unwrap_or(i64::MAX));
    }
}
