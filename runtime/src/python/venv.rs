//! Python environments for templates, built with pip (argv, never a shell string):
//!
//! - **the base environment**: what Rafiki's worker image always had — numpy, pandas, Pillow,
//!   requests, tqdm, scikit-learn, pinned — and the runner's JSON codec (orjson), built once per
//!   root and used as it is by every template that declares no dependencies;
//! - **one environment per declared dependency set**, layered on the base: a virtualenv whose
//!   `duma-base.pth` puts the base's packages on `sys.path` after its own, so it installs only
//!   what the template declared (a declared version of a base package wins).
//!
//! The root is shared by every worker of a host (`python.env_dir`): what training built, serving
//! reuses. Builds of one environment are serialised across processes by a kernel file lock.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duma_domain::dependencies::{self, Dependencies};
use sha2::{Digest, Sha256};

use crate::error::TemplateError;
use crate::sandbox::{Folders, Purpose, Sandbox};

/// The base environment's packages. numpy is also what the SDK itself needs, and orjson what its
/// runner reads and writes frames with when present (ten times faster than `json` on rows of
/// floats).
const BASE_PACKAGES: &[&str] = &[
    "numpy==1.26.4",
    "orjson==3.13.0",
    "pandas==2.2.3",
    "Pillow==11.0.0",
    "requests==2.32.3",
    "scikit-learn==1.5.2",
    "tqdm==4.67.1",
];
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);
/// Written last into an environment's folder: it is complete.
const READY: &str = ".duma-ready";
/// The file that layers the base environment under a dependency set's own packages.
const BASE_PTH: &str = "duma-base.pth";

#[derive(Debug, Clone)]
pub struct VenvCache {
    root: PathBuf,
    base_python: PathBuf,
    /// pip runs in it: a dependency's build step is someone else's code.
    sandbox: Arc<Sandbox>,
}

impl VenvCache {
    /// `base_python` creates the environments (`/usr/bin/python3`).
    pub fn new(root: &Path, base_python: &Path, sandbox: Arc<Sandbox>) -> Self {
        Self {
            root: root.to_path_buf(),
            base_python: base_python.to_path_buf(),
            sandbox,
        }
    }

    /// pip requirement strings of declared dependencies, sorted: `scikit-learn==1.5.2`,
    /// `torch>=2`, `tqdm`.
    fn requirements(deps: &Dependencies) -> Vec<String> {
        let mut requirements: Vec<String> = deps
            .iter()
            .map(|(name, version)| {
                if version.is_empty() {
                    name.clone()
                } else if version.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                    format!("{name}=={version}")
                } else {
                    format!("{name}{version}")
                }
            })
            .collect();
        requirements.sort();
        requirements
    }

    /// Whether the environment for `deps` (and the base under it) is built, without building.
    pub fn is_built(&self, deps: &Dependencies) -> bool {
        let (base_key, base_dir) = self.location("base", &Self::base_requirements());
        let (_, dir) = if deps.is_empty() {
            (base_key, base_dir.clone())
        } else {
            self.location(&base_key, &Self::requirements(deps))
        };
        base_dir.join(READY).exists() && dir.join(READY).exists()
    }

    fn base_requirements() -> Vec<String> {
        BASE_PACKAGES.iter().map(|p| (*p).to_owned()).collect()
    }

    /// The interpreter of the environment for `deps`, creating it (and the base) if needed.
    pub fn interpreter(&self, deps: &Dependencies) -> Result<PathBuf, TemplateError> {
        dependencies::validate(deps).map_err(|e| TemplateError::Dependencies {
            detail: e.to_string(),
        })?;
        let (base_key, base) = self.environment("base", &Self::base_requirements(), None)?;
        if deps.is_empty() {
            return Ok(base);
        }
        self.environment(&base_key, &Self::requirements(deps), Some(&base))
            .map(|(_, python)| python)
    }

    /// The key and folder of the environment installing `requirements` over `parent`'s.
    fn location(&self, parent: &str, requirements: &[String]) -> (String, PathBuf) {
        let mut hasher = Sha256::new();
        hasher.update(self.base_python.as_os_str().as_encoded_bytes());
        hasher.update(b"\n");
        hasher.update(parent.as_bytes());
        for requirement in requirements {
            hasher.update(b"\n");
            hasher.update(requirement.as_bytes());
        }
        let key = hex::encode(&hasher.finalize()[..12]);
        let dir = self.root.join(&key);
        (key, dir)
    }

    /// The environment installing `requirements` (over the environment of `base`, if given):
    /// `(its key, its interpreter)`. `parent` names what it is layered on, for its key.
    fn environment(
        &self,
        parent: &str,
        requirements: &[String],
        base: Option<&Path>,
    ) -> Result<(String, PathBuf), TemplateError> {
        let (key, dir) = self.location(parent, requirements);
        let python = dir.join("bin/python");
        let ready = dir.join(READY);
        if ready.exists() {
            return Ok((key, python));
        }
        let failed = |what: &str, e: &dyn std::fmt::Display| TemplateError::Dependencies {
            detail: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(&self.root)
            .map_err(|e| failed("creating the environment root", &e))?;
        let lock = self.root.join(format!("{key}.lock"));
        let _guard = InstallLock::acquire(&lock)?;
        if ready.exists() {
            return Ok((key, python)); // another process built it while we waited
        }
        let _ = std::fs::remove_dir_all(&dir);
        // pip's home, cache and build folders: its own, removed afterwards (a shared cache could
        // be poisoned by one install's build step for the next).
        let build = tempfile::Builder::new()
            .prefix(&format!(".build-{key}-"))
            .tempdir_in(&self.root)
            .map_err(|e| failed("creating pip's build folder", &e))?;
        let home = build.path();
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| failed("opening pip's build folder", &e))?;
        run(
            isolated(&mut Command::new(&self.base_python), home)
                .args(["-m", "venv"])
                .arg(&dir),
            "creating the virtualenv",
        )?;
        if let Some(base) = base {
            let base_packages = site_packages(base, home)?;
            let own_packages = site_packages(&python, home)?;
            std::fs::write(
                own_packages.join(BASE_PTH),
                format!("{}\n", base_packages.display()),
            )
            .map_err(|e| failed("layering the base environment", &e))?;
        }
        let passed: Vec<(&str, std::ffi::OsString)> = PASSED_TO_PIP
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|value| (*name, value)))
            .collect();
        let passed: Vec<(&str, &std::ffi::OsStr)> = passed
            .iter()
            .map(|(name, value)| (*name, value.as_os_str()))
            .collect();
        let folders = Folders {
            input: None,
            output: None,
            scratch: Some(home.to_path_buf()),
            writable: vec![dir.clone()],
            devices: Vec::new(),
        };
        let mut pip = self
            .sandbox
            .command(Purpose::Install, &folders, &python, &passed)?;
        run(
            pip.args([
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--timeout",
                "60",
                "--quiet",
            ])
            .args(requirements),
            &format!("pip install {}", requirements.join(" ")),
        )?;
        std::fs::write(&ready, requirements.join("\n"))
            .map_err(|e| failed("marking the environment ready", &e))?;
        Ok((key, python))
    }
}

/// The folder an interpreter installs pure-Python packages into.
fn site_packages(python: &Path, home: &Path) -> Result<PathBuf, TemplateError> {
    // Asked before pip installs anything into this environment (site must run: it is what
    // makes the prefix the virtualenv's).
    let output = isolated(&mut Command::new(python), home)
        .args([
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .map_err(|e| TemplateError::Dependencies {
            detail: format!("asking {} for its site-packages: {e}", python.display()),
        })?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        return Err(TemplateError::Dependencies {
            detail: format!("{} did not name its site-packages", python.display()),
        });
    }
    Ok(PathBuf::from(path))
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

/// Runs `venv` and the site-packages query (the interpreter's own code, never a package's) with
/// nothing of the worker's environment. pip, which runs packages' build steps, runs sandboxed.
fn isolated<'a>(command: &'a mut Command, home: &Path) -> &'a mut Command {
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
}

/// Variables pip needs to reach an index behind a proxy or a mirror: passed into its sandbox.
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
    fn requirements_pin_versions_and_hold_only_what_was_declared() {
        let deps: Dependencies = [
            ("scikit-learn".to_owned(), "1.5.2".to_owned()),
            ("torch".to_owned(), ">=2".to_owned()),
            ("tqdm".to_owned(), String::new()),
        ]
        .into();
        assert_eq!(
            VenvCache::requirements(&deps),
            vec!["scikit-learn==1.5.2", "torch>=2", "tqdm"]
        );
        assert!(VenvCache::requirements(&Dependencies::new()).is_empty());
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
        let sandbox = Sandbox::new(
            &duma_common::config::SandboxSettings::default(),
            Path::new("python3"),
            Path::new("/nonexistent"),
            Path::new("/nonexistent"),
        );
        let cache = VenvCache::new(
            Path::new("/nonexistent"),
            Path::new("python3"),
            Arc::new(sandbox),
        );
        let deps: Dependencies = [("x; rm -rf /".to_owned(), String::new())].into();
        assert!(matches!(
            cache.interpreter(&deps),
            Err(TemplateError::Dependencies { .. })
        ));
    }
}
