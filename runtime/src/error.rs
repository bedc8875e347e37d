use duma_domain::KnobError;

/// Why a template could not be built, trained, evaluated, queried or loaded.
///
/// Every variant names something the user can fix (knobs, train args, dataset, query, saved
/// parameters), so the platform can show the message as is: the train worker stores it as the
/// trial's error, the predictor answers `InvalidQuery` with a 400.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The knob values are not in the template's knob space.
    #[error("invalid knobs: {0}")]
    InvalidKnobs(#[from] KnobError),
    /// A train arg has the wrong type or names something that does not exist.
    #[error("invalid train args: {reason}")]
    InvalidTrainArgs { reason: String },
    /// The dataset file cannot be read or does not have the shape the template needs.
    #[error("invalid dataset: {reason}")]
    InvalidDataset { reason: String },
    /// One query of a batch cannot be answered; `index` is its position in the batch.
    #[error("invalid query at index {index}: {reason}")]
    InvalidQuery { index: usize, reason: String },
    /// Saved parameters are not this template's, not this format version's, or corrupt.
    #[error("invalid parameters: {reason}")]
    InvalidParameters { reason: String },
    /// `evaluate`, `predict` or `dump_parameters` was called before `train` or `load`.
    #[error("the model has not been trained or loaded, so it cannot {action}")]
    NotTrained { action: &'static str },
    /// Training ran but could not produce a model (for example a singular system).
    #[error("training failed: {0}")]
    Training(String),
    /// A Python template raised: the exception's class, message and traceback.
    #[error("{kind}: {message}\n{traceback}")]
    Python {
        kind: String,
        message: String,
        traceback: String,
    },
    /// The Python runner could not be started, crashed, hung past its limit, or broke the
    /// protocol; `detail` includes the tail of its stderr.
    #[error("python runner: {detail}")]
    Runner { detail: String },
    /// A served model did not answer before its last caller stopped waiting: its runner was
    /// killed, and the model must be loaded again.
    #[error("the model did not answer within {} ms", .waited.as_millis())]
    Hung { waited: std::time::Duration },
    /// This host cannot confine model code (and the operator did not opt out): the reason.
    #[error("model code cannot run on this worker: {detail}")]
    Sandbox { detail: String },
    /// The template's declared dependencies could not be installed.
    #[error("installing dependencies failed: {detail}")]
    Dependencies { detail: String },
}

/// The most of a template's own error message shown to an app user.
const PUBLIC_MESSAGE_CHARS: usize = 500;

impl TemplateError {
    /// What an app user (who did not write the template) is told: no traceback, no runner
    /// output, no server paths — those go to the serving worker's log. A Python exception keeps
    /// its class and message (the template author's words, cut at 500 characters).
    pub fn public_message(&self) -> String {
        match self {
            Self::Python { kind, message, .. } => {
                let message: String = message.chars().take(PUBLIC_MESSAGE_CHARS).collect();
                format!("the model raised {kind}: {message}")
            }
            Self::Runner { .. } | Self::Dependencies { .. } | Self::Sandbox { .. } => {
                "the model's process failed; the inference job's owner can find why in the \
                 inference worker's log"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn dataset(reason: impl Into<String>) -> Self {
        Self::InvalidDataset {
            reason: reason.into(),
        }
    }

    pub(crate) fn train_args(reason: impl Into<String>) -> Self {
        Self::InvalidTrainArgs {
            reason: reason.into(),
        }
    }

    pub(crate) fn parameters(reason: impl Into<String>) -> Self {
        Self::InvalidParameters {
            reason: reason.into(),
        }
    }
}
