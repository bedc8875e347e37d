//! Waiting, with a deadline, until a started process serves.

use std::path::Path;
use std::time::{Duration, Instant};

use super::plan::Ready;
use super::supervisor::Supervised;

/// Startup only: probe often so `duma up` returns as soon as everything serves.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// A process that dies this often while starting will not start.
const MAX_EXITS_WHILE_STARTING: u32 = 3;

pub async fn wait(process: &Supervised, deadline: Duration, logs: &Path) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        if probe(&process.spec.ready).await {
            return Ok(());
        }
        let exits = *process.exits.borrow();
        if exits >= MAX_EXITS_WHILE_STARTING || Instant::now() >= until {
            let why = if exits >= MAX_EXITS_WHILE_STARTING {
                format!("exited {exits} times while starting")
            } else {
                format!("was not ready within {deadline:?}")
            };
            let log = logs.join(format!("{}.log", process.spec.name));
            anyhow::bail!(
                "{} {why}; the end of {}:\n{}",
                process.spec.name,
                log.display(),
                tail(&log, 20)
            );
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// One probe may take this long (a server that accepts but never answers).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn probe(ready: &Ready) -> bool {
    tokio::time::timeout(PROBE_TIMEOUT, probe_once(ready))
        .await
        .unwrap_or(false)
}

async fn probe_once(ready: &Ready) -> bool {
    match ready {
        Ready::Health(port) => duma_common::ops::healthcheck(*port).await.is_ok(),
        Ready::Postgres(url) => tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .is_ok(),
        // Connect, not just look: a socket file a killed server left behind accepts nothing.
        Ready::Socket(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
        Ready::Tcp(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_ok(),
        Ready::Http(url) => reqwest::get(url)
            .await
            .is_ok_and(|response| response.status().is_success()),
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
