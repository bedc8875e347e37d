//! The data directory of a local stack: one folder per server, secrets, logs and the pid file
//! that makes `duma down` find `duma up`.

use std::fs::{self, OpenOptions};
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
        let data = Self::existing(root)?;
        for folder in ["logs", "objects", "cache", "redis", "nginx", "prometheus"] {
            fs::create_dir_all(data.path(folder))?;
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
            return Ok(existing.trim().to_owned());
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

    /// The pid of the `duma up` running from this directory, if one does.
    pub fn running_pid(&self) -> Option<u32> {
        let pid = fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_duma_process(pid).then_some(pid)
    }

    /// Records this process as the one running the stack; refuses when another one does.
    pub fn claim(&self) -> anyhow::Result<PidFile> {
        if let Some(pid) = self.running_pid() {
            anyhow::bail!(
                "duma up already runs from {} (pid {pid}); stop it with `duma down --data-dir {}`",
                self.root.display(),
                self.root.display()
            );
        }
        let path = self.pid_file();
        fs::write(&path, std::process::id().to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }
}

/// Removes the pid file when `duma up` ends.
pub struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A live process whose command is `duma` (so a recycled pid is not mistaken for ours).
pub fn is_duma_process(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "duma")
}

/// Creates `path` readable only by its owner.
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", path.display()))
}
