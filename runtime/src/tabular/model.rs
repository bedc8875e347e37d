//! [`TabularModel`]: any [`Learner`] as a [`Model`] on Rafiki's tabular CSV datasets.

use std::path::Path;
use std::time::Instant;

use duma_domain::Knobs;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract::{BuiltinTemplate, Model};
use crate::error::TemplateError;
use crate::linalg::Matrix;
use crate::logger::TrialLogger;
use crate::params;
use crate::tabular::dataset::{ColumnSelection, Table};
use crate::tabular::encoding::FeatureEncoder;
use crate::tabular::target::{TargetKind, labelled_rows};
use crate::tabular::{Fitted, Learner, Problem};

/// The training score is measured on at most this many training rows: enough for the log, and it
/// keeps nearest neighbours (whose predictions scan all training rows) from going quadratic.
const TRAIN_SCORE_ROWS: usize = 1000;

type Label<L> = <<L as Learner>::Target as TargetKind>::Label;
type Output<L> = <<L as Learner>::Target as TargetKind>::Output;

pub(crate) struct TabularModel<L: Learner> {
    /// Saved with the parameters, so a loaded model knows its knobs and can be trained again.
    knobs: Knobs,
    learner: L,
    trained: Option<Trained<L>>,
}

/// Everything prediction needs, saved as the parameters payload.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Trained<L: Learner> {
    columns: ColumnSelection,
    encoder: FeatureEncoder,
    target: L::Target,
    fitted: L::Fitted,
}

impl BuiltinTemplate {
    pub(crate) const fn tabular<L: Learner>() -> Self {
        BuiltinTemplate {
            name: L::NAME,
            task: <L::Target as TargetKind>::TASK,
            model_class: L::MODEL_CLASS,
            knob_config: L::knob_config,
            default_knobs: L::default_knobs,
            build: build::<L>,
            load: load::<L>,
        }
    }
}

fn build<L: Learner>(knobs: &Knobs) -> Result<Box<dyn Model>, TemplateError> {
    Ok(Box::new(TabularModel {
        knobs: knobs.clone(),
        learner: L::from_knobs(knobs)?,
        trained: None,
    }))
}

fn load<L: Learner>(parameters: &[u8]) -> Result<Box<dyn Model>, TemplateError> {
    let (knobs_json, trained): (String, Trained<L>) = params::decode(L::NAME, parameters)?;
    let inconsistent = |reason: String| {
        TemplateError::parameters(format!(
            "the `{}` parameters are inconsistent: {reason}",
            L::NAME
        ))
    };
    // Knobs go through the same check as `build`, so a loaded model never holds values its
    // template would refuse.
    let knobs: Knobs = serde_json::from_str(&knobs_json)
        .map_err(|e| inconsistent(format!("unreadable knobs: {e}")))?;
    L::knob_config()
        .check(&knobs)
        .map_err(|e| inconsistent(format!("saved knobs: {e}")))?;
    trained.check().map_err(inconsistent)?;
    Ok(Box::new(TabularModel {
        learner: L::from_knobs(&knobs)?,
        knobs,
        trained: Some(trained),
    }))
}

impl<L: Learner> Trained<L> {
    fn check(&self) -> Result<(), String> {
        self.encoder.check()?;
        self.fitted
            .check(self.encoder.width(), self.target.n_outputs())
    }

    fn predict_rows(&self, x: &Matrix, rows: &[usize]) -> Vec<Output<L>> {
        rows.iter()
            .map(|&row| self.fitted.predict(x.row(row)))
            .collect()
    }
}

impl<L: Learner> TabularModel<L> {
    fn trained(&self, action: &'static str) -> Result<&Trained<L>, TemplateError> {
        self.trained
            .as_ref()
            .ok_or(TemplateError::NotTrained { action })
    }
}

impl<L: Learner> Model for TabularModel<L> {
    fn train(
        &mut self,
        dataset: &Path,
        train_args: &Map<String, Value>,
        log: &mut TrialLogger,
    ) -> Result<(), TemplateError> {
        let started = Instant::now();
        let table = Table::read(dataset)?;
        let columns = ColumnSelection::from_train_args(train_args, &table)?;
        let seed = seed(train_args)?;

        let target_column = table.column(&columns.target, "target")?;
        let rows = labelled_rows(&target_column);
        if rows.is_empty() {
            return Err(TemplateError::dataset(format!(
                "target column `{}` has no values",
                columns.target
            )));
        }
        if rows.len() < table.n_rows() {
            log.message(format!(
                "left out {} of {} rows whose target `{}` is missing",
                table.n_rows() - rows.len(),
                table.n_rows(),
                columns.target
            ));
        }
        let (target, y) = L::Target::fit(&target_column, &rows)?;
        let (encoder, encoded) = FeatureEncoder::fit(&table, &columns.features, L::STANDARDIZE)?;
        let x = if rows.len() == table.n_rows() {
            encoded
        } else {
            select_rows(&encoded, &rows)
        };
        log.message(format!(
            "training {} on {} rows: {}; target `{}`: {}",
            L::NAME,
            x.n_rows(),
            encoder.describe(),
            columns.target,
            target.describe()
        ));

        let problem = Problem {
            x: &x,
            y: &y,
            target: &target,
            seed,
        };
        let fitted = self.learner.fit(&problem, log)?;
        let trained: Trained<L> = Trained {
            columns,
            encoder,
            target,
            fitted,
        };

        let sample = spread_sample(x.n_rows(), TRAIN_SCORE_ROWS);
        let truth: Vec<Option<Label<L>>> = sample.iter().map(|&row| Some(y[row])).collect();
        let train_score = trained
            .target
            .score(&truth, &trained.predict_rows(&x, &sample));
        log.metrics([
            (format!("train_{}", L::Target::SCORE), train_score),
            ("train_seconds".to_owned(), started.elapsed().as_secs_f64()),
        ]);
        self.trained = Some(trained);
        Ok(())
    }

    fn evaluate(&mut self, dataset: &Path, log: &mut TrialLogger) -> Result<f64, TemplateError> {
        let trained = self.trained("evaluate")?;
        let table = Table::read(dataset)?;
        let target_column = table.column(&trained.columns.target, "target")?;
        let rows = labelled_rows(&target_column);
        if rows.is_empty() {
            return Err(TemplateError::dataset(format!(
                "target column `{}` of the validation dataset has no values",
                trained.columns.target
            )));
        }
        let truth = trained.target.encode(&target_column, &rows)?;
        let x = trained.encoder.encode_table(&table)?;
        let score = trained
            .target
            .score(&truth, &trained.predict_rows(&x, &rows));
        log.message(format!("evaluated on {} validation rows", rows.len()));
        log.metrics([(L::Target::SCORE, score)]);
        Ok(score)
    }

    fn predict(&self, queries: &[Value]) -> Result<Vec<Value>, TemplateError> {
        let trained = self.trained("predict")?;
        queries
            .iter()
            .enumerate()
            .map(|(index, query)| {
                let row = trained
                    .encoder
                    .encode_query(query)
                    .map_err(|reason| TemplateError::InvalidQuery { index, reason })?;
                Ok(trained.target.to_json(&trained.fitted.predict(&row)))
            })
            .collect()
    }

    fn dump_parameters(&self) -> Result<Vec<u8>, TemplateError> {
        let trained = self.trained("dump its parameters")?;
        // JSON because knob values are untagged (1 and 1.0 differ), which postcard cannot carry.
        let knobs_json = serde_json::to_string(&self.knobs)
            .map_err(|e| TemplateError::parameters(format!("cannot encode the knobs: {e}")))?;
        params::encode(L::NAME, &(knobs_json, trained))
    }
}

/// The optional `seed` train arg: a non-negative integer, 0 when absent.
fn seed(train_args: &Map<String, Value>) -> Result<u64, TemplateError> {
    match train_args.get("seed") {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value.as_u64().ok_or_else(|| {
            TemplateError::train_args(format!(
                "`seed` must be a non-negative integer, got {value}"
            ))
        }),
    }
}

fn select_rows(x: &Matrix, rows: &[usize]) -> Matrix {
    let mut selected = Matrix::with_columns(x.n_cols(), rows.len());
    for &row in rows {
        selected.push_row(x.row(row));
    }
    selected
}

/// At most `limit` row indices spread evenly over `0..n` (all of them when `n <= limit`).
fn spread_sample(n: usize, limit: usize) -> Vec<usize> {
    if n <= limit {
        (0..n).collect()
    } else {
        (0..limit).map(|i| i * n / limit).collect()
    }
}
