//! Tabular templates: everything between a CSV file or a JSON query and a learner that only sees
//! rows of numbers. A learner implements [`Learner`]; [`model::TabularModel`] turns it into a
//! [`Model`](crate::Model) (datasets, encoding, scoring, logs, parameters).

pub(crate) mod dataset;
pub(crate) mod encoding;
pub(crate) mod labelled;
pub(crate) mod model;
pub(crate) mod target;

use duma_domain::{KnobConfig, Knobs};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TemplateError;
use crate::linalg::Matrix;
use crate::logger::TrialLogger;
use target::TargetKind;

/// A learning algorithm on encoded rows, configured by knobs.
///
/// The implementing type holds the knob values; [`Learner::Fitted`] holds what training learned.
pub(crate) trait Learner: Send + Sync + Sized + 'static {
    /// The template name, as stored in parameter headers.
    const NAME: &'static str;
    const MODEL_CLASS: &'static str;
    /// Whether the encoded features are standardised first: the learner is sensitive to scale.
    const STANDARDIZE: bool;

    type Target: TargetKind;
    type Fitted: Fitted<Output = <Self::Target as TargetKind>::Output>;

    fn knob_config() -> KnobConfig;
    /// Values that work on most datasets; they lie in [`Learner::knob_config`].
    fn default_knobs() -> Knobs;
    /// Reads knob values already checked against [`Learner::knob_config`].
    fn from_knobs(knobs: &Knobs) -> Result<Self, TemplateError>;
    fn fit(
        &self,
        problem: &Problem<'_, Self::Target>,
        log: &mut TrialLogger,
    ) -> Result<Self::Fitted, TemplateError>;
}

/// Encoded training data.
pub(crate) struct Problem<'a, T: TargetKind> {
    pub x: &'a Matrix,
    pub y: &'a [T::Label],
    pub target: &'a T,
    /// Seeds every random choice, so the same data and knobs give the same model.
    pub seed: u64,
}

/// What a learner learned.
pub(crate) trait Fitted: Serialize + DeserializeOwned + Send + Sync {
    type Output;

    /// Predicts for one encoded row.
    fn predict(&self, row: &[f64]) -> Self::Output;

    /// Checks the invariants [`Fitted::predict`] indexes by, for rows of `width` values and
    /// `n_outputs` outputs. Loaded parameters come from outside; a bad index must be an error at
    /// load time, not a panic (or an endless loop) at prediction time.
    fn check(&self, width: usize, n_outputs: usize) -> Result<(), String>;
}
