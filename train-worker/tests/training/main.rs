//! Training end to end: the real admin, advisor and train workers over real PostgreSQL and
//! Redis, driven through the admin's REST API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod python;
mod serving;
mod stack;
mod training;
mod tuning;
