//! Readiness conditions of a service's own: work it has taken on and cannot do yet (an inference
//! worker loading a model it holds the lease of). `/health` fails while any is pending; liveness
//! (`/live`) does not look at them — a service busy loading is alive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Pending {
    reasons: Arc<Mutex<BTreeMap<u64, String>>>,
    next: Arc<AtomicU64>,
}

/// Clears its reason when dropped.
#[must_use = "the reason is cleared when the guard is dropped"]
pub struct PendingGuard {
    reasons: Arc<Mutex<BTreeMap<u64, String>>>,
    key: u64,
}

impl Pending {
    /// Marks the service not ready for `reason` until the guard is dropped.
    pub fn begin(&self, reason: impl Into<String>) -> PendingGuard {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, reason.into());
        PendingGuard {
            reasons: self.reasons.clone(),
            key,
        }
    }

    /// What the service is waiting for, oldest first.
    pub fn reasons(&self) -> Vec<String> {
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::Pending;

    #[test]
    fn a_reason_counts_exactly_while_its_guard_lives() {
        let pending = Pending::default();
        let loading = pending.begin("model a: loading");
        let other = pending.begin("model b: loading");
        assert_eq!(pending.reasons(), ["model a: loading", "model b: loading"]);
        drop(loading);
        assert_eq!(pending.reasons(), ["model b: loading"]);
        drop(other);
        assert!(pending.reasons().is_empty());
    }
}
