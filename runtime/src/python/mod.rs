//! Python templates (Rafiki's `BaseModel` subclasses) run in a child process that speaks the
//! framed protocol of `python/PROTOCOL.md` (`python -m duma.runner`), behind the same [`Model`]
//! contract as the built-in templates.
//!
//! The child runs in a sandbox ([`crate::sandbox`]): nothing of the worker's environment, only
//! the files the worker staged for it, no network, and limits. It is killed when the model is
//! dropped or its [`KillSwitch`] fires (cancel, timeout).

mod runner;
mod venv;

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use duma_domain::{KnobConfig, Knobs};
use serde_json::{Map, Value, json};

pub use runner::KillSwitch;
use runner::Runner;
pub use venv::VenvCache;

use crate::contract::{Model, parse_requests, split};
use crate::error::TemplateError;
use crate::logger::TrialLogger;
use crate::sandbox::{Devices, Purpose, Sandbox};

/// Where and with what a Python template runs.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The interpreter (a virtualenv's `bin/python` holding numpy and the template's dependencies).
    pub python: PathBuf,
    /// The folder holding the `duma` package (the repository's `python/`).
    pub sdk_path: PathBuf,
    /// Parent of the runners' working directories.
    pub work_root: PathBuf,
    /// What confines the runners.
    pub sandbox: Arc<Sandbox>,
    /// The GPUs lent to the runners of this template's trial or served model.
    pub devices: Devices,
}

/// An uploaded template: its source file and class name.
#[derive(Debug, Clone)]
pub struct PythonTemplate {
    pub source: PathBuf,
    pub class_name: String,
    pub env: PythonEnv,
}

impl PythonTemplate {
    fn start(
        &self,
        purpose: Purpose,
        kill: &KillSwitch,
    ) -> Result<(Runner, KnobConfig), TemplateError> {
        let mut runner = Runner::start(&self.env, purpose, kill)?;
        let model_file = runner.stage(&self.source)?;
        let result = runner.request(
            json!({"cmd": "load", "model_file": model_file, "model_class": self.class_name}),
            None,
        )?;
        let config: KnobConfig =
            serde_json::from_value(result.get("knob_config").cloned().unwrap_or(Value::Null))
                .map_err(|e| TemplateError::Runner {
                    detail: format!("the template's knob config is not understood: {e}"),
                })?;
        Ok((runner, config))
    }

    /// Imports the template and reads its knob config (the check that a template is usable).
    pub fn knob_config(&self, kill: &KillSwitch) -> Result<KnobConfig, TemplateError> {
        let (runner, config) = self.start(Purpose::Train, kill)?;
        runner.shutdown();
        config.validate()?;
        Ok(config)
    }

    /// A model to train with `knobs`.
    pub fn build(&self, knobs: &Knobs, kill: &KillSwitch) -> Result<Box<dyn Model>, TemplateError> {
        let (runner, config) = self.start(Purpose::Train, kill)?;
        config.check(knobs)?;
        Ok(Box::new(PythonModel {
            runner: Mutex::new(runner),
            knobs: knobs.clone(),
        }))
    }

    /// A model loaded from saved parameters (the trial's knobs rebuild the instance first).
    pub fn load(
        &self,
        knobs: &Knobs,
        parameters: &[u8],
        kill: &KillSwitch,
    ) -> Result<Box<dyn Model>, TemplateError> {
        let (mut runner, _) = self.start(Purpose::Serve, kill)?;
        let path = runner.write_input("loaded-params", parameters)?;
        runner.request(
            json!({"cmd": "load_parameters", "path": path, "knobs": knobs}),
            None,
        )?;
        Ok(Box::new(PythonModel {
            runner: Mutex::new(runner),
            knobs: knobs.clone(),
        }))
    }
}

struct PythonModel {
    runner: Mutex<Runner>,
    knobs: Knobs,
}

impl PythonModel {
    fn runner(&self) -> parking_lot::MutexGuard<'_, Runner> {
        self.runner.lock()
    }

    /// One predict request to the runner, for a slice small enough for one frame, waiting for
    /// the answer until `deadline` when there is one.
    fn predict_slice(
        &self,
        queries: &[Value],
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, TemplateError> {
        let mut runner = self.runner();
        let request = json!({"cmd": "predict", "queries": queries});
        let result = match deadline {
            Some(deadline) => runner.request_until(request, deadline)?,
            None => runner.request(request, None)?,
        };
        let predictions = match (
            result.get("predictions"),
            result.get("predictions_path").and_then(Value::as_str),
        ) {
            (Some(Value::Array(predictions)), _) => predictions.clone(),
            (_, Some(path)) => {
                let path = runner
                    .output_named(path)
                    .ok_or_else(|| TemplateError::Runner {
                        detail: format!(
                            "predictions were written outside the output folder: {path}"
                        ),
                    })?;
                let text = std::fs::read(&path).map_err(|e| TemplateError::Runner {
                    detail: format!("reading predictions: {e}"),
                })?;
                let _ = std::fs::remove_file(&path);
                serde_json::from_slice(&text).map_err(|e| TemplateError::Runner {
                    detail: format!("predictions are not JSON: {e}"),
                })?
            }
            _ => {
                return Err(TemplateError::Runner {
                    detail: format!("predict returned {result}"),
                });
            }
        };
        if predictions.len() != queries.len() {
            return Err(TemplateError::Runner {
                detail: format!(
                    "predict returned {} predictions for {} queries",
                    predictions.len(),
                    queries.len()
                ),
            });
        }
        Ok(predictions)
    }

    /// The queries' predictions, in slices no larger than a frame (a larger batch would kill the
    /// runner), each waited for until `deadline` when there is one.
    fn predict_until(
        &self,
        queries: &[Value],
        deadline: Option<Instant>,
    ) -> Result<Vec<Value>, TemplateError> {
        let sizes: Vec<usize> = queries
            .iter()
            .map(|q| serde_json::to_vec(q).map_or(usize::MAX, |b| b.len() + 1))
            .collect();
        if let Some(index) = sizes.iter().position(|size| *size > MAX_PREDICT_BYTES) {
            return Err(TemplateError::InvalidQuery {
                index,
                reason: format!(
                    "the query is {} bytes of JSON; a model takes at most {MAX_PREDICT_BYTES}",
                    sizes[index]
                ),
            });
        }
        let mut predictions = Vec::with_capacity(queries.len());
        for range in slices_of_at_most(&sizes, MAX_PREDICT_BYTES) {
            predictions.extend(self.predict_slice(&queries[range], deadline)?);
        }
        Ok(predictions)
    }
}

/// The most JSON one predict request to a runner carries (its frames hold at most 64 MiB).
const MAX_PREDICT_BYTES: usize = 16 << 20;

/// Consecutive ranges of items whose `sizes` add up to at most `limit` each (an item larger than
/// `limit` gets a range of its own).
fn slices_of_at_most(sizes: &[usize], limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut slices = Vec::new();
    let (mut start, mut total) = (0, 0_usize);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && total.saturating_add(*size) > limit {
            slices.push(start..i);
            (start, total) = (i, 0);
        }
        total = total.saturating_add(*size);
    }
    if start < sizes.len() {
        slices.push(start..sizes.len());
    }
    slices
}

impl Model for PythonModel {
    fn train(
        &mut self,
        dataset: &Path,
        train_args: &Map<String, Value>,
        log: &mut TrialLogger,
    ) -> Result<(), TemplateError> {
        self.train_from(dataset, train_args, None, log)
    }

    fn train_from(
        &mut self,
        dataset: &Path,
        train_args: &Map<String, Value>,
        shared_params: Option<&[u8]>,
        log: &mut TrialLogger,
    ) -> Result<(), TemplateError> {
        let mut runner = self.runner();
        let dataset = runner.stage(dataset)?;
        let mut request = json!({"cmd": "train", "knobs": self.knobs, "dataset_path": dataset, "train_args": train_args});
        if let Some(bytes) = shared_params {
            // The runner loads them (Duma's format, never pickle) and passes `shared_params`.
            request["shared_params_path"] = json!(runner.write_input("shared-params", bytes)?);
        }
        runner.request(request, Some(log))?;
        Ok(())
    }

    fn evaluate(&mut self, dataset: &Path, log: &mut TrialLogger) -> Result<f64, TemplateError> {
        let mut runner = self.runner();
        let dataset = runner.stage(dataset)?;
        let result = runner.request(
            json!({"cmd": "evaluate", "dataset_path": dataset}),
            Some(log),
        )?;
        result
            .get("score")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite())
            .ok_or_else(|| TemplateError::Runner {
                detail: format!("evaluate returned {result}, not a finite score"),
            })
    }

    fn predict(&self, queries: &[Value]) -> Result<Vec<Value>, TemplateError> {
        self.predict_until(queries, None)
    }

    fn predict_json(
        &self,
        requests: &[&[u8]],
        deadline: Instant,
    ) -> Result<Vec<Vec<Value>>, TemplateError> {
        let (queries, counts) = parse_requests(requests)?;
        Ok(split(
            self.predict_until(&queries, Some(deadline))?,
            &counts,
        ))
    }

    fn dump_parameters(&self) -> Result<Vec<u8>, TemplateError> {
        let mut runner = self.runner();
        let (host, inside) = runner.output("params");
        runner.request(json!({"cmd": "dump_parameters", "path": inside}), None)?;
        let bytes = std::fs::read(&host).map_err(|e| TemplateError::Runner {
            detail: format!("reading parameters: {e}"),
        })?;
        let _ = std::fs::remove_file(&host);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::slices_of_at_most;

    #[test]
    fn a_batch_is_sliced_so_no_slice_passes_the_limit() {
        assert_eq!(slices_of_at_most(&[4, 4, 4, 4], 8), vec![0..2, 2..4]);
        assert_eq!(
            slices_of_at_most(&[3, 6, 2, 9, 1], 8),
            vec![0..1, 1..3, 3..4, 4..5]
        );
        assert_eq!(slices_of_at_most(&[1; 5], 100), vec![0..5]);
        assert!(slices_of_at_most(&[], 8).is_empty());
    }
}
