//! Every process that runs model code — a Python template's runner, and pip building its
//! dependencies — runs confined by [bubblewrap](https://github.com/containers/bubblewrap)
//! (`docs/security.md`):
//!
//! - its own user, PID, IPC, UTS, cgroup and network namespaces (no network at all, but for pip),
//!   no capabilities, `no_new_privs`, dying with its worker;
//! - a new root holding only the system's programs and libraries (read-only), the Python
//!   interpreter's prefix and the environments root (read-only), the SDK (read-only), and the
//!   folders of this one process: `/job/in` (read-only, staged by the worker), `/job/out`
//!   (writable, what the worker asked for) and `/tmp` (its scratch space, a size-capped tmpfs);
//! - when the worker runs as root, a uid of its own from `uid_base..uid_base + uid_count` (set by
//!   `setpriv` inside, after bubblewrap bound everything as root), with no capabilities;
//! - limits set by `prlimit` inside the sandbox: address space, CPU seconds (training), processes,
//!   open files and file size.
//!
//! `mode = "off"` runs the same programs unconfined, in host folders: for one trusted user only.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use duma_common::config::{SandboxMode, SandboxSettings};

use crate::error::TemplateError;

/// Where a sandboxed process sees its staged inputs, its outputs and its scratch space.
pub const INPUT_DIR: &str = "/job/in";
pub const OUTPUT_DIR: &str = "/job/out";
pub const SCRATCH_DIR: &str = "/tmp";

/// System files a template process may read besides `/usr` (none of them holds a secret).
const RUNNER_ETC: &[&str] = &["/etc/ld.so.cache", "/etc/localtime"];
/// What pip needs on top to resolve names and reach an index over TLS.
const INSTALL_ETC: &[&str] = &[
    "/etc/debian_version",
    "/etc/os-release",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pip.conf",
];
const PRLIMIT: &str = "/usr/bin/prlimit";
const SETPRIV: &str = "/usr/bin/setpriv";

/// What the process is for: it decides the network and the CPU-time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A training runner: CPU seconds capped.
    Train,
    /// A serving runner: long-lived, bounded per call by the worker instead.
    Serve,
    /// pip installing dependencies: the network, and a writable environment.
    Install,
}

/// The folders of one sandboxed process, as host paths.
#[derive(Debug, Clone)]
pub struct Folders {
    /// Staged inputs, seen read-only at [`INPUT_DIR`].
    pub input: Option<PathBuf>,
    /// Outputs, seen writable at [`OUTPUT_DIR`].
    pub output: Option<PathBuf>,
    /// Scratch space: a host folder seen at [`SCRATCH_DIR`]; `None` for a size-capped tmpfs.
    pub scratch: Option<PathBuf>,
    /// Host folders seen writable at their own path (the environment pip builds).
    pub writable: Vec<PathBuf>,
    /// Device nodes bound at their own path (the GPUs lent to the process); those missing on
    /// the host are skipped.
    pub devices: Vec<PathBuf>,
}

/// The GPUs lent to one template process: what CUDA is told, and the device nodes its sandbox
/// gets. The default (a worker without GPUs) tells CUDA nothing and binds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    /// `CUDA_VISIBLE_DEVICES` (empty: no GPU, even in an unsandboxed process).
    pub cuda_visible_devices: Option<String>,
    pub nodes: Vec<PathBuf>,
}

impl Devices {
    /// What a process gets of a worker's `gpus` under `grant`: exactly the lent GPUs — on a
    /// worker with GPUs, a grant of none hides them all.
    pub fn lent(
        gpus: &duma_common::worker::gpus::Gpus,
        grant: &duma_common::worker::gpus::GpuGrant,
    ) -> Self {
        if gpus.count() == 0 {
            return Self::default();
        }
        Self {
            cuda_visible_devices: Some(grant.visible_devices()),
            nodes: grant.device_nodes(),
        }
    }
}

/// Whose uid a sandboxed process runs as, and so how the sandbox is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The worker is root and may mount (`duma up` as root): bubblewrap builds the sandbox as
    /// root, so it can bind what only root may traverse, then `setpriv` inside drops to the
    /// process's own uid with no capabilities — no user namespace at all.
    OwnUidInside,
    /// The worker is root but may not mount (a container: no `CAP_SYS_ADMIN`): `setpriv` drops
    /// to the process's own uid first, and bubblewrap, unprivileged, makes a user namespace of
    /// it. Everything bound must be traversable by that uid.
    OwnUidOutside,
    /// The worker is not root: its own uid, in an unprivileged user namespace.
    WorkerUid,
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    settings: SandboxSettings,
    /// Read-only at their own path in every sandbox: the interpreter's prefix (when not under
    /// `/usr`), the environments root and the SDK.
    shared: Vec<PathBuf>,
    /// Why no sandbox can be made on this host; templates are refused with it.
    unavailable: Option<String>,
    /// Whose uid model code runs as.
    identity: Identity,
    /// Whether the sandbox gets a `/proc` of its own PID namespace. A container whose runtime
    /// masks parts of the host's `/proc` (Docker does) forbids mounting a new one from a user
    /// namespace: model code then runs without `/proc` at all.
    proc: bool,
}

impl Sandbox {
    /// Checks once that a sandbox can run `interpreter` here; when it cannot, the reason is kept
    /// and every template process is refused with it (never run unconfined by surprise).
    pub fn new(
        settings: &SandboxSettings,
        interpreter: &Path,
        env_root: &Path,
        sdk_path: &Path,
    ) -> Self {
        let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let identity = if as_root {
            Identity::OwnUidInside
        } else {
            Identity::WorkerUid
        };
        let mut shared = vec![absolute(env_root), absolute(sdk_path)];
        if let Some(prefix) = interpreter_prefix(interpreter)
            && !prefix.starts_with("/usr")
        {
            shared.push(prefix);
        }
        let mut sandbox = Self {
            settings: settings.clone(),
            shared,
            unavailable: None,
            identity,
            proc: true,
        };
        if settings.mode == SandboxMode::Bubblewrap {
            // The environment folder is shared into every sandbox, so it must exist before the
            // first one (on a fresh host nothing has been built in it yet).
            sandbox.unavailable = std::fs::create_dir_all(env_root)
                .map_err(|e| format!("creating {}: {e}", env_root.display()))
                .and_then(|()| sandbox.probe_fitting(interpreter))
                .err();
            match &sandbox.unavailable {
                Some(reason) => tracing::error!(
                    %reason,
                    "model code cannot be sandboxed: Python templates will be refused"
                ),
                None => tracing::info!(
                    own_uids = sandbox.identity != Identity::WorkerUid,
                    identity = ?sandbox.identity,
                    proc = sandbox.proc,
                    "model code runs sandboxed (bubblewrap)"
                ),
            }
        } else {
            tracing::warn!(
                "python.sandbox.mode = off: model code runs unconfined, as this worker; only for \
                 a single trusted user"
            );
        }
        sandbox
    }

    /// This sandbox with no `/proc`, as on a host that masks the host's (what [`Self::new`]
    /// falls back to in a container).
    pub fn without_proc(mut self) -> Self {
        self.proc = false;
        self
    }

    /// This sandbox making its processes' identity as `identity` does (tests of the ways a host
    /// may force; [`Self::new`] finds the most confined one that works).
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    pub fn identity(&self) -> Identity {
        self.identity
    }

    pub fn mode(&self) -> SandboxMode {
        self.settings.mode
    }

    /// Finds the sandbox this host allows, most confined first: as root, bubblewrap may not be
    /// allowed to mount (a container), and then the process's own uid goes first; a runtime that
    /// masks parts of `/proc` (Docker) forbids a new one, and then there is none.
    fn probe_fitting(&mut self, interpreter: &Path) -> Result<(), String> {
        let mut result = self.probe(interpreter);
        if self.identity == Identity::OwnUidInside
            && result
                .as_ref()
                .is_err_and(|r| r.contains("Operation not permitted"))
        {
            self.identity = Identity::OwnUidOutside;
            result = self.probe(interpreter);
        }
        if result
            .as_ref()
            .is_err_and(|r| r.contains("Can't mount proc"))
        {
            self.proc = false;
            result = self.probe(interpreter);
            if result.is_ok() {
                tracing::warn!(
                    "this host masks /proc (a container): model code runs without /proc"
                );
            }
        }
        result
    }

    /// Runs `interpreter -c pass` in a sandbox, to find out now rather than at the first trial.
    fn probe(&self, interpreter: &Path) -> Result<(), String> {
        let scratch = tempfile::tempdir().map_err(|e| format!("creating a probe folder: {e}"))?;
        let folders = Folders {
            input: None,
            output: None,
            scratch: None,
            writable: Vec::new(),
            devices: Vec::new(),
        };
        let mut command = self
            .command(Purpose::Serve, &folders, interpreter, &[])
            .map_err(|e| e.to_string())?;
        let output = command
            .args(["-c", "pass"])
            .current_dir(scratch.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "cannot start {} ({e}): install bubblewrap, or set \
                     python.sandbox.bwrap to where it is",
                    self.settings.bwrap.display()
                )
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "a sandbox could not run {} ({}): {}. The host must allow unprivileged user \
             namespaces (in a container: the seccomp and /proc settings of docs/security.md), and \
             the interpreter's folder must be readable by other users",
            interpreter.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }

    /// A command running `program` confined for `purpose`, with `folders` and the environment
    /// variables `env` (nothing of the worker's own environment passes), in its scratch folder.
    /// Arguments are the caller's to add; paths it passes must be inside paths
    /// ([`Self::inside`]).
    pub fn command(
        &self,
        purpose: Purpose,
        folders: &Folders,
        program: &Path,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<Command, TemplateError> {
        let scratch_inside = self.inside_scratch(folders);
        let mut variables: Vec<(&str, &std::ffi::OsStr)> = vec![
            ("PATH", "/usr/local/bin:/usr/bin:/bin".as_ref()),
            ("HOME", scratch_inside.as_os_str()),
            ("TMPDIR", scratch_inside.as_os_str()),
            ("LANG", "C.UTF-8".as_ref()),
        ];
        variables.extend_from_slice(env);
        if self.settings.mode == SandboxMode::Off {
            let mut command = Command::new(program);
            command.env_clear();
            for (name, value) in variables {
                command.env(name, value);
            }
            if let Some(scratch) = &folders.scratch {
                command.current_dir(scratch);
            }
            return Ok(command);
        }
        if let Some(reason) = &self.unavailable {
            return Err(TemplateError::Sandbox {
                detail: reason.clone(),
            });
        }
        // (See [`Identity`] for who makes the namespaces and drops to which uid.)
        let uid = (self.identity != Identity::WorkerUid).then(|| self.next_uid());
        let mut command = match (self.identity, uid) {
            (Identity::OwnUidOutside, Some(uid)) => {
                let mut command = Command::new(SETPRIV);
                let id = uid.to_string();
                command
                    .arg("--reuid")
                    .arg(&id)
                    .arg("--regid")
                    .arg(&id)
                    .args([
                        "--clear-groups",
                        "--inh-caps=-all",
                        "--bounding-set=-all",
                        "--",
                    ])
                    .arg(&self.settings.bwrap);
                command
            }
            _ => Command::new(&self.settings.bwrap),
        };
        // bubblewrap's own environment too: its reaper is PID 1 inside, with a readable environ.
        command.env_clear();
        if self.identity == Identity::OwnUidInside {
            command.args([
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
            ]);
            if purpose != Purpose::Install {
                command.arg("--unshare-net");
            }
        } else {
            command.arg("--unshare-all");
            if purpose == Purpose::Install {
                command.arg("--share-net");
            }
        }
        command.args([
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "duma-sandbox",
            "--clearenv",
        ]);
        for (name, value) in &variables {
            command.arg("--setenv").arg(name).arg(value);
        }
        command.args(["--ro-bind", "/usr", "/usr"]);
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                command.args(["--symlink", target, link]);
            } else {
                command.args(["--ro-bind-try", link, link]);
            }
        }
        let etc = if purpose == Purpose::Install {
            [RUNNER_ETC, INSTALL_ETC].concat()
        } else {
            RUNNER_ETC.to_vec()
        };
        // (Folders bubblewrap creates as root are private unless made otherwise.)
        command.args(["--perms", "0755", "--dir", "/etc"]);
        for path in etc {
            command.args(["--ro-bind-try", path, path]);
        }
        if self.proc {
            command.args(["--proc", "/proc"]);
        }
        command.args(["--dev", "/dev"]);
        for node in &folders.devices {
            command.arg("--dev-bind-try").arg(node).arg(node);
        }
        // Scratch first: host folders under /tmp are bound over it afterwards.
        match &folders.scratch {
            Some(host) => {
                command.arg("--bind").arg(host).arg(SCRATCH_DIR);
            }
            None => {
                command
                    .args(["--perms", "1777", "--size"])
                    .arg((self.settings.scratch_mib << 20).to_string())
                    .args(["--tmpfs", SCRATCH_DIR]);
            }
        }
        for path in &self.shared {
            // The folders above it are made traversable (bubblewrap copies their host modes,
            // and a private home such as /root would lock the sandbox's uid out).
            for ancestor in path
                .ancestors()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                if ancestor != Path::new("/") && !ancestor.starts_with("/usr") {
                    command.args(["--perms", "0755", "--dir"]).arg(ancestor);
                }
            }
            command.arg("--ro-bind").arg(path).arg(path);
        }
        if folders.input.is_some() || folders.output.is_some() {
            command.args(["--perms", "0755", "--dir", "/job"]);
        }
        if let Some(input) = &folders.input {
            command.arg("--ro-bind").arg(input).arg(INPUT_DIR);
        }
        if let Some(output) = &folders.output {
            command.arg("--bind").arg(output).arg(OUTPUT_DIR);
        }
        for path in &folders.writable {
            command.arg("--bind").arg(path).arg(path);
        }
        command.args(["--chdir", SCRATCH_DIR]);
        if let (Identity::OwnUidInside, Some(uid)) = (self.identity, uid) {
            let id = uid.to_string();
            command
                .args(["--cap-drop", "ALL", "--cap-add", "CAP_SETUID"])
                .args(["--cap-add", "CAP_SETGID", "--", SETPRIV, "--reuid"])
                .arg(&id)
                .arg("--regid")
                .arg(&id)
                .args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]);
        }
        command.args(["--", PRLIMIT]);
        let limits = &self.settings;
        let mut limit = |name: &str, value: u64| {
            command.arg(format!("--{name}={value}"));
        };
        limit("as", limits.memory_mib << 20);
        limit("nproc", limits.processes);
        limit("nofile", limits.open_files);
        limit("fsize", limits.file_mib << 20);
        if purpose == Purpose::Train {
            // SIGXCPU at the soft limit (reported as such), SIGKILL a little later.
            command.arg(format!(
                "--cpu={}:{}",
                limits.train_cpu_seconds,
                limits.train_cpu_seconds + 5
            ));
        }
        command.arg("--").arg(program);
        if let Some(uid) = uid {
            for folder in folders.output.iter().chain(&folders.writable) {
                chown_tree(folder, uid)?;
            }
            if let Some(scratch) = &folders.scratch {
                chown_tree(scratch, uid)?;
            }
        }
        Ok(command)
    }

    /// A uid for the next process: its own among this worker's, spread over the range by the
    /// worker's pid so workers of one host rarely share one.
    fn next_uid(&self) -> u32 {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let count = self.settings.uid_count.max(1);
        let offset = std::process::id().wrapping_mul(7919);
        self.settings.uid_base + offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % count
    }

    /// The scratch folder as the process sees it.
    fn inside_scratch(&self, folders: &Folders) -> PathBuf {
        match (&self.settings.mode, &folders.scratch) {
            (SandboxMode::Off, Some(host)) => host.clone(),
            _ => PathBuf::from(SCRATCH_DIR),
        }
    }

    /// The path the process sees for `host`, a file in `folder` (one of [`Folders`]), seen at
    /// `inside` in a sandbox.
    pub fn inside(&self, host: &Path, folder: &Path, inside: &str) -> PathBuf {
        match (self.settings.mode, host.strip_prefix(folder)) {
            (SandboxMode::Bubblewrap, Ok(relative)) => Path::new(inside).join(relative),
            _ => host.to_path_buf(),
        }
    }

    /// The limit a signal that ended the process points at, in words, if any.
    pub fn limit_of_signal(&self, signal: i32) -> Option<String> {
        match signal {
            libc_signal::XCPU => self.describe(Limit::CpuTime),
            libc_signal::XFSZ => self.describe(Limit::FileSize),
            _ => None,
        }
    }

    /// The limit a Python exception (its class and message) points at, in words, if any.
    pub fn limit_of_exception(&self, kind: &str, message: &str) -> Option<String> {
        let limit = if kind == "MemoryError" {
            Limit::Memory
        } else if message.contains("File too large") {
            Limit::FileSize
        } else if message.contains("Resource temporarily unavailable") {
            Limit::Processes
        } else if message.contains("No space left on device") {
            Limit::Scratch
        } else if message.contains("Too many open files") {
            Limit::OpenFiles
        } else {
            return None;
        };
        self.describe(limit)
    }

    fn describe(&self, limit: Limit) -> Option<String> {
        if self.settings.mode == SandboxMode::Off {
            return None;
        }
        let limits = &self.settings;
        Some(match limit {
            Limit::CpuTime => format!(
                "it reached the sandbox's CPU-time limit of {} s (python.sandbox.train_cpu_seconds)",
                limits.train_cpu_seconds
            ),
            Limit::FileSize => format!(
                "it wrote a file over the sandbox's limit of {} MiB (python.sandbox.file_mib)",
                limits.file_mib
            ),
            Limit::Memory => format!(
                "it ran out of the sandbox's memory limit of {} MiB (python.sandbox.memory_mib)",
                limits.memory_mib
            ),
            Limit::Processes => format!(
                "it reached the sandbox's limit of {} processes and threads \
                 (python.sandbox.processes)",
                limits.processes
            ),
            Limit::Scratch => format!(
                "it filled the sandbox's scratch space of {} MiB (python.sandbox.scratch_mib)",
                limits.scratch_mib
            ),
            Limit::OpenFiles => format!(
                "it reached the sandbox's limit of {} open files (python.sandbox.open_files)",
                limits.open_files
            ),
        })
    }
}

/// The limits a sandboxed process can hit.
#[derive(Debug, Clone, Copy)]
enum Limit {
    CpuTime,
    FileSize,
    Memory,
    Processes,
    Scratch,
    OpenFiles,
}

/// The signals the kernel sends at the CPU-time and file-size limits (Linux numbers).
mod libc_signal {
    pub const XCPU: i32 = 24;
    pub const XFSZ: i32 = 25;
}

/// The folder an interpreter belongs to (`/usr` for `/usr/bin/python3`), following links.
fn interpreter_prefix(interpreter: &Path) -> Option<PathBuf> {
    let resolved = which(interpreter)?.canonicalize().ok()?;
    resolved.parent()?.parent().map(Path::to_path_buf)
}

/// `program` as given when it has a folder, else found on `PATH`.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    duma_common::process::find_program(program.as_os_str(), &[])
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Gives a folder and everything in it to `uid`, so a process of that uid can write there.
fn chown_tree(root: &Path, uid: u32) -> Result<(), TemplateError> {
    let failed = |path: &Path, e: std::io::Error| TemplateError::Sandbox {
        detail: format!("handing {} to the sandbox's uid: {e}", path.display()),
    };
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).map_err(|e| failed(&path, e))?;
        let metadata = std::fs::symlink_metadata(&path).map_err(|e| failed(&path, e))?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| failed(&path, e))? {
                pending.push(entry.map_err(|e| failed(&path, e))?.path());
            }
        }
    }
    Ok(())
}
