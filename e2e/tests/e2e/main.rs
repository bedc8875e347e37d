//! Duma driven from outside: the admin's REST API (`api/`), and training, tuning and serving
//! through the whole stack (`platform/`), over real PostgreSQL, Redis and nginx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod platform;
