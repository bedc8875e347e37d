//! One `python -m duma.runner` child and the framed protocol with it (`python/PROTOCOL.md`):
//! 4-byte big-endian length + a JSON object, both ways.

use std::collections::VecDeque;
use std::fs::Permissions;
use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use chrono::{DateTime, Utc};
use duma_common::process::{kill_process_tree, wait_readable};
use duma_domain::TrialLogKind;
use serde_json::{Value, json};

use duma_common::config::SandboxMode;

use super::PythonEnv;
use crate::error::TemplateError;
use crate::logger::TrialLogger;
use crate::sandbox::{Devices, Folders, INPUT_DIR, OUTPUT_DIR, Purpose, Sandbox};

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
    stdout: BufReader<Replies>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    folders: RunnerFolders,
    sandbox: Arc<Sandbox>,
    next_id: u64,
}

/// The host folders of one runner: what it reads (staged by the worker), what it writes back.
struct RunnerFolders {
    /// Removed with the runner.
    _root: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
    /// Only when unsandboxed; a sandbox gets a size-capped tmpfs.
    scratch: Option<PathBuf>,
}

impl RunnerFolders {
    fn create(work_root: &Path, sandboxed: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(work_root)?;
        let root = tempfile::Builder::new()
            .prefix("runner-")
            .tempdir_in(work_root)?;
        // Traversable (not listable) by the sandbox's uid, which bubblewrap binds from.
        std::fs::set_permissions(root.path(), Permissions::from_mode(0o711))?;
        let folder = |name: &str| {
            let path = root.path().join(name);
            std::fs::create_dir(&path)?;
            std::fs::set_permissions(&path, Permissions::from_mode(0o755))?;
            Ok::<_, std::io::Error>(path)
        };
        Ok(Self {
            input: folder("in")?,
            output: folder("out")?,
            scratch: if sandboxed {
                None
            } else {
                Some(folder("scratch")?)
            },
            _root: root,
        })
    }

    fn sandbox_folders(&self, devices: &Devices) -> Folders {
        Folders {
            input: Some(self.input.clone()),
            output: Some(self.output.clone()),
            scratch: self.scratch.clone(),
            writable: Vec::new(),
            devices: devices.nodes.clone(),
        }
    }
}

impl Runner {
    pub fn start(
        env: &PythonEnv,
        purpose: Purpose,
        kill: &KillSwitch,
    ) -> Result<Self, TemplateError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| TemplateError::Runner {
            detail: format!("{what}: {e}"),
        };
        let sandboxed = env.sandbox.mode() == SandboxMode::Bubblewrap;
        let folders = RunnerFolders::create(&env.work_root, sandboxed)
            .map_err(|e| failed("creating the runner's folders", &e))?;
        let sdk = env.sdk_path.as_os_str();
        let mut variables: Vec<(&str, &std::ffi::OsStr)> = vec![
            ("PYTHONUNBUFFERED", "1".as_ref()),
            ("PYTHONDONTWRITEBYTECODE", "1".as_ref()),
            ("PYTHONPATH", sdk),
        ];
        if let Some(visible) = &env.devices.cuda_visible_devices {
            variables.push(("CUDA_VISIBLE_DEVICES", visible.as_ref()));
        }
        let mut command = env.sandbox.command(
            purpose,
            &folders.sandbox_folders(&env.devices),
            &env.python,
            &variables,
        )?;
        let output_inside = env
            .sandbox
            .inside(&folders.output, &folders.output, OUTPUT_DIR);
        command
            .args(["-m", "duma.runner", "--output-dir"])
            .arg(&output_inside);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a kill also reaches the processes user code starts
            // (in a sandbox, bubblewrap: the sandbox dies with it).
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
            stdout: BufReader::new(Replies {
                pipe: stdout,
                deadline: None,
            }),
            stderr_tail,
            folders,
            sandbox: env.sandbox.clone(),
            next_id: 1,
        };
        let ready = runner.read_frame()?;
        if ready.get("type").and_then(Value::as_str) != Some("ready") {
            return Err(runner.broken(&format!("expected a ready frame, got {ready}")));
        }
        Ok(runner)
    }

    /// Makes a host file readable by the runner (a link, else a copy, in its input folder):
    /// the path the runner sees it at.
    pub fn stage(&self, host: &Path) -> Result<PathBuf, TemplateError> {
        let failed = |e: std::io::Error| TemplateError::Runner {
            detail: format!("staging {} for the runner: {e}", host.display()),
        };
        let name = host.file_name().ok_or_else(|| TemplateError::Runner {
            detail: format!("{} is not a file", host.display()),
        })?;
        let staged = self.folders.input.join(name);
        if !staged.exists() {
            if std::fs::hard_link(host, &staged).is_err() {
                std::fs::copy(host, &staged).map_err(failed)?;
            }
            std::fs::set_permissions(&staged, Permissions::from_mode(0o644)).map_err(failed)?;
        }
        Ok(self.sandbox.inside(&staged, &self.folders.input, INPUT_DIR))
    }

    /// Writes `bytes` into the runner's input folder: the path the runner sees them at.
    pub fn write_input(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, TemplateError> {
        let path = self.folders.input.join(name);
        std::fs::write(&path, bytes)
            .and_then(|()| std::fs::set_permissions(&path, Permissions::from_mode(0o644)))
            .map_err(|e| TemplateError::Runner {
                detail: format!("writing {name} for the runner: {e}"),
            })?;
        Ok(self.sandbox.inside(&path, &self.folders.input, INPUT_DIR))
    }

    /// A file the runner may write in its output folder: `(host path, the runner's path)`.
    pub fn output(&self, name: &str) -> (PathBuf, PathBuf) {
        let host = self.folders.output.join(name);
        let inside = self.sandbox.inside(&host, &self.folders.output, OUTPUT_DIR);
        (host, inside)
    }

    /// The host path of a file the runner named in its output folder; `None` for any other.
    pub fn output_named(&self, inside: &str) -> Option<PathBuf> {
        let name = Path::new(inside).file_name()?.to_str()?;
        let (host, expected) = self.output(name);
        (expected == Path::new(inside)).then_some(host)
    }

    /// [`Self::request`], waiting for the reply until `deadline` only: past it the runner is
    /// killed (it hung, or is far too slow to be of use) and the model is [`TemplateError::Hung`].
    pub fn request_until(
        &mut self,
        request: Value,
        deadline: Instant,
    ) -> Result<Value, TemplateError> {
        self.stdout.get_mut().deadline = Some((Instant::now(), deadline));
        let reply = self.request(request, None);
        self.stdout.get_mut().deadline = None;
        reply
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
                    let (kind, mut message) = (text("type"), text("message"));
                    if let Some(hint) = self.sandbox.limit_of_exception(&kind, &message) {
                        message = format!("{message} ({hint})");
                    }
                    return Err(TemplateError::Python {
                        kind,
                        message,
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
        // The length goes in front of the body in one buffer, so the runner is woken once per
        // frame, not once for the header and again for the body.
        let mut frame = vec![0u8; 4];
        serde_json::to_writer(&mut frame, value).map_err(|e| TemplateError::Runner {
            detail: e.to_string(),
        })?;
        let length =
            u32::try_from(frame.len() - 4).map_err(|_| self.broken("request frame too large"))?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let written = self
            .stdin
            .write_all(&frame)
            .and_then(|()| self.stdin.flush());
        written.map_err(|e| self.broken(&format!("writing to the runner: {e}")))
    }

    fn read_frame(&mut self) -> Result<Value, TemplateError> {
        let mut length = [0u8; 4];
        if let Err(e) = self.stdout.read_exact(&mut length) {
            if e.kind() == std::io::ErrorKind::TimedOut {
                return Err(self.hung());
            }
            return Err(self.broken(&format!("the runner stopped answering ({e})")));
        }
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_FRAME_BYTES {
            return Err(self.broken(&format!("frame of {length} bytes is over the limit")));
        }
        let mut body = vec![0u8; length];
        if let Err(e) = self.stdout.read_exact(&mut body) {
            if e.kind() == std::io::ErrorKind::TimedOut {
                return Err(self.hung());
            }
            return Err(self.broken(&format!("the runner stopped mid-frame ({e})")));
        }
        serde_json::from_slice(&body).map_err(|e| self.broken(&format!("a frame is not JSON: {e}")))
    }

    /// The runner did not answer before the deadline of [`Self::request_until`]: it is killed
    /// (its stream is out of step with the requests now).
    fn hung(&self) -> TemplateError {
        kill_process_tree(&mut self.child.lock());
        let waited = self
            .stdout
            .get_ref()
            .deadline
            .map_or(Duration::ZERO, |(since, _)| since.elapsed());
        TemplateError::Hung { waited }
    }

    /// A protocol or process failure, with the child's exit status and the tail of its stderr.
    fn broken(&self, what: &str) -> TemplateError {
        let status = {
            let mut child = self.child.lock();
            match exit_status_within(&mut child, EXIT_GRACE) {
                Some(status) => {
                    // bubblewrap exits 128 + the signal that ended the sandboxed process.
                    let signal = status
                        .signal()
                        .or_else(|| status.code().filter(|c| *c > 128).map(|c| c - 128));
                    match signal.and_then(|s| self.sandbox.limit_of_signal(s)) {
                        Some(hint) => format!(" (exit: {status}: {hint})"),
                        None => format!(" (exit: {status})"),
                    }
                }
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

/// How long a runner whose pipe closed gets to be reaped: the pipe closes as the sandboxed
/// process dies, a moment before bubblewrap exits with its status, and that status is what names
/// a limit that was hit.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The child's exit status once it has exited, waiting at most `grace` (only failure paths wait).
fn exit_status_within(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// The runner's stdout. While a request has a deadline, each read first waits for bytes until
/// then (a runner that hangs, even mid-frame, cannot hold its caller past it).
struct Replies {
    pipe: ChildStdout,
    /// `(when it was set, the deadline)`.
    deadline: Option<(Instant, Instant)>,
}

impl Read for Replies {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if let Some((_, deadline)) = self.deadline
            && !wait_readable(self.pipe.as_fd(), deadline)?
        {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.pipe.read(buffer)
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
