//! Liveness: whether a service's essential loops still make progress.
//!
//! Each loop holds a [`Probe`] and calls [`Probe::beat`] once per iteration; a loop that has not
//! beaten within its deadline is *stalled*. `/health` fails while any loop is stalled, and the
//! worker host's watchdog ends the process, so whatever supervises it (`duma up`, compose's
//! restart policy, Swarm, Kubernetes) starts a fresh one. A probe that is dropped (its loop
//! ended) stops counting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The loops of one process.
#[derive(Clone, Default)]
pub struct Liveness {
    probes: Arc<Mutex<Vec<Weak<ProbeState>>>>,
}

struct ProbeState {
    name: String,
    deadline: Duration,
    /// Milliseconds since [`epoch`] at the last beat.
    last_beat_ms: AtomicU64,
}

/// The handle of one loop (clones beat for the same loop).
#[derive(Clone)]
pub struct Probe {
    state: Arc<ProbeState>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Liveness {
    /// Registers a loop that must beat at least every `deadline`; it counts as beaten now.
    pub fn probe(&self, name: impl Into<String>, deadline: Duration) -> Probe {
        let state = Arc::new(ProbeState {
            name: name.into(),
            deadline,
            last_beat_ms: AtomicU64::new(now_ms()),
        });
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|p| p.strong_count() > 0);
        probes.push(Arc::downgrade(&state));
        Probe { state }
    }

    /// The stalled loops, each described with how long it has been silent.
    pub fn stalled(&self) -> Vec<String> {
        let now = now_ms();
        let probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|p| {
                let silent = Duration::from_millis(
                    now.saturating_sub(p.last_beat_ms.load(Ordering::Relaxed)),
                );
                (silent > p.deadline).then(|| {
                    format!(
                        "{}: no progress for {:.0} s (deadline {:.0} s)",
                        p.name,
                        silent.as_secs_f64(),
                        p.deadline.as_secs_f64()
                    )
                })
            })
            .collect()
    }
}

/// How often [`Probe::hold`] beats while it waits.
const HOLD_BEAT: Duration = Duration::from_secs(1);

impl Probe {
    /// The loop made progress.
    pub fn beat(&self) {
        self.state.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Awaits `work`, beating meanwhile: for work that may rightly take longer than the loop's
    /// deadline and is bounded by a deadline of its own (a trial, building a virtualenv, loading
    /// a model).
    pub async fn hold<F: std::future::Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        let mut beats = tokio::time::interval(HOLD_BEAT);
        loop {
            tokio::select! {
                done = &mut work => {
                    self.beat();
                    return done;
                }
                _ = beats.tick() => self.beat(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_holding_for_long_work_is_not_stalled() {
        let liveness = Liveness::default();
        let probe = liveness.probe("loop", Duration::from_millis(1500));
        let stalled = probe
            .hold(async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                liveness.stalled()
            })
            .await;
        assert!(stalled.is_empty(), "{stalled:?}");
    }

    #[test]
    fn a_loop_is_stalled_only_past_its_deadline_and_only_while_it_exists() {
        let liveness = Liveness::default();
        let quick = liveness.probe("quick loop", Duration::from_millis(30));
        let slow = liveness.probe("slow loop", Duration::from_secs(60));
        assert!(liveness.stalled().is_empty());
        std::thread::sleep(Duration::from_millis(60));
        let stalled = liveness.stalled();
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert!(
            stalled[0].starts_with("quick loop: no progress"),
            "{stalled:?}"
        );
        quick.beat();
        assert!(liveness.stalled().is_empty());
        std::thread::sleep(Duration::from_millis(60));
        drop(quick);
        assert!(
            liveness.stalled().is_empty(),
            "an ended loop does not count"
        );
        slow.beat();
    }
}
