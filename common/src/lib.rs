//! Shared plumbing of every Duma service.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | layered typed settings (defaults → TOML → `DUMA_*`) |
//! | [`telemetry`] | tracing subscriber (JSON or pretty) |
//! | [`ops`] | `/metrics`, `/health`, HTTP metrics, `healthcheck` |
//! | [`shutdown`] | SIGTERM/Ctrl-C → cancellation token |
//! | [`db`] | Postgres pool, migrations, repositories |
//! | [`redis`] | shared and blocking connections, key names, events |
//! | [`store`] | object store with size + sha256 on every write |
//! | [`domain`] | ids, statuses, knobs, budgets, proposals |

pub mod config;
pub mod db;
pub mod domain;
pub mod ops;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;

pub use config::Settings;
