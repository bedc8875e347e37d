use std::process::ExitCode;

fn main() -> ExitCode {
    duma_common::service::main(
        "duma-inference-worker",
        |s| s.inference_worker.port,
        duma_inference_worker::run,
    )
}
