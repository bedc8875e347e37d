//! Supervised tasks: every long-running task of a service runs under [`supervise`], so a task
//! that dies is reported and ends the process (whose supervisor restarts it) instead of
//! vanishing; [`watchdog`] does the same for a loop that stalls; [`isolate`] keeps one bad piece
//! of work from taking the process down.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ops::Liveness;

/// How long tasks get to finish after the first one ended, before they are aborted.
const DRAIN_DEADLINE: Duration = Duration::from_secs(15);
/// How often the watchdog looks at the loops.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(1);

/// Ends with an error when one of the process's essential loops stalls: a process that no
/// longer makes progress is better restarted than left holding work it does not do.
pub async fn watchdog(liveness: Liveness, stop: CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(WATCHDOG_INTERVAL) => {}
        }
        let stalled = liveness.stalled();
        if !stalled.is_empty() {
            anyhow::bail!("stalled: {}", stalled.join("; "));
        }
    }
}

/// Waits for the first of `tasks` to end — shutdown, or a vital task failing — then stops the
/// others through `stop` and gives them [`DRAIN_DEADLINE`] to finish before aborting them.
/// Returns the first task's result, so a failure exits the process non-zero with its reason.
pub async fn supervise(
    mut tasks: JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let first = tasks.join_next().await;
    stop.cancel();
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::error!(
            tasks = tasks.len(),
            "tasks did not stop within {DRAIN_DEADLINE:?}; aborting them"
        );
        tasks.abort_all();
    }
    match first {
        Some(Ok(result)) => {
            if let Err(error) = &result {
                tracing::error!(error = format!("{error:#}"), "a vital task failed");
            }
            result
        }
        Some(Err(panic)) => Err(anyhow::anyhow!("a task panicked: {panic}")),
        None => Ok(()),
    }
}

/// Runs `work`, turning a panic inside it into an error naming the panic: one bad input (a sub
/// job, a model) must end that piece of work, never the worker serving everyone else's.
pub async fn isolate<T>(work: impl Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned())
        })
}
