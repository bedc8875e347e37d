//! Admin tests against real PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod ops;
