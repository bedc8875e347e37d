//! The template contract (Rafiki's `BaseModel`): what the train and inference workers call.

use std::path::Path;
use std::time::Instant;

use duma_domain::{KnobConfig, Knobs};
use serde_json::{Map, Value};

use crate::error::TemplateError;
use crate::logger::TrialLogger;

/// A model built from concrete knob values, or loaded from saved parameters.
///
/// Calls are synchronous and may run for a long time: callers run them on a blocking thread.
pub trait Model: Send {
    /// Trains on the dataset file. `train_args` are the train job's (for tabular templates:
    /// `features`, `target`, and an optional integer `seed`).
    fn train(
        &mut self,
        dataset: &Path,
        train_args: &Map<String, Value>,
        log: &mut TrialLogger,
    ) -> Result<(), TemplateError>;

    /// [`Self::train`], starting from `shared_params`: the saved parameters of an earlier trial
    /// of the same template (Rafiki's `SHARE_PARAMS` policy), for templates that warm-start.
    /// Templates that cannot (the built-ins) train from scratch.
    fn train_from(
        &mut self,
        dataset: &Path,
        train_args: &Map<String, Value>,
        shared_params: Option<&[u8]>,
        log: &mut TrialLogger,
    ) -> Result<(), TemplateError> {
        let _ = shared_params;
        self.train(dataset, train_args, log)
    }

    /// Scores the trained model on a validation dataset. Higher is better (accuracy for
    /// classification, R² for regression).
    fn evaluate(&mut self, dataset: &Path, log: &mut TrialLogger) -> Result<f64, TemplateError>;

    /// One prediction per query, in order. A bad query fails the batch with its index.
    fn predict(&self, queries: &[Value]) -> Result<Vec<Value>, TemplateError>;

    /// What serving calls: the queries of one or more requests, each request's a JSON array of
    /// queries as it was sent, all predicted together. Answers each request's queries, in order.
    /// By default the arrays are parsed and given to one [`Self::predict`] call; a model that can
    /// read the text itself (ONNX, into its input tensor) overrides this and builds no values.
    /// A request that is not a JSON array fails the call, like a query the model refuses.
    ///
    /// `deadline` is when the last caller stops waiting. A model that runs in another process (a
    /// Python template) is killed if it has not answered by then ([`TemplateError::Hung`]); one
    /// that computes in this process (built-in, ONNX: bounded work) finishes its call.
    fn predict_json(
        &self,
        requests: &[&[u8]],
        deadline: Instant,
    ) -> Result<Vec<Vec<Value>>, TemplateError> {
        let _ = deadline;
        let (queries, counts) = parse_requests(requests)?;
        Ok(split(self.predict(&queries)?, &counts))
    }

    /// Versioned binary format (a header with magic bytes, format version and template name, then
    /// the payload); see [`crate::params`].
    fn dump_parameters(&self) -> Result<Vec<u8>, TemplateError>;
}

/// The queries of every request (each a JSON array), and how many each request has.
pub(crate) fn parse_requests(
    requests: &[&[u8]],
) -> Result<(Vec<Value>, Vec<usize>), TemplateError> {
    let mut queries = Vec::new();
    let mut counts = Vec::with_capacity(requests.len());
    for payload in requests {
        let mut list: Vec<Value> =
            serde_json::from_slice(payload).map_err(|e| refusal(payload, queries.len(), e))?;
        counts.push(list.len());
        queries.append(&mut list);
    }
    Ok((queries, counts))
}

/// Why a request's queries (the first at `offset` of the batch) cannot be read: the query that
/// holds what cannot be read (a number no float can hold), or the request as a whole.
fn refusal(payload: &[u8], offset: usize, error: serde_json::Error) -> TemplateError {
    if let Ok(list) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(payload) {
        for (index, query) in list.iter().enumerate() {
            if let Err(error) = serde_json::from_str::<Value>(query.get()) {
                return TemplateError::InvalidQuery {
                    index: offset + index,
                    reason: error.to_string(),
                };
            }
        }
    }
    TemplateError::InvalidQuery {
        index: offset,
        reason: format!("the queries are not a JSON array: {error}"),
    }
}

/// `predictions` cut into consecutive runs of `counts` (a model short of predictions leaves the
/// last runs short: the caller checks each run's length against its queries).
pub(crate) fn split(predictions: Vec<Value>, counts: &[usize]) -> Vec<Vec<Value>> {
    let mut rest = predictions.into_iter();
    counts
        .iter()
        .map(|&count| rest.by_ref().take(count).collect())
        .collect()
}

type ModelResult = Result<Box<dyn Model>, TemplateError>;

/// A template shipped in the binary: its identity, knob space, and how to build or load models.
#[derive(Debug)]
pub struct BuiltinTemplate {
    /// Short name, also written in the header of saved parameters.
    pub name: &'static str,
    /// The Rafiki task it serves, e.g. `TABULAR_CLASSIFICATION`.
    pub task: &'static str,
    /// The name models are registered under, e.g. `duma.tabular.LogisticRegression`.
    pub model_class: &'static str,
    pub(crate) knob_config: fn() -> KnobConfig,
    pub(crate) default_knobs: fn() -> Knobs,
    pub(crate) build: fn(&Knobs) -> ModelResult,
    pub(crate) load: fn(&[u8]) -> ModelResult,
}

impl BuiltinTemplate {
    /// The knob space an advisor proposes values from.
    pub fn knob_config(&self) -> KnobConfig {
        (self.knob_config)()
    }

    /// Knob values that work on most datasets, for a single trial without tuning.
    pub fn default_knobs(&self) -> Knobs {
        (self.default_knobs)()
    }

    /// A fresh model for one trial. Fails with [`TemplateError::InvalidKnobs`] unless `knobs` has
    /// exactly one in-space value for every knob.
    pub fn build(&self, knobs: &Knobs) -> Result<Box<dyn Model>, TemplateError> {
        self.knob_config().check(knobs)?;
        (self.build)(knobs)
    }

    /// A trained model from [`Model::dump_parameters`] output. Fails with
    /// [`TemplateError::InvalidParameters`] for another template's parameters, another format
    /// version, or corrupt bytes.
    pub fn load(&self, parameters: &[u8]) -> Result<Box<dyn Model>, TemplateError> {
        (self.load)(parameters)
    }
}
