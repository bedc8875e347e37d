//! Shared plumbing of every Duma service (the domain types it carries live in `duma-domain`).
//!
//! | module | what |
//! |---|---|
//! | [`accounts`] | each service's own PostgreSQL role and Redis ACL user |
//! | [`api_error`] | the error table (code → class, status) and the JSON error of both HTTP APIs |
//! | [`config`] | layered typed settings (defaults → TOML → `DUMA_*`) |
//! | [`telemetry`] | tracing subscriber (JSON or pretty) |
//! | [`ops`] | `/metrics`, `/health`, HTTP metrics, `healthcheck` |
//! | [`shutdown`] | SIGTERM/Ctrl-C → cancellation token |
//! | [`service`] | binary scaffolding: `--config`, runtime, exit codes |
//! | [`db`] | Postgres pool, migrations, repositories |
//! | [`redis`] | shared and blocking connections, key names, events, RPC |
//! | [`store`] | object store with size + sha256 on every write |
//! | [`tasks`] | supervised tasks, the stall watchdog, panic isolation |
//! | [`worker`] | the worker host: registration, heartbeat, leases, event feed |
//! | [`process`] | system PostgreSQL/Redis as child processes (test kit, `duma up`) |

pub mod accounts;
pub mod api_error;
pub mod config;
pub mod db;
pub mod ops;
pub mod process;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod worker;

pub use config::Settings;
