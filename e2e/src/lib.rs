//! The platform end to end, for tests and benches: every service in one process over the test
//! kit's PostgreSQL and Redis ([`stack`], or [`admin`] alone), a typed client for the admin API
//! ([`client`]), nginx in front of predictors ([`nginx`]), and generated datasets
//! ([`data`], the test kit's). The tests are in `tests/e2e` (`api/`: the admin's REST API;
//! `platform/`: training, tuning and serving through the whole stack); the benches in `benches/`.
// Test support: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod client;
pub mod nginx;
pub mod stack;

pub use duma_testkit::data;
