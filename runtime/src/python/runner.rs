//! One `python -m duma.runner` child and the framed protocol with it (`python/PROTOCOL.md`):
//! 4-byte big-endian length + a JSON object, both ways.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;

use chrono::{DateTime, Utc};
use duma_common::process::kill_process_tree;
use duma_domain::TrialLogKind;
use serde_json::{Value, json};

use super::PythonEnv;
use crate::error::TemplateError;
use crate::logger::TrialLogger;

/// Frames larger than this are a protocol error (bulk data travels through files).
const MAX_FRAME_BYTES: usize = 64 << 20;
/// How much of the child's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 << 10;

/// Kills the runners registered with it when fired (a cancelled or timed-out trial), from any
/// thread; a runner started after firing is killed at once.
#[derive(Clone, Default)]
pub struct KillSwitch {
    inner: Arc<Mutex<KillState>>,
}

#[derive(Default)]
struct KillState {
    fired: bool,
    children: Vec<Arc<Mutex<Child>>>,
}

impl KillSwitch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fire(&self) {
        let mut state = self.inner.lock();
        state.fired = true;
        for child in state.children.drain(..) {
            let mut child = child.lock();
            kill_process_tree(&mut child);
        }
    }

    fn register(&self, child: &Arc<Mutex<Child>>) {
        let mut state = self.inner.lock();
        if state.fired {
            kill_process_tree(&mut child.lock());
        }
        state.children.push(child.clone());
    }
}

pub struct Runner {
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    workdir: tempfile::TempDir,
    next_id: u64,
}

impl Runner {
    pub fn start(env: &PythonEnv, kill: &KillSwitch) -> Result<Self, TemplateError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| TemplateError::Runner {
            detail: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(&env.work_root)
            .map_err(|e| failed("creating the work root", &e))?;
        let workdir = tempfile::Builder::new()
            .prefix("runner-")
            .tempdir_in(&env.work_root)
            .map_err(|e| failed("creating a working directory", &e))?;
        let mut command = Command::new(&env.python);
        command
            .args(["-m", "duma.runner", "--workdir"])
            .arg(workdir.path())
            .current_dir(workdir.path())
            // Nothing of the worker's environment (database and Redis URLs, secrets) reaches
            // user code.
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", workdir.path())
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONPATH", &env.sdk_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a kill also reaches the processes user code starts.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| failed(&format!("starting {}", env.python.display()), &e))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed("the child", &"has no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("the child", &"has no stdout"))?;
        let stderr = child.stderr.take();
        let stderr_tail: Arc<Mutex<VecDeque<u8>>> = Arc::default();
        if let Some(mut stderr) = stderr {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    let mut tail = tail.lock();
                    tail.extend(&buffer[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                    tail.drain(..excess);
                }
            });
        }
        let child = Arc::new(Mutex::new(child));
        kill.register(&child);
        let mut runner = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr_tail,
            workdir,
            next_id: 1,
        };
        let ready = runner.read_frame()?;
        if ready.get("type").and_then(Value::as_str) != Some("ready") {
            return Err(runner.broken(&format!("expected a ready frame, got {ready}")));
        }
        Ok(runner)
    }

    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// Sends a command and waits for its reply, passing log frames to `log`.
    pub fn request(
        &mut self,
        mut request: Value,
        mut log: Option<&mut TrialLogger>,
    ) -> Result<Value, TemplateError> {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        self.write_frame(&request)?;
        loop {
            let frame = self.read_frame()?;
            match frame.get("type").and_then(Value::as_str) {
                Some("log") => {
                    if let (Some(log), Some(kind)) = (log.as_deref_mut(), log_kind(&frame)) {
                        let time = frame
                            .get("time")
                            .and_then(Value::as_str)
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
                        log.record(
                            time,
                            kind,
                            frame.get("payload").cloned().unwrap_or(Value::Null),
                        );
                    }
                }
                Some("reply") if frame.get("id") == Some(&json!(id)) => {
                    return Ok(frame.get("result").cloned().unwrap_or(Value::Null));
                }
                Some("error")
                    if frame.get("id") == Some(&json!(id))
                        || frame.get("id") == Some(&Value::Null) =>
                {
                    let error = frame.get("error").cloned().unwrap_or(Value::Null);
                    let text = |key: &str| {
                        error
                            .get(key)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    return Err(TemplateError::Python {
                        kind: text("type"),
                        message: text("message"),
                        traceback: text("traceback"),
                    });
                }
                _ => {} // a stale reply, or a frame type this version does not know
            }
        }
    }

    /// Asks the runner to exit; it is killed when dropped anyway.
    pub fn shutdown(mut self) {
        let _ = self.request(json!({"cmd": "shutdown"}), None);
    }

    fn write_frame(&mut self, value: &Value) -> Result<(), TemplateError> {
        let body = serde_json::to_vec(value).map_err(|e| TemplateError::Runner {
            detail: e.to_string(),
        })?;
        let length =
            u32::try_from(body.len()).map_err(|_| self.broken("request frame too large"))?;
        let written = self
            .stdin
            .write_all(&length.to_be_bytes())
            .and_then(|()| self.stdin.write_all(&body))
            .and_then(|()| self.stdin.flush());
        written.map_err(|e| self.broken(&format!("writing to the runner: {e}")))
    }

    fn read_frame(&mut self) -> Result<Value, TemplateError> {
        let mut length = [0u8; 4];
        if let Err(e) = self.stdout.read_exact(&mut length) {
            return Err(self.broken(&format!("the runner stopped answering ({e})")));
        }
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_FRAME_BYTES {
            return Err(self.broken(&format!("frame of {length} bytes is over the limit")));
        }
        let mut body = vec![0u8; length];
        if let Err(e) = self.stdout.read_exact(&mut body) {
            return Err(self.broken(&format!("the runner stopped mid-frame ({e})")));
        }
        serde_json::from_slice(&body).map_err(|e| self.broken(&format!("a frame is not JSON: {e}")))
    }

    /// A protocol or process failure, with the child's exit status and the tail of its stderr.
    fn broken(&self, what: &str) -> TemplateError {
        let status = {
            let mut child = self.child.lock();
            match child.try_wait() {
                Ok(Some(status)) => format!(" (exit: {status})"),
                _ => String::new(),
            }
        };
        let tail: Vec<u8> = self.stderr_tail.lock().iter().copied().collect();
        let tail = String::from_utf8_lossy(&tail);
        TemplateError::Runner {
            detail: format!("{what}{status}; stderr: {}", tail.trim()),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let mut child = self.child.lock();
        kill_process_tree(&mut child);
        let _ = child.wait();
    }
}

fn log_kind(frame: &Value) -> Option<TrialLogKind> {
    frame
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| k.parse().ok())
}
