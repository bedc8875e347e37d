//! The admin's REST API, the admin alone bound to port 0.

mod bad_input;
mod dashboard;
mod datasets;
mod inference_jobs;
mod matrix;
mod models;
mod ops;
mod python_client;
mod train_jobs;
mod trials;
mod users;
