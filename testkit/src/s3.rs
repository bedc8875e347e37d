//! A local S3-compatible server for the tests of one process: moto's server (installed in
//! `.venv` by scripts/setup, or `DUMA_TEST_MOTO_SERVER`), with authentication on, one bucket,
//! and a user whose keys may use it. Each test gets its own key prefix in that bucket.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use duma_common::config::{ObjectStoreKind, ObjectStoreSettings};
use duma_common::process::die_with_parent;
use secrecy::SecretString;

/// The bucket the tests share (prefixes keep them apart).
pub const TEST_BUCKET: &str = "duma-test";

pub struct S3Server {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

static SERVER: OnceLock<Result<S3Server, String>> = OnceLock::new();

/// Starts (once per process) the shared S3 server; panics with the reason if it cannot.
pub fn shared_s3() -> &'static S3Server {
    let server = SERVER.get_or_init(|| crate::servers::started_by_keeper("duma-testkit-s3", start));
    match server {
        Ok(server) => server,
        Err(reason) => panic!("test S3 server unavailable: {reason}"),
    }
}

/// Settings for a store of its own: the shared bucket under a fresh prefix.
pub fn s3_settings() -> ObjectStoreSettings {
    let server = shared_s3();
    ObjectStoreSettings {
        kind: ObjectStoreKind::S3,
        bucket: TEST_BUCKET.into(),
        prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        endpoint: server.endpoint.clone(),
        region: "us-east-1".into(),
        access_key_id: server.access_key_id.clone(),
        secret_access_key: SecretString::from(server.secret_access_key.clone()),
        ..ObjectStoreSettings::default()
    }
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Creates the user, its key, its policy and the bucket. Moto checks signatures against its
/// own IAM users; the first three requests (before any user exists) are let through unsigned.
const BOOTSTRAP: &str = r#"
import sys, boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
anonymous = dict(endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **anonymous)
iam.create_user(UserName="duma")
key = iam.create_access_key(UserName="duma")["AccessKey"]
iam.put_user_policy(UserName="duma", PolicyName="bucket", PolicyDocument=
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}')
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

fn start() -> Result<S3Server, String> {
    let venv = repository().join(".venv/bin");
    let moto = std::env::var_os("DUMA_TEST_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv.join("moto_server"));
    let port = crate::free_port();
    let mut command = Command::new(&moto);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut command, libc::SIGKILL);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {} (run scripts/setup to install it): {e}",
            moto.display()
        )
    })?;
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("moto_server exited at start-up: {status}"));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("moto_server did not listen within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::mem::forget(child); // killed with this thread's parent-death signal
    let endpoint = format!("http://127.0.0.1:{port}");
    let output = Command::new(venv.join("python"))
        .args(["-c", BOOTSTRAP, &endpoint, TEST_BUCKET])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the S3 bootstrap: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the S3 bootstrap failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut keys = stdout.split_whitespace();
    match (keys.next(), keys.next()) {
        (Some(id), Some(secret)) => Ok(S3Server {
            endpoint,
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
        }),
        _ => Err(format!("the S3 bootstrap printed no keys: {stdout}")),
    }
}
