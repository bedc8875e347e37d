use std::process::ExitCode;

fn main() -> ExitCode {
    duma_common::service::main(
        "duma-advisor-worker",
        |s| s.advisor_worker.port,
        duma_advisor_worker::run,
    )
}
