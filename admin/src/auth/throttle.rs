//! Login throttling: too many failed logins for one account, or from one client address, within
//! a window lock further attempts out (429 with `Retry-After`) before any password is hashed; and
//! a bound on how many password hashes run at once (each costs ~19 MiB and tens of milliseconds).
//!
//! Only failures count, so scripts that log in often are never held up. The state is per admin
//! process (one admin is the norm; with several, each enforces its own limits).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// Keys tracked at most per limiter; the stalest are forgotten first (an enumeration attack
/// cannot grow memory without bound).
const MAX_KEYS: usize = 100_000;

/// Failures per key within a sliding window.
struct FailureWindow {
    limit: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureWindow {
    fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::default(),
        }
    }

    /// How long `key` stays locked out, if it is.
    fn locked_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = failures.get(key)?;
        let recent: Vec<&Instant> = times
            .iter()
            .filter(|t| now.duration_since(**t) < self.window)
            .collect();
        if recent.len() < self.limit {
            return None;
        }
        // Unlocked once the oldest failure that keeps the count at the limit leaves the window.
        let oldest = recent[recent.len() - self.limit];
        Some(self.window.saturating_sub(now.duration_since(*oldest)))
    }

    fn record(&self, key: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_KEYS && !failures.contains_key(key) {
            let window = self.window;
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            if failures.len() >= MAX_KEYS {
                let stalest = failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(stalest) = stalest {
                    failures.remove(&stalest);
                }
            }
        }
        let times = failures.entry(key.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
    }
}

/// The limits: per account, per client address, and on concurrent hashing.
pub struct LoginThrottle {
    accounts: FailureWindow,
    addresses: FailureWindow,
    pub hashing: Semaphore,
}

impl LoginThrottle {
    pub fn new(
        per_account: usize,
        per_address: usize,
        window: Duration,
        concurrent_hashes: usize,
    ) -> Self {
        Self {
            accounts: FailureWindow::new(per_account, window),
            addresses: FailureWindow::new(per_address, window),
            hashing: Semaphore::new(concurrent_hashes),
        }
    }

    /// How long the caller must wait before trying this account from this address again.
    pub fn locked_for(&self, account: &str, address: &str) -> Option<Duration> {
        let now = Instant::now();
        let account = self.accounts.locked_for(&account.to_lowercase(), now);
        let address = self.addresses.locked_for(address, now);
        account.max(address)
    }

    pub fn record_failure(&self, account: &str, address: &str) {
        let now = Instant::now();
        self.accounts.record(&account.to_lowercase(), now);
        self.addresses.record(address, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_after_the_limit_until_its_oldest_failure_leaves_the_window() {
        let window = FailureWindow::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(window.locked_for("a", start), None, "after {i} failures");
            window.record("a", start + Duration::from_secs(i));
        }
        let now = start + Duration::from_secs(10);
        assert_eq!(window.locked_for("a", now), Some(Duration::from_secs(50)));
        assert_eq!(window.locked_for("b", now), None, "other keys are free");
        assert_eq!(
            window.locked_for("a", start + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn the_account_or_the_address_alone_locks() {
        let throttle = LoginThrottle::new(2, 3, Duration::from_secs(60), 1);
        throttle.record_failure("Alice@x.io", "10.0.0.1");
        throttle.record_failure("alice@x.io", "10.0.0.2");
        assert!(throttle.locked_for("ALICE@x.io", "10.0.0.9").is_some());
        throttle.record_failure("bob@x.io", "10.0.0.3");
        throttle.record_failure("carol@x.io", "10.0.0.3");
        throttle.record_failure("dave@x.io", "10.0.0.3");
        assert!(throttle.locked_for("erin@x.io", "10.0.0.3").is_some());
        assert!(throttle.locked_for("erin@x.io", "10.0.0.4").is_none());
    }
}
