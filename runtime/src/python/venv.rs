//! One virtualenv per dependency set, created on first use with pip (argv, never a shell string)
//! and reused by every template declaring the same set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use duma_common::domain::dependencies::{self, Dependencies};
use sha2::{Digest, Sha256};

use crate::error::TemplateError;

/// What every environment gets besides the template's own dependencies (the SDK needs numpy).
const BASE_PACKAGES: &[&str] = &["numpy"];
/// A lock older than this belongs to a process that died mid-install.
const STALE_LOCK: Duration = Duration::from_secs(30 * 60);
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
        let _guard = LockDir::acquire(&lock)?;
        if ready.exists() {
            return Ok(python); // another process built it while we waited
        }
        let _ = std::fs::remove_dir_all(&dir);
        run(
            Command::new(&self.base_python)
                .args(["-m", "venv"])
                .arg(&dir),
            "creating the virtualenv",
        )?;
        run(
            Command::new(&python)
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

/// A directory used as a cross-process lock (creating a directory is atomic).
struct LockDir(PathBuf);

impl LockDir {
    fn acquire(path: &Path) -> Result<Self, TemplateError> {
        let started = SystemTime::now();
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return Ok(Self(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|age| age > STALE_LOCK) {
                        let _ = std::fs::remove_dir(path);
                        continue;
                    }
                    if started.elapsed().unwrap_or_default() > LOCK_WAIT {
                        return Err(TemplateError::Dependencies {
                            detail: format!(
                                "waited too long for another install ({})",
                                path.display()
                            ),
                        });
                    }
                    // Installs take seconds to minutes; this wait is not on a request path.
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    return Err(TemplateError::Dependencies {
                        detail: format!("locking {}: {e}", path.display()),
                    });
                }
            }
        }
    }
}

impl Drop for LockDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

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
    fn invalid_dependencies_are_refused_before_anything_runs() {
        let cache = VenvCache::new(Path::new("/nonexistent"), Path::new("python3"));
        let deps: Dependencies = [("x; rm -rf /".to_owned(), String::new())].into();
        assert!(matches!(
            cache.interpreter(&deps),
            Err(TemplateError::Dependencies { .. })
        ));
    }
}
