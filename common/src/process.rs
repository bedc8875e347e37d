//! Running the system's PostgreSQL and Redis as child processes (the test kit and `duma up`):
//! finding the binaries, PostgreSQL's refusal to run as root, and children that cannot outlive
//! their parent.
#![allow(unsafe_code)] // pre_exec (parent-death signal), kill(2) and poll(2), each wrapped below.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Makes the child receive `signal` when the thread that spawned it ends (so spawn from a
/// thread that lives as long as the process). Set after any uid change, which clears it.
pub fn die_with_parent(command: &mut Command, signal: libc::c_int) {
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
pub fn wait_for_path(path: &Path, deadline: Duration, child: &mut Child) -> Result<(), String> {
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

/// Makes this process non-dumpable: other processes of the same user (model code a worker
/// starts, say) can no longer read its `/proc/<pid>/environ` or memory, which hold database and
/// Redis credentials. Only a privileged process (CAP_SYS_PTRACE) still can.
pub fn forbid_inspection() -> std::io::Result<()> {
    // SAFETY: prctl with plain integer arguments; touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Has glibc's allocator give every block of 1 MiB or more back to the system when it is freed.
/// By default glibc raises that threshold after the first large block is freed, and then the
/// request bodies, batches and password hashes of a burst stay in the heap: under
/// `scripts/bench-abuse` each predictor grew from 10 to 33 MiB in five minutes and the admin kept
/// 89 MiB after its argon2 hashes; with the threshold fixed they stay at 11 and 13 MiB.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only changes an allocator setting.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Sends `signal` to process `pid`; false when there is no such process (or it is not ours).
pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Waits until `fd` (a child's pipe) has bytes to read or its writer closed it, at most until
/// `deadline`: false when the time ran out first.
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, deadline: Instant) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up, so a wait never ends a moment before its deadline.
        let millis =
            libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) reads and writes only the one pollfd, which outlives the call.
        match unsafe { libc::poll(&mut pollfd, 1, millis) } {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// Kills a child and every process of the group it leads (it must have been spawned with
/// `process_group(0)`), so that what it started does not outlive it.
pub fn kill_process_tree(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
}

/// `name` in the folders of `PATH`, then in `extra` folders.
pub fn find_program(name: &std::ffi::OsStr, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// SIGKILLs every process of the group `leader` leads.
pub fn kill_group(leader: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(leader) {
        // SAFETY: kill(2) takes plain integers and touches no memory. A negative pid names the
        // group; its number stays reserved while any member lives.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The newest PostgreSQL server binaries: `$DUMA_PG_BIN`, else `/usr/lib/postgresql/<v>/bin`.
pub fn postgres_bin_dir() -> Result<PathBuf, String> {
    for variable in ["DUMA_PG_BIN", "DUMA_TEST_PG_BIN"] {
        if let Some(dir) = std::env::var_os(variable) {
            return Ok(PathBuf::from(dir));
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/setup)"
                .to_owned()
        })?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates
        .pop()
        .ok_or_else(|| "no PostgreSQL server binaries found".to_owned())
}

/// `(uid, gid)` of the `postgres` OS user when we are root (PostgreSQL refuses to run as root).
pub fn postgres_os_user() -> Result<Option<(u32, u32)>, String> {
    if effective_uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
        .map(|fields| {
            let uid = fields[2]
                .parse()
                .map_err(|_| "bad uid for postgres".to_owned())?;
            let gid = fields[3]
                .parse()
                .map_err(|_| "bad gid for postgres".to_owned())?;
            Ok(Some((uid, gid)))
        })
        .unwrap_or_else(|| {
            Err("running as root but there is no `postgres` OS user (run scripts/setup)".into())
        })
}

/// Runs `command` as `user` (from [`postgres_os_user`]) when there is one.
pub fn run_as(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

/// Creates a PostgreSQL cluster in `data` (`initdb` from `bin`, as `user` when given): superuser
/// `postgres`, local trust (the caller tightens `pg_hba.conf` where passwords are required), UTF8,
/// C locale. `no_sync` skips syncing to disk (throwaway test clusters). initdb's own output goes
/// to `stdout`; its errors are returned.
pub fn init_postgres_cluster(
    bin: &Path,
    data: &Path,
    user: Option<(u32, u32)>,
    no_sync: bool,
    stdout: std::process::Stdio,
) -> Result<(), String> {
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped());
    if no_sync {
        initdb.arg("--no-sync");
    }
    run_as(&mut initdb, user);
    let output = initdb
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// The arguments of a `redis-server` that listens only on the unix socket `socket` (owner only)
/// and keeps its files in `dir`.
pub fn redis_socket_args(socket: &Path, dir: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["--port", "0", "--unixsocket"].map(Into::into).into();
    args.push(socket.into());
    args.extend(["--unixsocketperm", "700", "--maxclients", "10000", "--dir"].map(Into::into));
    args.push(dir.into());
    args
}

/// The owner of `/proc/self` is this process's effective user.
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}
