//! Dev-only test kit: throwaway PostgreSQL and Redis servers, one migrated template database,
//! and per-test isolation (a database copied from the template and a Redis key prefix).
//!
//! Servers come from the system binaries (`initdb`/`postgres` run as the `postgres` OS user when
//! the tests run as root; `redis-server`), listen on unix sockets in a temp dir, and die with the
//! test process (parent-death signal). `DUMA_TEST_DATABASE_URL` / `DUMA_TEST_REDIS_URL` point the
//! kit at existing servers instead.

pub mod data;
mod process;
mod s3;
mod servers;

use duma_common::accounts::Account;
use duma_common::config::{ObjectStoreKind, Settings};
use duma_common::db::PgPool;
use duma_common::redis::Redis;
use duma_common::store::ObjectStore;
use secrecy::SecretString;

pub use process::RedisServer;
pub use s3::{S3Server, TEST_BUCKET, s3_settings, shared_s3};
pub use servers::{ROLE_PASSWORD, shared_servers};

/// Everything one test needs, isolated from every other test.
pub struct TestContext {
    /// Settings pointing at this test's database, Redis prefix and object-store folder.
    pub settings: Settings,
    pub pool: PgPool,
    pub redis: Redis,
    pub store: ObjectStore,
    /// Holds the object-store folder alive for the test's duration.
    pub dir: tempfile::TempDir,
}

/// A fresh database (a copy of the migrated template), a fresh Redis prefix and a fresh
/// object-store folder.
pub async fn context() -> TestContext {
    let servers = shared_servers();
    let database_url = servers.create_database().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let mut settings = Settings {
        dev_mode: true,
        ..Settings::default()
    };
    settings.database.url = SecretString::from(database_url);
    settings.database.max_connections = 8;
    settings.redis.url = SecretString::from(servers.redis_url.clone());
    settings.redis.key_prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    settings.object_store.kind = ObjectStoreKind::Local;
    settings.object_store.root = dir.path().join("objects");
    settings.admin.host = "127.0.0.1".into();
    settings.admin.port = 0;
    settings.admin.jwt_secret = SecretString::from("test-secret-that-is-long-enough");
    settings.admin.superadmin_password = SecretString::from("rafiki");
    settings.predictor.host = "127.0.0.1".into();
    settings.predictor.port = 0;
    for worker in [
        &mut settings.advisor_worker,
        &mut settings.train_worker,
        &mut settings.inference_worker,
    ] {
        worker.host = "127.0.0.1".into();
        worker.port = 0;
    }
    let pool = duma_common::db::pool(&settings.database)
        .unwrap_or_else(|e| panic!("cannot build a pool for the test database: {e}"));
    let redis = Redis::connect(&settings.redis)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Redis: {e}"));
    let store = ObjectStore::from_settings(&settings.object_store)
        .unwrap_or_else(|e| panic!("cannot open the test object store: {e}"));
    create_redis_users(&redis, &settings.redis.key_prefix).await;
    TestContext {
        settings,
        pool,
        redis,
        store,
        dir,
    }
}

impl TestContext {
    /// `DUMA_*` variables that point a spawned service binary at this test's database, Redis
    /// prefix and object store.
    pub fn service_env(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        let s = &self.settings;
        vec![
            ("DUMA_DEV_MODE".into(), "true".into()),
            ("DUMA_LOG__FORMAT".into(), "json".into()),
            (
                "DUMA_DATABASE__URL".into(),
                s.database.url.expose_secret().to_owned(),
            ),
            (
                "DUMA_REDIS__URL".into(),
                s.redis.url.expose_secret().to_owned(),
            ),
            ("DUMA_REDIS__KEY_PREFIX".into(), s.redis.key_prefix.clone()),
            (
                "DUMA_OBJECT_STORE__KIND".into(),
                match s.object_store.kind {
                    ObjectStoreKind::Local => "local",
                    ObjectStoreKind::S3 => "s3",
                }
                .into(),
            ),
            (
                "DUMA_OBJECT_STORE__ROOT".into(),
                s.object_store.root.display().to_string(),
            ),
            (
                "DUMA_OBJECT_STORE__BUCKET".into(),
                s.object_store.bucket.clone(),
            ),
            (
                "DUMA_OBJECT_STORE__PREFIX".into(),
                s.object_store.prefix.clone(),
            ),
            (
                "DUMA_OBJECT_STORE__ENDPOINT".into(),
                s.object_store.endpoint.clone(),
            ),
            (
                "DUMA_OBJECT_STORE__REGION".into(),
                s.object_store.region.clone(),
            ),
            (
                "DUMA_OBJECT_STORE__ACCESS_KEY_ID".into(),
                s.object_store.access_key_id.clone(),
            ),
            (
                "DUMA_OBJECT_STORE__SECRET_ACCESS_KEY".into(),
                s.object_store.secret_access_key.expose_secret().to_owned(),
            ),
            (
                "DUMA_ADMIN__JWT_SECRET".into(),
                s.admin.jwt_secret.expose_secret().to_owned(),
            ),
            (
                "SUPERADMIN_PASSWORD".into(),
                s.admin.superadmin_password.expose_secret().to_owned(),
            ),
        ]
    }
}

/// `settings` as the service `account` connects: its own PostgreSQL role and, on the shared
/// test Redis, its own ACL user for this test's key prefix (`duma_common::accounts`). A service
/// built from these meets the same refusals it would in production when it reaches for more.
pub fn as_account(settings: &Settings, account: Account) -> Settings {
    use secrecy::ExposeSecret;
    let mut settings = settings.clone();
    settings.database.url = SecretString::from(servers::with_user(
        settings.database.url.expose_secret(),
        account.database_role(),
        ROLE_PASSWORD,
    ));
    if settings.redis.url.expose_secret() == shared_servers().redis_url {
        let user = redis_user(&settings.redis.key_prefix, account);
        settings.redis.url = SecretString::from(format!(
            "{}?user={user}&pass={ROLE_PASSWORD}",
            shared_servers().redis_url
        ));
    }
    settings
}

/// The shared Redis serves many tests at once: each test's ACL users are named for its prefix.
fn redis_user(prefix: &str, account: Account) -> String {
    format!("{prefix}{}", account.redis_user())
}

async fn create_redis_users(redis: &Redis, prefix: &str) {
    let mut conn = redis.shared();
    for account in Account::ALL {
        let mut command = redis::cmd("ACL");
        command
            .arg("SETUSER")
            .arg(redis_user(prefix, account))
            .arg("on")
            .arg(format!(">{ROLE_PASSWORD}"))
            .arg(account.redis_rules(prefix));
        command
            .query_async::<()>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create the Redis user of {account:?}: {e}"));
    }
}

/// A TCP port that was free a moment ago (for binaries that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
