use std::path::PathBuf;
use std::process::Command;

use duma_e2e::admin::spawn_app;
use duma_e2e::client::{PASSWORD, SUPERADMIN};

/// The interpreter scripts/setup prepared (with requests and pytest), else the system one.
fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

#[tokio::test]
async fn rafiki_style_python_client_drives_the_admin() {
    let app = spawn_app().await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_rafiki_contract.py");
    let base = app.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(script)
            .env("DUMA_ADMIN_URL", base)
            .env("DUMA_SUPERADMIN_EMAIL", SUPERADMIN)
            .env("DUMA_SUPERADMIN_PASSWORD", PASSWORD)
            .output()
    })
    .await
    .unwrap()
    .expect("python runs (scripts/setup prepares .venv with pytest and requests)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("4 passed"), "{stdout}");
}
