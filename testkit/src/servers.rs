//! The servers shared by every test of one test process, and the migrated template database.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use duma_common::accounts::Account;
use duma_common::config::DatabaseSettings;
use secrecy::SecretString;
use tokio_postgres::NoTls;

use duma_common::process::{
    die_with_parent, init_postgres_cluster, postgres_bin_dir, postgres_os_user, run_as,
    wait_for_path,
};

use crate::process::redis_command;

/// The password of every service role and ACL user in the test servers (local sockets of a
/// private folder; the PostgreSQL server trusts them anyway).
pub const ROLE_PASSWORD: &str = "test-role-password";

/// Connection strings of the servers this process's tests share.
pub struct SharedServers {
    /// Connection string of the maintenance database (`postgres`), without `dbname`.
    postgres_base: String,
    template: String,
    pub redis_url: String,
}

static SERVERS: OnceLock<Result<SharedServers, String>> = OnceLock::new();

/// Starts (once per process) or finds the shared servers. Panics with the reason if they cannot
/// be had, so a broken setup fails loudly instead of skipping tests.
pub fn shared_servers() -> &'static SharedServers {
    let servers = SERVERS.get_or_init(|| started_by_keeper("duma-testkit-keeper", start));
    match servers {
        Ok(servers) => servers,
        Err(reason) => panic!("test servers unavailable: {reason}"),
    }
}

/// Runs `start` on a thread that then lives until the process exits: servers spawned with a
/// parent-death signal get it when the thread that spawned them ends, so they die with the test
/// process and not before.
pub(crate) fn started_by_keeper<T: Send + 'static>(
    name: &str,
    start: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = sender.send(start());
            loop {
                std::thread::park();
            }
        });
    match spawned {
        Ok(_) => receiver
            .recv()
            .unwrap_or_else(|_| Err(format!("the {name} thread died"))),
        Err(e) => Err(format!("cannot spawn the {name} thread: {e}")),
    }
}

impl SharedServers {
    /// Creates a new, empty database (no schema); returns its connection string.
    pub async fn create_empty_database(&self) -> String {
        let name = format!("duma_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&self.postgres_base, "postgres")
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {}", describe(&e)));
        with_dbname(&self.postgres_base, &name)
    }

    /// Creates a new database copied from the migrated template; returns its connection string.
    pub async fn create_database(&self) -> String {
        let name = format!("duma_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&self.postgres_base, "postgres")
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL: {e}"));
        let sql = format!("CREATE DATABASE {name} TEMPLATE {}", self.template);
        // Copies from one template are serialised by PostgreSQL; a copy that races another
        // session's brief use of the template is retried.
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e)
                    if attempt < 50 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot create test database {name}: {}", describe(&e)),
            }
        }
        with_dbname(&self.postgres_base, &name)
    }
}

fn start() -> Result<SharedServers, String> {
    remove_stale_dirs();
    let postgres_base = match std::env::var("DUMA_TEST_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => start_postgres()?,
    };
    let redis_url = match std::env::var("DUMA_TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) => start_redis()?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let template = runtime.block_on(async {
        let template = ensure_template(&postgres_base).await?;
        let admin = connect(&postgres_base, "postgres").await?;
        for account in Account::ALL {
            let role = account.database_role();
            admin
                .batch_execute(&format!(
                    "ALTER ROLE {role} WITH LOGIN PASSWORD '{ROLE_PASSWORD}'"
                ))
                .await
                .map_err(|e| format!("letting {role} log in: {}", describe(&e)))?;
        }
        Ok::<_, String>(template)
    })?;
    Ok(SharedServers {
        postgres_base,
        template,
        redis_url,
    })
}

/// Our temp dirs are named after the owning process; remove those whose process is gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("duma-testkit-") else {
            continue;
        };
        let Some(pid) = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn process_dir(kind: &str) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("duma-testkit-{kind}-{}-", std::process::id()))
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    // Kept until the next run's remove_stale_dirs: the servers use it until the process ends.
    Ok(dir.keep())
}

fn start_postgres() -> Result<String, String> {
    let bin = postgres_bin_dir()?;
    let dir = process_dir("pg")?;
    let data = dir.join("data");
    let owner = postgres_os_user()?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod: {e}"))?;
    }
    init_postgres_cluster(&bin, &data, owner, true, Stdio::null())?;
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=64MB",
            "-c",
            "log_min_messages=warning",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_as(&mut postgres, owner);
    // SIGQUIT: immediate shutdown; the backends follow their postmaster.
    die_with_parent(&mut postgres, libc::SIGQUIT);
    let mut child: Child = postgres.spawn().map_err(|e| format!("postgres: {e}"))?;
    wait_for_path(
        &dir.join(".s.PGSQL.5432"),
        Duration::from_secs(30),
        &mut child,
    )?;
    std::mem::forget(child); // reaped by the kernel when this process exits
    Ok(format!("host={} port=5432 user=postgres", dir.display()))
}

fn start_redis() -> Result<String, String> {
    let dir = process_dir("redis")?;
    let socket = dir.join("redis.sock");
    let mut command = redis_command(&dir, &socket);
    die_with_parent(&mut command, libc::SIGKILL);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start redis-server (run scripts/setup to install it): {e}"))?;
    wait_for_path(&socket, Duration::from_secs(10), &mut child)?;
    std::mem::forget(child);
    Ok(format!("redis+unix://{}", socket.display()))
}

/// Appends a database name to a key/value connection string, or replaces a URL's path.
fn with_dbname(base: &str, dbname: &str) -> String {
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        let (without_query, query) = base
            .split_once('?')
            .map_or((base, None), |(a, b)| (a, Some(b)));
        let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
        let authority_end = without_query[scheme_end..]
            .find('/')
            .map_or(without_query.len(), |i| scheme_end + i);
        let mut url = format!("{}/{dbname}", &without_query[..authority_end]);
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        url
    } else {
        format!("{base} dbname={dbname}")
    }
}

/// Replaces the user and password of a key/value connection string or a URL.
pub(crate) fn with_user(base: &str, user: &str, password: &str) -> String {
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let rest = &base[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let host = match rest[..authority_end].rsplit_once('@') {
            Some((_, host)) => host,
            None => &rest[..authority_end],
        };
        format!(
            "{}{user}:{password}@{host}{}",
            &base[..scheme_end],
            &rest[authority_end..]
        )
    } else {
        // Later keys win in a key/value string.
        format!("{base} user={user} password={password}")
    }
}

/// tokio-postgres prints server errors as just "db error"; show the server's message.
fn describe(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

async fn connect(base: &str, dbname: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(&with_dbname(base, dbname), NoTls)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates and migrates `duma_template_<fingerprint>` once per schema version. Processes racing
/// for it serialise on an advisory lock; a half-built template is never visible under its name.
async fn ensure_template(base: &str) -> Result<String, String> {
    let template = format!(
        "duma_template_{}",
        duma_common::db::migrations::fingerprint()
    );
    let admin = connect(base, "postgres").await?;
    admin
        .execute("SELECT pg_advisory_lock(727272)", &[])
        .await
        .map_err(|e| e.to_string())?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS {building}"),
            format!("CREATE DATABASE {building}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("create template: {}", describe(&e)))?;
        }
        let settings = DatabaseSettings {
            url: SecretString::from(with_dbname(base, &building)),
            ..DatabaseSettings::default()
        };
        duma_common::db::migrations::run(&settings)
            .await
            .map_err(|e| format!("migrate template: {e:#}"))?;
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .map_err(|e| format!("rename template: {}", describe(&e)))?;
    }
    admin
        .execute("SELECT pg_advisory_unlock(727272)", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::{with_dbname, with_user};

    #[test]
    fn dbname_goes_into_both_connection_string_forms() {
        assert_eq!(
            with_dbname("host=/tmp/x user=postgres", "d1"),
            "host=/tmp/x user=postgres dbname=d1"
        );
        assert_eq!(
            with_dbname("postgres://u:p@h:5/postgres?sslmode=disable", "d1"),
            "postgres://u:p@h:5/d1?sslmode=disable"
        );
        assert_eq!(with_dbname("postgresql://u@h", "d1"), "postgresql://u@h/d1");
    }

    #[test]
    fn user_goes_into_both_connection_string_forms() {
        assert_eq!(
            with_user("host=/tmp/x user=postgres dbname=d1", "r", "pw"),
            "host=/tmp/x user=postgres dbname=d1 user=r password=pw"
        );
        assert_eq!(
            with_user("postgres://u:p@h:5/d1?sslmode=disable", "r", "pw"),
            "postgres://r:pw@h:5/d1?sslmode=disable"
        );
        assert_eq!(
            with_user("postgresql://h/d1", "r", "pw"),
            "postgresql://r:pw@h/d1"
        );
    }
}
