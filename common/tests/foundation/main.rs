//! Foundation tests against real PostgreSQL and Redis servers (see duma-testkit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod leases;
mod migrations;
mod ops;
mod redis;
mod repositories;
mod rpc;
mod s3;
