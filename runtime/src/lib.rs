//! Model runtimes behind one contract (Rafiki's template interface).
//!
//! | item | what |
//! |---|---|
//! | [`Model`] | train / evaluate / predict / dump parameters, synchronous (run it on a blocking thread) |
//! | [`BuiltinTemplate`] | a template shipped in the binary: identity, knob space, `build`, `load` |
//! | [`builtin_templates`] | the tabular templates (logistic regression, random forests, k-NN, ridge) |
//! | [`TrialLogger`] | messages, metrics and plot definitions a model logs while it trains |
//! | [`params`] | the versioned binary format of saved parameters |
//! | [`python`] | Python templates in a child process, virtualenvs per dependency set |
//! | [`sandbox`] | the bubblewrap sandbox and limits of every process that runs model code |
//!
//! Tabular templates read Rafiki's CSV datasets (header row; `features` and `target` train args)
//! and answer queries shaped `{feature: value}`: class probabilities for classification, a number
//! for regression. Python templates run in a child process behind the same [`Model`] trait.

mod builtin;
mod contract;
mod error;
mod json_rows;
pub mod linalg;
mod logger;
pub mod onnx;
mod optim;
pub mod params;
pub mod python;
mod resolve;
pub mod sandbox;
mod tabular;
mod template;

pub use builtin::{builtin_template, builtin_templates};
pub use contract::{BuiltinTemplate, Model};
pub use error::TemplateError;
pub use logger::{LogRecord, TrialLogger};
pub use resolve::TemplateResolver;
pub use tabular::labelled::{LabelledRows, class_names_of, labelled_rows_of, tabular_metadata};
pub use template::Template;
