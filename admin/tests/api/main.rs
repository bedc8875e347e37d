//! Admin tests against real PostgreSQL and Redis, the admin bound to port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod binary;
mod datasets;
mod helpers;
mod inference_jobs;
mod matrix;
mod models;
mod ops;
mod python_client;
mod train_jobs;
mod trials;
mod users;
