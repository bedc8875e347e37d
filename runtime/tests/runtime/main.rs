//! The runtime's integration suite: built-in templates trained on generated CSV files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod classification;
mod datasets;
mod gpu;
mod knobs;
mod logs;
mod onnx;
mod parameters;
mod python;
mod regression;
mod support;
