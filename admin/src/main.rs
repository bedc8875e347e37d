use std::process::ExitCode;

use clap::{Parser, Subcommand};
use duma_common::service::{self, ConfigArgs};

/// Duma admin: the REST control plane.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (the default).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Exit 0 when the local admin is ready (for container healthchecks).
    Healthcheck,
    /// Load the ONNX model on stdin and print what it takes and answers, as JSON (what the admin
    /// runs in a child process to check an upload; needs no settings).
    #[command(hide = true)]
    InspectOnnx {
        /// The ONNX Runtime shared library.
        #[arg(long)]
        library: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::InspectOnnx { library } = &command {
        // Needs no settings: the admin runs it in a child with an empty environment.
        return duma_admin::onnx_inspection::inspect_stdin(library);
    }
    let settings = match cli.config.load() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match command {
        Command::Serve => service::serve("admin", settings, duma_admin::run),
        Command::Migrate => {
            duma_common::telemetry::init(&settings.log);
            service::block_on(async move {
                let applied = duma_common::db::migrations::run(&settings.database).await?;
                tracing::info!(applied, "database schema is current");
                Ok(())
            })
        }
        Command::Healthcheck => service::healthcheck(settings.admin.port),
        Command::InspectOnnx { library } => duma_admin::onnx_inspection::inspect_stdin(&library),
    }
}
