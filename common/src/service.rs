//! What every service binary does around its `run`: read settings, start telemetry, build the
//! runtime, handle the `healthcheck` subcommand, turn errors into exit codes.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// The `--config` option every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Optional TOML file; `DUMA_*` environment variables override it.
    #[arg(long, env = "DUMA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads and validates the settings, or explains on stderr why not.
    pub fn load(&self) -> Result<Settings, ExitCode> {
        Settings::load(self.config.as_deref()).map_err(|error| {
            eprintln!("{error}");
            ExitCode::from(2)
        })
    }
}

/// How long blocking threads get to finish once the service returned.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `body` on a multi-threaded runtime and maps its result to an exit code.
pub fn block_on<F>(body: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(body);
    // A blocking thread stuck in model code must not keep a stopping process alive.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "exiting after a fatal error");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves a service until SIGTERM/Ctrl-C: telemetry, then `run(settings, shutdown)`.
pub fn serve<F, Fut>(name: &'static str, settings: Settings, run: F) -> ExitCode
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init(&settings.log);
    crate::process::return_large_blocks();
    if let Err(error) = crate::process::forbid_inspection() {
        tracing::warn!(%error, "cannot make the process non-dumpable");
    }
    block_on(async move {
        let shutdown = crate::shutdown::on_signal();
        tracing::info!(
            service = name,
            version = env!("CARGO_PKG_VERSION"),
            "starting"
        );
        let result = run(settings, shutdown).await;
        tracing::info!(service = name, "stopped");
        result
    })
}

/// The `healthcheck` subcommand: exit 0 when the local service on `port` is ready.
pub fn healthcheck(port: u16) -> ExitCode {
    block_on(crate::ops::healthcheck(port))
}

/// The command line of a service with no subcommands of its own.
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct ServiceCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Option<ServiceCommand>,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum ServiceCommand {
    /// Run the service (the default).
    Serve,
    /// Exit 0 when the local service is ready (for container healthchecks).
    Healthcheck,
}

/// The whole `main` of a service binary: parse the command line, load settings, then serve or
/// run the healthcheck against `port_of(settings)`.
pub fn main<F, Fut>(name: &'static str, port_of: fn(&Settings) -> u16, run: F) -> ExitCode
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServiceCli::command().name(name).get_matches();
    let cli = match ServiceCli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let settings = match cli.config.load() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(ServiceCommand::Serve) {
        ServiceCommand::Serve => serve(name, settings, run),
        ServiceCommand::Healthcheck => healthcheck(port_of(&settings)),
    }
}
