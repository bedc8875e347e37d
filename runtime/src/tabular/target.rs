//! The target column: class labels for classification, numbers for regression, and how each
//! task scores predictions (accuracy, R²) and shapes them as JSON.

use std::cmp::Ordering;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TemplateError;
use crate::tabular::dataset::{Cell, Column, parse_number};

/// What a tabular task learns to predict.
pub(crate) trait TargetKind:
    Serialize + DeserializeOwned + Send + Sync + Sized + 'static
{
    /// The Rafiki task name templates of this kind serve.
    const TASK: &'static str;
    /// Name of the score `evaluate` returns, as logged.
    const SCORE: &'static str;
    /// One training row's target, encoded.
    type Label: Copy + Send + Sync;
    /// What a fitted learner predicts for one row.
    type Output;

    /// Learns the target's encoding from the training `rows` (those with a target value).
    fn fit(column: &Column<'_>, rows: &[usize]) -> Result<(Self, Vec<Self::Label>), TemplateError>;

    /// Encodes validation targets. `None` is a value the model cannot predict (a class unseen in
    /// training), which scores as a wrong prediction.
    fn encode(
        &self,
        column: &Column<'_>,
        rows: &[usize],
    ) -> Result<Vec<Option<Self::Label>>, TemplateError>;

    /// Higher is better.
    fn score(&self, truth: &[Option<Self::Label>], predictions: &[Self::Output]) -> f64;

    fn to_json(&self, prediction: &Self::Output) -> Value;

    /// Values a learner outputs per row (classes, or 1).
    fn n_outputs(&self) -> usize;

    /// A line for the trial log.
    fn describe(&self) -> String;
}

/// Rows whose target cell holds a value; the others cannot be learned from or scored.
pub(crate) fn labelled_rows(column: &Column<'_>) -> Vec<usize> {
    (0..column.len())
        .filter(|&row| column.cell(row) != Cell::Missing)
        .collect()
}

/// The classes of a classification target, in the order of predicted probabilities: sorted by
/// value when every label is a number (so `2` comes before `10`), else sorted as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ClassLabels {
    Numeric(Vec<f64>),
    Text(Vec<String>),
}

/// More classes than this is almost surely a numeric target given to a classifier by mistake.
pub(crate) const MAX_CLASSES: usize = 1000;

impl ClassLabels {
    pub(crate) fn len(&self) -> usize {
        match self {
            ClassLabels::Numeric(values) => values.len(),
            ClassLabels::Text(names) => names.len(),
        }
    }

    fn index_of(&self, text: &str) -> Option<usize> {
        match self {
            ClassLabels::Numeric(values) => {
                let value = normalize(parse_number(text)?);
                values.binary_search_by(|v| v.total_cmp(&value)).ok()
            }
            ClassLabels::Text(names) => names.binary_search_by(|n| n.as_str().cmp(text)).ok(),
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        match self {
            ClassLabels::Numeric(values) => values.iter().map(f64::to_string).collect(),
            ClassLabels::Text(names) => names.clone(),
        }
    }
}

/// `-0` and `0` are one class.
fn normalize(value: f64) -> f64 {
    value + 0.0
}

fn present_texts<'a>(column: &Column<'a>, rows: &'a [usize]) -> impl Iterator<Item = &'a str> {
    let column = *column;
    rows.iter().filter_map(move |&row| match column.cell(row) {
        Cell::Text(text) => Some(text),
        Cell::Missing => None,
    })
}

impl TargetKind for ClassLabels {
    const TASK: &'static str = "TABULAR_CLASSIFICATION";
    const SCORE: &'static str = "accuracy";
    type Label = usize;
    /// Class probabilities in class order.
    type Output = Vec<f64>;

    fn fit(column: &Column<'_>, rows: &[usize]) -> Result<(Self, Vec<usize>), TemplateError> {
        let numbers: Option<Vec<f64>> = present_texts(column, rows)
            .map(|text| parse_number(text).map(normalize))
            .collect();
        let classes = match numbers {
            Some(mut values) => {
                values.sort_by(f64::total_cmp);
                values.dedup_by(|a, b| a.total_cmp(b) == Ordering::Equal);
                ClassLabels::Numeric(values)
            }
            None => {
                let mut names: Vec<String> =
                    present_texts(column, rows).map(str::to_owned).collect();
                names.sort_unstable();
                names.dedup();
                ClassLabels::Text(names)
            }
        };
        if classes.len() < 2 {
            return Err(TemplateError::dataset(format!(
                "target column `{}` has {} distinct value(s); classification needs at least 2 classes",
                column.name,
                classes.len()
            )));
        }
        if classes.len() > MAX_CLASSES {
            return Err(TemplateError::dataset(format!(
                "target column `{}` has {} distinct values, more than the {MAX_CLASSES} classes a \
                 classifier accepts; is it a regression target?",
                column.name,
                classes.len()
            )));
        }
        let labels = present_texts(column, rows)
            .map(|text| classes.index_of(text).unwrap_or(0))
            .collect();
        Ok((classes, labels))
    }

    fn encode(
        &self,
        column: &Column<'_>,
        rows: &[usize],
    ) -> Result<Vec<Option<usize>>, TemplateError> {
        Ok(present_texts(column, rows)
            .map(|text| self.index_of(text))
            .collect())
    }

    fn score(&self, truth: &[Option<usize>], predictions: &[Vec<f64>]) -> f64 {
        if truth.is_empty() {
            return 0.0;
        }
        let correct = truth
            .iter()
            .zip(predictions)
            .filter(|(label, probabilities)| **label == Some(argmax(probabilities)))
            .count();
        correct as f64 / truth.len() as f64
    }

    fn to_json(&self, probabilities: &Vec<f64>) -> Value {
        Value::from(probabilities.clone())
    }

    fn n_outputs(&self) -> usize {
        self.len()
    }

    fn describe(&self) -> String {
        format!(
            "{} classes, in the order of predicted probabilities: [{}]",
            self.len(),
            self.names().join(", ")
        )
    }
}

/// Index of the largest value; the first one on ties.
pub(crate) fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(best, max), (i, &v)| {
            if v > max { (i, v) } else { (best, max) }
        })
        .0
}

/// A numeric regression target: nothing to learn about it beyond the values themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NumericTarget;

impl NumericTarget {
    fn parse(column: &Column<'_>, rows: &[usize]) -> Result<Vec<f64>, TemplateError> {
        rows.iter()
            .filter_map(|&row| match column.cell(row) {
                Cell::Text(text) => Some((row, text)),
                Cell::Missing => None,
            })
            .map(|(row, text)| {
                parse_number(text).ok_or_else(|| {
                    TemplateError::dataset(format!(
                        "target column `{}` must be numeric for regression, but line {} holds `{text}`",
                        column.name,
                        column.line(row)
                    ))
                })
            })
            .collect()
    }
}

impl TargetKind for NumericTarget {
    const TASK: &'static str = "TABULAR_REGRESSION";
    const SCORE: &'static str = "r2";
    type Label = f64;
    type Output = f64;

    fn fit(column: &Column<'_>, rows: &[usize]) -> Result<(Self, Vec<f64>), TemplateError> {
        Ok((NumericTarget, Self::parse(column, rows)?))
    }

    fn encode(
        &self,
        column: &Column<'_>,
        rows: &[usize],
    ) -> Result<Vec<Option<f64>>, TemplateError> {
        Ok(Self::parse(column, rows)?.into_iter().map(Some).collect())
    }

    /// The coefficient of determination. A constant truth scores 1 when predicted exactly and 0
    /// otherwise, as in scikit-learn.
    fn score(&self, truth: &[Option<f64>], predictions: &[f64]) -> f64 {
        let pairs: Vec<(f64, f64)> = truth
            .iter()
            .zip(predictions)
            .filter_map(|(t, p)| t.map(|t| (t, *p)))
            .collect();
        if pairs.is_empty() {
            return 0.0;
        }
        let mean = pairs.iter().map(|(t, _)| t).sum::<f64>() / pairs.len() as f64;
        let total: f64 = pairs.iter().map(|(t, _)| (t - mean).powi(2)).sum();
        let residual: f64 = pairs.iter().map(|(t, p)| (t - p).powi(2)).sum();
        if total > 0.0 {
            1.0 - residual / total
        } else if residual == 0.0 {
            1.0
        } else {
            0.0
        }
    }

    fn to_json(&self, prediction: &f64) -> Value {
        Value::from(*prediction)
    }

    fn n_outputs(&self) -> usize {
        1
    }

    fn describe(&self) -> String {
        "a numeric target".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tabular::dataset::Table;

    fn with_column<R>(text: &str, f: impl FnOnce(&Column<'_>) -> R) -> R {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, text).unwrap();
        let table = Table::read(&path).unwrap();
        let column = table.column("y", "target").unwrap();
        f(&column)
    }

    #[test]
    fn numeric_classes_sort_by_value_and_text_classes_as_text() {
        with_column("y\n10\n2\nNA\n2.0\n-0\n0\n", |column| {
            let rows = labelled_rows(column);
            assert_eq!(rows, [0, 1, 3, 4, 5]);
            let (classes, labels) = ClassLabels::fit(column, &rows).unwrap();
            assert_eq!(classes, ClassLabels::Numeric(vec![0.0, 2.0, 10.0]));
            assert_eq!(labels, [2, 1, 1, 0, 0]);
        });
        with_column("y\ncat\ndog\n10\ncat\n", |column| {
            let (classes, labels) = ClassLabels::fit(column, &labelled_rows(column)).unwrap();
            assert_eq!(classes.names(), ["10", "cat", "dog"]);
            assert_eq!(labels, [1, 2, 0, 1]);
            assert_eq!(classes.encode(column, &[1]).unwrap(), [Some(2)]);
        });
    }

    #[test]
    fn a_single_class_is_not_a_classification_problem() {
        with_column("y\na\na\n", |column| {
            let error = ClassLabels::fit(column, &labelled_rows(column)).unwrap_err();
            assert!(error.to_string().contains("at least 2 classes"), "{error}");
        });
    }

    #[test]
    fn accuracy_counts_unseen_classes_as_wrong() {
        let classes = ClassLabels::Text(vec!["a".into(), "b".into()]);
        let predictions = [vec![0.9, 0.1], vec![0.2, 0.8], vec![0.5, 0.5]];
        let score = classes.score(&[Some(0), Some(0), None], &predictions);
        assert!((score - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn regression_targets_must_be_numbers() {
        with_column("y\n1.5\nabc\n", |column| {
            let error = NumericTarget::fit(column, &labelled_rows(column)).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("must be numeric for regression, but line 3 holds `abc`"),
                "{error}"
            );
        });
    }

    #[test]
    fn r_squared_matches_its_definition() {
        let truth = [Some(1.0), Some(2.0), Some(3.0)];
        assert_eq!(NumericTarget.score(&truth, &[1.0, 2.0, 3.0]), 1.0);
        assert_eq!(NumericTarget.score(&truth, &[2.0, 2.0, 2.0]), 0.0);
        assert_eq!(NumericTarget.score(&[Some(5.0)], &[4.0]), 0.0);
    }
}
