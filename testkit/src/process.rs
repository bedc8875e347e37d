//! Starting server processes that cannot outlive the test process.
#![allow(unsafe_code)] // pre_exec: set the parent-death signal in the child before exec.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Makes the child receive `signal` when the thread that spawned it ends (so spawn from a
/// thread that lives as long as the process). Set after any uid change, which clears it.
pub(crate) fn die_with_parent(command: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Waits until `path` exists, or fails after `deadline`.
pub(crate) fn wait_for_path(
    path: &Path,
    deadline: Duration,
    child: &mut Child,
) -> Result<(), String> {
    let started = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("server exited early with {status}"));
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "{} did not appear within {deadline:?}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn redis_server_binary() -> PathBuf {
    std::env::var_os("DUMA_TEST_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "redis-server".into())
}

pub(crate) fn redis_command(dir: &Path, socket: &Path) -> Command {
    let mut command = Command::new(redis_server_binary());
    command
        .args(["--port", "0", "--unixsocket"])
        .arg(socket)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir)
        .args(["--maxclients", "10000", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// A dedicated `redis-server` a test can kill and restart (the shared one must stay up).
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl RedisServer {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("duma-testkit-dedicated-{}-", std::process::id()))
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let socket = dir.path().join("redis.sock");
        let mut server = Self {
            child: None,
            dir,
            socket,
        };
        server.spawn();
        server
    }

    /// `redis+unix://` URL of the socket.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    fn spawn(&mut self) {
        let mut child = redis_command(self.dir.path(), &self.socket)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (install it: scripts/setup): {e}")
            });
        if let Err(e) = wait_for_path(&self.socket, Duration::from_secs(10), &mut child) {
            panic!("redis-server did not start: {e}");
        }
        self.child = Some(child);
    }

    /// Kills the server at once (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the server again on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
