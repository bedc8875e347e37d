//! One virtualenv per dependency set, created on first use with pip (argv, never a shell string)
//! and reused by every template declaring the same set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use duma_domain::dependencies::{self, Dependencies};
use sha2::{Digest, Sha256};

use crate::error::TemplateError;

/// What every environment gets besides the template's own dependencies (the SDK needs numpy).
const BASE_PACKAGES: &[&str] = &["numpy"];
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, Clone)]
pub struct VenvCache {
    root: PathBuf,
    base_python: PathBuf,
}

impl VenvCache {
    /// `base_python` creates the environments (`python3`).
    pub fn new(root: &Path, base_python: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            base_python: base_python.to_path_buf(),
        }
    }

    /// pip requirement strings, sorted: `numpy`, `scikit-learn==1.5.2`, `torch>=2`.
    fn requirements(deps: &Dependencies) -> Vec<String> {
        let mut requirements: Vec<String> = BASE_PACKAGES.iter().map(|p| (*p).to_owned()).collect();
        for (name, version) in deps {
            if BASE_PACKAGES.contains(&name.as_str()) {
                requirements.retain(|r| r != name);
            }
            let pinned = if version.is_empty() {
                name.clone()
            } else if version.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                format!("{name}=={version}")
            } else {
                format!("{name}{version}")
            };
            requirements.push(pinned);
        }
        requirements.sort();
        requirements
    }

    /// The interpreter of the environment for `deps`, creating it if needed.
    pub fn interpreter(&self, deps: &Dependencies) -> Result<PathBuf, TemplateError> {
        dependencies::validate(deps).map_err(|e| TemplateError::Dependencies {
            detail: e.to_string(),
        })?;
        let requirements = Self::requirements(deps);
        let mut hasher = Sha256::new();
        hasher.update(self.base_python.as_os_str().as_encoded_bytes());
        for requirement in &requirements {
            hasher.update(b"\n");
            hasher.update(requirement.as_bytes());
        }
        let key = hex::encode(&hasher.finalize()[..12]);
        let dir = self.root.join(&key);
        let python = dir.join("bin/python");
        let ready = dir.join(".duma-ready");
        if ready.exists() {
            return Ok(python);
        }
        let failed = |what: &str, e: &dyn std::fmt::Display| TemplateError::Dependencies {
            detail: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(&self.root)
            .map_err(|e| failed("creating the environment root", &e))?;
        let lock = self.root.join(format!("{key}.lock"));
        let _guard = InstallLock::acquire(&lock)?;
        if ready.exists() {
            return Ok(python); // another process built it while we waited
        }
        let _ = std::fs::remove_dir_all(&dir);
        // One home for every install under this root: pip's download cache is shared by them.
        let home = self.root.join(".pip-home");
        std::fs::create_dir_all(&home).map_err(|e| failed("creating pip's home", &e))?;
        run(
            isolated(&mut Command::new(&self.base_python), &home)
                .args(["-m", "venv"])
                .arg(&dir),
            "creating the virtualenv",
        )?;
        run(
            isolated(&mut Command::new(&python), &home)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--no-input",
                    "--disable-pip-version-check",
                    "--quiet",
                ])
                .args(&requirements),
            &format!("pip install {}", requirements.join(" ")),
        )?;
        std::fs::write(&ready, requirements.join("\n"))
            .map_err(|e| failed("marking the environment ready", &e))?;
        Ok(python)
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), TemplateError> {
    let output = command.output().map_err(|e| TemplateError::Dependencies {
        detail: format!("{what}: {e}"),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(TemplateError::Dependencies {
        detail: format!("{what} failed ({}): {}", output.status, tail.trim()),
    })
}

/// An exclusive lock on a file, held across processes until dropped — or until the holder dies:
/// the kernel releases it with the process, so a crash mid-install never leaves it stuck.
struct InstallLock {
    _held: std::fs::File,
}

impl InstallLock {
    fn acquire(path: &Path) -> Result<Self, TemplateError> {
        let failed = |e: &dyn std::fmt::Display| TemplateError::Dependencies {
            detail: format!("locking {}: {e}", path.display()),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| failed(&e))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _held: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    // Another process installs the same set (seconds to minutes); not a request
                    // path.
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(TemplateError::Dependencies {
                        detail: format!(
                            "waited {} s for another install of the same dependencies ({})",
                            LOCK_WAIT.as_secs(),
                            path.display()
                        ),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(failed(&e)),
            }
        }
    }
}

/// Runs pip and venv with nothing of the worker's environment: a dependency's build step is
/// someone else's code, and must not read the database or Redis URLs or any secret. Only what
/// locates programs and reaches a package index (proxies, index URLs, certificates) passes.
fn isolated<'a>(command: &'a mut Command, home: &Path) -> &'a mut Command {
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("LANG", "C.UTF-8");
    for name in PASSED_TO_PIP {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// Variables pip needs to reach an index behind a proxy or a mirror.
const PASSED_TO_PIP: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pin_versions_and_always_include_numpy() {
        let deps: Dependencies = [
            ("scikit-learn".to_owned(), "1.5.2".to_owned()),
            ("torch".to_owned(), ">=2".to_owned()),
            ("tqdm".to_owned(), String::new()),
        ]
        .into();
        assert_eq!(
            VenvCache::requirements(&deps),
            vec!["numpy", "scikit-learn==1.5.2", "torch>=2", "tqdm"]
        );
        let numpy: Dependencies = [("numpy".to_owned(), "1.26.4".to_owned())].into();
        assert_eq!(VenvCache::requirements(&numpy), vec!["numpy==1.26.4"]);
    }

    #[test]
    fn pip_and_venv_see_none_of_the_workers_environment() {
        let home = tempfile::tempdir().unwrap();
        let mut command = Command::new("python3");
        // What the worker's own environment holds (set on the command, as if inherited).
        command.env("DUMA_DATABASE__URL", "postgres://secret@db/duma");
        let output = isolated(&mut command, home.path())
            .args(["-c", "import os, json; print(json.dumps(dict(os.environ)))"])
            .output()
            .unwrap();
        let seen: std::collections::HashMap<String, String> =
            serde_json::from_slice(&output.stdout).unwrap();
        // (A `python3` shim, like pyenv's, may add its own variables.)
        assert!(!seen.keys().any(|k| k.starts_with("DUMA_")), "{seen:?}");
        assert_eq!(seen["HOME"], home.path().to_str().unwrap());
        assert_eq!(seen["LANG"], "C.UTF-8");
    }

    #[test]
    fn an_install_lock_is_exclusive_and_freed_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let held = InstallLock::acquire(&path).unwrap();
        let again = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(matches!(
            again.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);
        InstallLock::acquire(&path).unwrap();
    }

    #[test]
    fn invalid_dependencies_are_refused_before_anything_runs() {
        let cache = VenvCache::new(Path::new("/nonexistent"), Path::new("python3"));
        let deps: Dependencies = [("x; rm -rf /".to_owned(), String::new())].into();
        assert!(matches!(
            cache.interpreter(&deps),
            Err(TemplateError::Dependencies { .. })
        ));
    }
}
