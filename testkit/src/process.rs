//! The dedicated Redis servers a test can kill and restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use duma_common::process::{redis_socket_args, wait_for_path};

fn redis_server_binary() -> PathBuf {
    std::env::var_os("DUMA_TEST_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "redis-server".into())
}

pub(crate) fn redis_command(dir: &Path, socket: &Path) -> Command {
    let mut command = Command::new(redis_server_binary());
    command
        .args(redis_socket_args(socket, dir))
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// A dedicated `redis-server` a test can kill and restart (the shared one must stay up).
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// Keeps an append-only file, so a restart reloads the data (as `duma up` and compose do).
    persistent: bool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A server that keeps its data across restarts in an append-only file: a restart takes as
    /// long as reloading it, and Redis answers `LOADING` meanwhile.
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("duma-testkit-dedicated-{}-", std::process::id()))
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let socket = dir.path().join("redis.sock");
        let mut server = Self {
            child: None,
            dir,
            socket,
            persistent,
        };
        server.spawn();
        server
    }

    /// `redis+unix://` URL of the socket.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    fn spawn(&mut self) {
        let mut command = redis_command(self.dir.path(), &self.socket);
        if self.persistent {
            command.args(["--appendonly", "yes"]);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
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
