//! The templates shipped in the binary.
//!
//! | name | task | knobs |
//! |---|---|---|
//! | `LogisticRegression` | `TABULAR_CLASSIFICATION` | `alpha` (log), `class_weight` |
//! | `RandomForestClassifier` | `TABULAR_CLASSIFICATION` | `n_trees` (log), `max_depth`, `min_samples_split` (log), `max_features` |
//! | `KNeighborsClassifier` | `TABULAR_CLASSIFICATION` | `k` (log), `weighting` |
//! | `RidgeRegression` | `TABULAR_REGRESSION` | `alpha` (log) |
//! | `RandomForestRegressor` | `TABULAR_REGRESSION` | `n_trees` (log), `max_depth`, `min_samples_split` (log), `max_features` |
//!
//! The algorithms are written here rather than taken from smartcore or linfa: neither exposes
//! class probabilities for all of these (smartcore's forests only vote), the saved parameters
//! must be our own versioned format rather than another crate's internal serde layout, and a
//! template must return errors, never panic, on any dataset.

mod forest;
mod knn;
mod knobs;
mod logistic;
mod ridge;
mod tree;

use crate::contract::BuiltinTemplate;

static TEMPLATES: [BuiltinTemplate; 5] = [
    BuiltinTemplate::tabular::<logistic::LogisticRegression>(),
    BuiltinTemplate::tabular::<forest::RandomForestClassifier>(),
    BuiltinTemplate::tabular::<knn::KNeighborsClassifier>(),
    BuiltinTemplate::tabular::<ridge::RidgeRegression>(),
    BuiltinTemplate::tabular::<forest::RandomForestRegressor>(),
];

/// Every built-in template.
pub fn builtin_templates() -> &'static [BuiltinTemplate] {
    &TEMPLATES
}

/// The built-in template registered as `model_class`, e.g. `duma.tabular.LogisticRegression`.
pub fn builtin_template(model_class: &str) -> Option<&'static BuiltinTemplate> {
    TEMPLATES.iter().find(|t| t.model_class == model_class)
}
