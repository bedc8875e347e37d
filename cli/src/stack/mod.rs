//! `duma up` / `duma down`: the compose topology as local processes under one data directory,
//! on the system's PostgreSQL and Redis (and nginx and Prometheus when installed).
//!
//! | file | what |
//! |---|---|
//! | [`layout`] | the data directory: folders, secrets, pid file |
//! | [`plan`] | which processes run, with which ports, environment and generated configs |
//! | [`supervisor`] | one task per process: start, restart with backoff, stop in order |
//! | [`readiness`] | waits (with deadlines) until a process serves |

mod layout;
mod plan;
mod readiness;
mod supervisor;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use layout::DataDir;
use plan::{Plan, Ports, Replicas, Tier};
use supervisor::Supervised;

/// Options of `duma up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where PostgreSQL, Redis, the object store, secrets and logs live (kept across runs).
    #[arg(long, default_value = ".duma")]
    pub data_dir: PathBuf,
    /// Admin REST API port.
    #[arg(long, default_value_t = 3000)]
    pub admin_port: u16,
    /// nginx port, in front of the predictors (the predictor host the admin hands out).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Prometheus port.
    #[arg(long, default_value_t = 9090)]
    pub prometheus_port: u16,
    /// Port of the first predictor; further replicas take the next ports.
    #[arg(long, default_value_t = 3100)]
    pub predictor_port: u16,
    /// nginx ports (`FIRST-LAST`) that give each live inference job a port of its own, so its
    /// `predictor_host` is a plain `host:port` (as in Rafiki); empty for none.
    #[arg(long, default_value = "30000-30019", value_parser = inference_job_ports)]
    pub inference_job_ports: InferenceJobPorts,
    /// Port (`/health`, `/metrics`) of the advisor worker; the train and inference workers take
    /// the next ports.
    #[arg(long, default_value_t = 3201)]
    pub worker_port: u16,
    /// Predictor replicas (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub predictors: u16,
    /// Train worker replicas (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub train_workers: u16,
    /// Inference worker replicas (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub inference_workers: u16,
}

/// A parsed `--inference-job-ports`.
#[derive(Debug, Clone)]
pub struct InferenceJobPorts(pub Option<std::ops::RangeInclusive<u16>>);

fn inference_job_ports(text: &str) -> Result<InferenceJobPorts, String> {
    duma_common::config::port_range(text).map(InferenceJobPorts)
}

/// Options of `duma down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The data directory `duma up` runs from.
    #[arg(long, default_value = ".duma")]
    pub data_dir: PathBuf,
}

/// How long a start may take before `duma up` gives up, and a stop before it kills.
const START_DEADLINE: Duration = Duration::from_secs(90);
const DOWN_DEADLINE: Duration = Duration::from_secs(120);

pub fn up(args: UpArgs, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    // One thread: every child is spawned from it, so their parent-death signal fires only when
    // `duma up` itself is gone.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_up(args, config_file))
}

async fn run_up(args: UpArgs, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = DataDir::open(&args.data_dir)?;
    let _pid_file = data.claim()?;
    let plan = Plan::new(
        &data,
        Ports {
            admin: args.admin_port,
            http: args.http_port,
            prometheus: args.prometheus_port,
            predictor: args.predictor_port,
            worker: args.worker_port,
            inference_jobs: args.inference_job_ports.0,
        },
        Replicas {
            predictors: args.predictors,
            train_workers: args.train_workers,
            inference_workers: args.inference_workers,
        },
        config_file,
    )?;
    plan.check_ports_free()?;

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // The terminal closing stops the stack in order too.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut running: Vec<Supervised> = Vec::new();
    let startup = async {
        for tier in Tier::ALL {
            plan.prepare(tier).await?;
            let first = running.len();
            for spec in plan.processes(tier)? {
                eprintln!("duma: starting {}", spec.name);
                running.push(supervisor::start(spec, data.logs()));
            }
            for process in &running[first..] {
                readiness::wait(process, START_DEADLINE, data.logs()).await?;
            }
            plan.after(tier).await?;
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        result = startup => result,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted while starting")),
        _ = terminate.recv() => Err(anyhow::anyhow!("stopped while starting")),
        _ = hangup.recv() => Err(anyhow::anyhow!("hung up while starting")),
    };
    match outcome {
        Ok(()) => {
            plan.print_ready(started.elapsed());
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                _ = hangup.recv() => {}
            }
            eprintln!("duma: stopping");
            supervisor::stop_all(running).await;
            eprintln!("duma: stopped");
            Ok(())
        }
        Err(error) => {
            supervisor::stop_all(running).await;
            Err(error)
        }
    }
}

pub fn down(args: &DownArgs) -> anyhow::Result<()> {
    let data = DataDir::existing(&args.data_dir)?;
    let Some(pid) = data.running_pid() else {
        eprintln!("duma: nothing runs from {}", data.root().display());
        return Ok(());
    };
    if !duma_common::process::send_signal(pid, libc::SIGTERM) {
        anyhow::bail!(
            "cannot signal duma up (pid {pid}): {} (run duma down as the user that ran duma up)",
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + DOWN_DEADLINE;
    while data.running_pid().is_some() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "duma up (pid {pid}) is still stopping after {DOWN_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("duma: stopped the stack in {}", data.root().display());
    Ok(())
}
