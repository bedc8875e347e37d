//! `duma`: the Duma command line — run the platform (`up`, `down`, `config`) and use it (`login`,
//! `datasets`, `models`, `train`, `jobs`, `trials`, `logs`, `deploy`, `undeploy`, `predict`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use duma_common::service::ConfigArgs;

mod commands;
mod stack;

/// Duma: train, tune and serve machine-learning models.
#[derive(Parser)]
#[command(name = "duma", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    globals: commands::Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Run the whole platform as local processes until Ctrl-C or `duma down`.
    Up(stack::UpArgs),
    /// Stop the platform `duma up` runs from the same data directory.
    Down(stack::DownArgs),
    /// Print a shell completion script (e.g. `duma completions bash > /etc/bash_completion.d/duma`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    User(commands::UserCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => match cli.config.load() {
            Ok(settings) => {
                eprintln!("{settings:#?}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Up(args) => report(stack::up(args, cli.config.config)),
        Command::Down(args) => report(stack::down(&args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "duma", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::User(command) => user(cli.globals, command),
    }
}

/// Runs a user command: one line on standard error when it fails, and its exit status.
fn user(globals: commands::Globals, command: commands::UserCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("duma: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(globals, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("duma: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("duma: {error:#}");
            ExitCode::FAILURE
        }
    }
}
