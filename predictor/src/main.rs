use std::process::ExitCode;

fn main() -> ExitCode {
    duma_common::service::main("duma-predictor", |s| s.predictor.port, duma_predictor::run)
}
