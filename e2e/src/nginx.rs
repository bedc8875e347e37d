//! nginx in front of predictors, configured as in production.

use std::time::{Duration, Instant};

/// nginx from the system, configured by `nginx/nginx.conf` in a temp prefix, in front of
/// `upstreams`; killed when dropped.
pub struct Nginx {
    child: std::process::Child,
    pub url: String,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    pub fn start(upstreams: &[String]) -> Self {
        Self::start_with_job_ports(upstreams, &[])
    }

    /// [`Nginx::start`], also listening on `job_ports` (inference jobs' own ports).
    pub fn start_with_job_ports(upstreams: &[String], job_ports: &[u16]) -> Self {
        let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let prefix = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(prefix.path().join("tmp")).unwrap();
        std::fs::copy(
            repository.join("nginx/nginx.conf"),
            prefix.path().join("nginx.conf"),
        )
        .unwrap();
        let port = duma_testkit::free_port();
        let listen: String = std::iter::once(port)
            .chain(job_ports.iter().copied())
            .map(|port| format!("listen 127.0.0.1:{port};\n"))
            .collect();
        std::fs::write(prefix.path().join("listen.conf"), listen).unwrap();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {} max_fails=0;\n", u.trim_start_matches("http://")))
            .collect();
        std::fs::write(prefix.path().join("upstreams.conf"), servers).unwrap();
        let binary = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .unwrap_or("nginx");
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(prefix.path())
            .args([
                "-c",
                "nginx.conf",
                "-e",
                "stderr",
                "-g",
                "daemon off; user root;",
            ])
            .spawn()
            .expect("nginx (scripts/setup installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url,
            _prefix: prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
