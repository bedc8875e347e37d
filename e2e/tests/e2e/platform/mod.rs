//! Training end to end: the real admin, advisor and train workers (and, for serving, inference
//! workers, predictors and nginx), driven through the admin's REST API.

mod deployments;
mod evaluations;
mod onnx;
mod python;
mod serving;
mod training;
mod tuning;
