//! One task per process: start it, restart it with backoff when it dies, stop it cleanly.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use duma_common::process::{die_with_parent, kill_group, run_as, send_signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::plan::{ADMIN_SECRETS, Inherit, ProcessSpec, Tier, log_file};

/// A clean stop gets this long before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// Stops slower than this are reported.
const SLOW_STOP: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long before dying is restarted after the first backoff again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

pub struct Supervised {
    pub spec: ProcessSpec,
    /// How many times the process has exited on its own.
    pub exits: watch::Receiver<u32>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Starts `spec` (its output appended to `logs/<name>.log`) and keeps it running.
pub fn start(spec: ProcessSpec, logs: &Path) -> Supervised {
    let (exits_tx, exits) = watch::channel(0);
    let stop = CancellationToken::new();
    let task = tokio::spawn(keep_running(
        spec.clone(),
        logs.to_path_buf(),
        exits_tx,
        stop.clone(),
    ));
    Supervised {
        spec,
        exits,
        stop,
        task,
    }
}

async fn keep_running(
    spec: ProcessSpec,
    logs: std::path::PathBuf,
    exits: watch::Sender<u32>,
    stop: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let failure = match spawn(&spec, &logs) {
            Ok(mut child) => tokio::select! {
                status = child.wait() => match status {
                    Ok(status) => format!("exited ({status})"),
                    Err(error) => format!("could not be waited for: {error}"),
                },
                () = stop.cancelled() => {
                    terminate(&spec, &mut child).await;
                    return;
                }
            },
            Err(error) => format!("could not start: {error:#}"),
        };
        exits.send_modify(|count| *count += 1);
        if started.elapsed() > STABLE_AFTER {
            backoff = FIRST_BACKOFF;
        }
        eprintln!(
            "duma: {} {failure}; restarting in {:.1} s (log: {})",
            spec.name,
            backoff.as_secs_f64(),
            logs.join(format!("{}.log", spec.name)).display()
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(spec: &ProcessSpec, logs: &Path) -> anyhow::Result<tokio::process::Child> {
    let log = log_file(logs, &spec.name)?;
    let mut command = std::process::Command::new(&spec.program);
    match spec.inherit {
        Inherit::All => {}
        Inherit::AllButAdminSecrets => {
            for name in ADMIN_SECRETS {
                command.env_remove(name);
            }
        }
        Inherit::Minimal => {
            command.env_clear();
            for name in ["PATH", "LANG"] {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
        }
    }
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C reaches `duma up`, which stops everything in order.
        .process_group(0);
    run_as(&mut command, spec.user);
    die_with_parent(&mut command, spec.stop_signal);
    Ok(tokio::process::Command::from(command).spawn()?)
}

/// Sends the stop signal, then kills the process if it is still there after the grace period.
async fn terminate(spec: &ProcessSpec, child: &mut tokio::process::Child) {
    let began = Instant::now();
    if let Some(pid) = child.id() {
        send_signal(pid, spec.stop_signal);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        eprintln!(
            "duma: {} did not stop within {STOP_GRACE:?}; killing it",
            spec.name
        );
        // Each child leads its own process group: take its helpers (nginx workers, PostgreSQL
        // backends) with it.
        if let Some(pid) = child.id() {
            kill_group(pid);
        }
        let _ = child.kill().await;
    }
    let took = began.elapsed();
    if took > SLOW_STOP {
        eprintln!(
            "duma: {} took {:.1} s to stop",
            spec.name,
            took.as_secs_f64()
        );
    }
}

/// Stops everything: the front first, the stores last; the processes of a tier together.
pub async fn stop_all(mut running: Vec<Supervised>) {
    for tier in Tier::ALL.into_iter().rev() {
        let (stopping, rest): (Vec<_>, Vec<_>) =
            running.into_iter().partition(|p| p.spec.tier == tier);
        running = rest;
        for process in &stopping {
            process.stop.cancel();
        }
        for process in stopping {
            let _ = process.task.await;
        }
    }
}
