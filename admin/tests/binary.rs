use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The real binary: `migrate` is idempotent, `serve` becomes healthy, SIGTERM stops it cleanly.
#[tokio::test]
async fn binary_migrates_serves_and_stops_on_sigterm() {
    let ctx = duma_testkit::context().await;
    let port = duma_testkit::free_port();
    let binary = env!("CARGO_BIN_EXE_duma-admin");
    let command = |args: &[&str]| {
        let mut command = Command::new(binary);
        command
            .args(args)
            .envs(ctx.service_env())
            .env("DUMA_ADMIN__PORT", port.to_string());
        command
    };

    let migrate = command(&["migrate"]).output().unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let mut server = command(&["serve"]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let check = command(&["healthcheck"]).output().unwrap();
        if check.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "admin did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[test]
fn wrong_type_in_the_environment_fails_start_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_duma-admin"))
        .arg("healthcheck")
        .env("DUMA_ADMIN__PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DUMA_ADMIN__PORT"), "{stderr}");
}
