//! Uploaded ONNX files are loaded in a child process: ONNX Runtime parses untrusted protobuf, and
//! a file that crashes its parser (or spins, or grows without bound) must end one upload with a
//! 400, not the admin. The child is the admin binary itself (`duma-admin inspect-onnx`, or the
//! `onnx.inspector` setting), started with an empty environment so it holds none of the admin's
//! secrets, fed the file on stdin, and killed at the deadline.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use duma_runtime::onnx::Signature;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// What the child prints: one JSON line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Signature(Signature),
    Error(String),
}

/// The child's side: loads the model on stdin, prints an [`Answer`].
pub fn inspect_stdin(library: &Path) -> ExitCode {
    let mut bytes = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut bytes) {
        Ok(_) => match duma_runtime::onnx::inspect(library, &bytes) {
            Ok(signature) => Answer::Signature(signature),
            Err(reason) => Answer::Error(reason),
        },
        Err(error) => Answer::Error(format!("reading the model: {error}")),
    };
    let line = serde_json::to_string(&answer).unwrap_or_default();
    match writeln!(std::io::stdout(), "{line}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// The admin's side: what the model at `bytes` takes and answers, or why it cannot be served
/// (in words for the uploader).
pub async fn inspect(
    inspector: &Path,
    library: &Path,
    bytes: Vec<u8>,
    deadline: Duration,
) -> Result<Signature, String> {
    let mut child = tokio::process::Command::new(inspector)
        .arg("inspect-onnx")
        .arg("--library")
        .arg(library)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            tracing::error!(inspector = %inspector.display(), %error, "the ONNX inspector did not start");
            "ONNX models cannot be checked on this server now (its inspector did not start); \
             try again later"
                .to_owned()
        })?;
    // Fed while it runs: a pipe holds less than a model.
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let output = match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(format!("the ONNX model's inspection failed: {error}")),
        // Dropping the child kills it.
        Err(_) => {
            return Err(format!(
                "the ONNX model took longer than {}s to load",
                deadline.as_secs()
            ));
        }
    };
    if let Some(signal) = output.status.signal() {
        return Err(format!(
            "the ONNX model crashed ONNX Runtime while loading (signal {signal})"
        ));
    }
    match serde_json::from_slice::<Answer>(output.stdout.trim_ascii_end()) {
        Ok(Answer::Signature(signature)) => Ok(signature),
        Ok(Answer::Error(reason)) => Err(format!(
            "the file is an ONNX model Duma cannot serve: {reason}"
        )),
        Err(_) => Err(format!(
            "the ONNX model's inspection ended without an answer ({})",
            output.status
        )),
    }
}
