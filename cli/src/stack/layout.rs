//! The data directory of a local stack: one folder per server, secrets, logs and the pid file
//! that makes `duma down` find `duma up`.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub struct DataDir {
    root: PathBuf,
    logs: PathBuf,
}

impl DataDir {
    /// Creates the directory (and its sub-folders) when missing.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
        // Datasets, models, logs and secrets are the owner's alone. As root, PostgreSQL runs as
        // `postgres` and must pass through to its own (private) folder.
        let mode = if duma_common::process::postgres_os_user()
            .ok()
            .flatten()
            .is_some()
        {
            0o711
        } else {
            0o700
        };
        fs::set_permissions(root, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot restrict {}", root.display()))?;
        let data = Self::existing(root)?;
        for folder in ["redis", "nginx", "prometheus"] {
            fs::create_dir_all(data.path(folder))?;
        }
        // Stored objects and logs stay private; the sandboxes of model code (their own uids when
        // the workers run as root) pass through the caches and environments to what they are
        // given, without listing them.
        for (folder, mode) in [
            ("logs", 0o700),
            ("objects", 0o700),
            ("cache", 0o711),
            ("envs", 0o711),
            // The predictors' sockets, which nginx's workers (`nobody` under root) connect to.
            ("predictors", 0o711),
        ] {
            let path = data.path(folder);
            fs::create_dir_all(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        }
        private_dir(&data.path("secrets"))?;
        Ok(data)
    }

    /// A directory `duma up` made before.
    pub fn existing(root: &Path) -> anyhow::Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("data directory {}", root.display()))?;
        let logs = root.join("logs");
        Ok(Self { root, logs })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn logs(&self) -> &Path {
        &self.logs
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The secret stored under `secrets/<name>`, made (random, 32 hex digits) on first use.
    pub fn secret(&self, name: &str) -> anyhow::Result<String> {
        let path = self.path("secrets").join(name);
        if let Ok(existing) = fs::read_to_string(&path) {
            if !existing.trim().is_empty() {
                return Ok(existing.trim().to_owned());
            }
            // Left empty by a crash while it was written: make a new one.
            fs::remove_file(&path).with_context(|| format!("cannot replace {}", path.display()))?;
        }
        let mut bytes = [0u8; 16];
        fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
            .context("cannot read /dev/urandom")?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(secret.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(secret)
    }

    fn pid_file(&self) -> PathBuf {
        self.path("duma.pid")
    }

    /// The pid of the `duma up` running from this directory, if one does: it holds a lock on
    /// the pid file for as long as it runs, so a stale file (after a SIGKILL) or a recycled pid
    /// is never taken for it.
    pub fn running_pid(&self) -> Option<u32> {
        let file = File::open(self.pid_file()).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None, // nobody holds it
            Err(TryLockError::WouldBlock) => fs::read_to_string(self.pid_file())
                .ok()?
                .trim()
                .parse()
                .ok(),
            Err(TryLockError::Error(_)) => None,
        }
    }

    /// Records this process as the one running the stack; refuses when another one does.
    pub fn claim(&self) -> anyhow::Result<PidFile> {
        let path = self.pid_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "duma up already runs from {} (pid {}); stop it with `duma down --data-dir {}`",
                    self.root.display(),
                    pid.trim(),
                    self.root.display()
                );
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.write_all(std::process::id().to_string().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile { path, _lock: file })
    }
}

/// Holds the pid file's lock while `duma up` runs; removes the file when it ends.
pub struct PidFile {
    path: PathBuf,
    _lock: File,
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates `path` readable only by its owner.
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", path.display()))
}
