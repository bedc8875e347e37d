use std::process::ExitCode;

fn main() -> ExitCode {
    duma_common::service::main(
        "duma-train-worker",
        |s| s.train_worker.port,
        duma_train_worker::run,
    )
}
