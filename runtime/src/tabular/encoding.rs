//! Turns feature columns (CSV cells at training and evaluation time, JSON values at prediction
//! time) into rows of numbers, with the same rules in both places because the rules are learned
//! once, at training, and saved with the model.
//!
//! - A column whose present cells are all numbers is **numeric**; missing values become the
//!   training mean.
//! - Any other column is **categorical** and is one-hot encoded over its categories, sorted. A
//!   missing value becomes the most frequent category. A category never seen in training (or
//!   beyond the [`MAX_CATEGORIES`] most frequent ones) encodes as all zeros: it says nothing.
//!   One-hot rather than ordinal codes, because the linear and distance-based templates would read
//!   an order into ordinal codes that the categories do not have.
//! - Learners that are sensitive to scale (linear models, nearest neighbours) also get every
//!   encoded column standardised with the training mean and standard deviation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TemplateError;
use crate::linalg::Matrix;
use crate::tabular::dataset::{Cell, Column, Table, parse_number};
/// The most columns a table may encode to (one-hot columns included): width × width f64 is
/// 134 MB.
pub(crate) const MAX_ENCODED_WIDTH: usize = 4096;
/// The most values (rows × encoded columns) an encoded table may hold: 400 MB of f64.
pub(crate) const MAX_ENCODED_CELLS: usize = 50_000_000;
/// Categories kept per categorical column. Caps the width an identifier-like column (every
/// value distinct) would add; the rarer categories encode like unseen ones.
pub(crate) const MAX_CATEGORIES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeatureEncoder {
    columns: Vec<FeatureColumn>,
    standardization: Option<Standardization>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FeatureColumn {
    name: String,
    encoding: ColumnEncoding,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ColumnEncoding {
    Numeric {
        mean: f64,
    },
    OneHot {
        /// Sorted, so lookups are binary searches and the encoding does not depend on row order.
        categories: Vec<String>,
        most_frequent: usize,
    },
}

/// Per encoded column: `(x - mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Standardization {
    means: Vec<f64>,
    scales: Vec<f64>,
}

/// A value to encode, whichever side it comes from.
enum Raw<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

impl FeatureEncoder {
    /// Learns how to encode `features` of `table` and returns the encoded training rows.
    pub(crate) fn fit(
        table: &Table,
        features: &[String],
        standardize: bool,
    ) -> Result<(Self, Matrix), TemplateError> {
        let columns = features
            .iter()
            .map(|name| {
                let column = table.column(name, "feature")?;
                Ok(FeatureColumn {
                    name: name.clone(),
                    encoding: ColumnEncoding::fit(&column),
                })
            })
            .collect::<Result<Vec<_>, TemplateError>>()?;
        let mut encoder = Self {
            columns,
            standardization: None,
        };
        encoder.check_size(table.n_rows())?;
        let mut rows = encoder.encode_table(table)?;
        if standardize {
            let standardization = Standardization::fit(&rows);
            rows.rows_mut().for_each(|row| standardization.apply(row));
            encoder.standardization = Some(standardization);
        }
        Ok((encoder, rows))
    }

    /// Refuses, before anything is allocated, a dataset whose encoded form would be too large:
    /// one-hot encoding turns a column of many distinct values into as many columns (a 150 KB
    /// file of 500 text columns could ask for tens of GB), and models built on the encoded
    /// table allocate width × width.
    fn check_size(&self, rows: usize) -> Result<(), TemplateError> {
        let width = self.width();
        if width > MAX_ENCODED_WIDTH {
            let mut widest: Vec<(&str, usize)> = self
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.encoding.width()))
                .filter(|(_, w)| *w > 1)
                .collect();
            widest.sort_by_key(|(_, width)| std::cmp::Reverse(*width));
            let named: Vec<String> = widest
                .iter()
                .take(5)
                .map(|(name, w)| format!("`{name}` ({w} distinct values)"))
                .collect();
            return Err(TemplateError::dataset(format!(
                "the features encode to {width} columns, more than the {MAX_ENCODED_WIDTH} the \
                 built-in models accept; text columns become one column per distinct value — the \
                 widest: {}; leave such columns out with train_args `features`",
                named.join(", ")
            )));
        }
        if rows.saturating_mul(width.max(1)) > MAX_ENCODED_CELLS {
            return Err(TemplateError::dataset(format!(
                "{rows} rows × {width} encoded columns is more than the {MAX_ENCODED_CELLS} \
                 values the built-in models hold in memory; sample the rows or use fewer features"
            )));
        }
        Ok(())
    }

    /// Number of values in an encoded row.
    pub(crate) fn width(&self) -> usize {
        self.columns.iter().map(|c| c.encoding.width()).sum()
    }

    /// Encodes the same feature columns of another file (validation data).
    pub(crate) fn encode_table(&self, table: &Table) -> Result<Matrix, TemplateError> {
        let columns = self
            .columns
            .iter()
            .map(|c| table.column(&c.name, "feature"))
            .collect::<Result<Vec<Column<'_>>, _>>()?;
        let mut rows = Matrix::with_columns(self.width(), table.n_rows());
        let mut row = vec![0.0; self.width()];
        for index in 0..table.n_rows() {
            let mut offset = 0;
            for (feature, column) in self.columns.iter().zip(&columns) {
                let width = feature.encoding.width();
                let raw = match column.cell(index) {
                    Cell::Missing => Raw::Missing,
                    Cell::Text(text) => match feature.encoding {
                        ColumnEncoding::Numeric { .. } => {
                            Raw::Number(parse_number(text).ok_or_else(|| {
                                TemplateError::dataset(format!(
                                    "feature column `{}` is numeric but line {} holds `{text}`",
                                    feature.name,
                                    column.line(index)
                                ))
                            })?)
                        }
                        ColumnEncoding::OneHot { .. } => Raw::Text(text),
                    },
                };
                feature
                    .encoding
                    .write(raw, &mut row[offset..offset + width]);
                offset += width;
            }
            if let Some(standardization) = &self.standardization {
                standardization.apply(&mut row);
            }
            rows.push_row(&row);
        }
        Ok(rows)
    }

    /// Encodes one query, a JSON object `{feature: value}`. Every feature the model was trained
    /// on must be present (an absent one is an error naming it: a misspelt key must not be
    /// silently imputed); `null` or an empty value is imputed, as missing cells were in training.
    /// Keys that are not features are ignored, so a whole dataset row can be sent.
    pub(crate) fn encode_query(&self, query: &Value) -> Result<Vec<f64>, String> {
        let Value::Object(fields) = query else {
            return Err(format!(
                "a tabular query is a JSON object of feature values, got {}",
                json_kind(query)
            ));
        };
        let absent: Vec<&str> = self
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|name| !fields.contains_key(*name))
            .collect();
        if !absent.is_empty() {
            let shown: Vec<String> = absent.iter().take(10).map(|n| format!("`{n}`")).collect();
            let more = absent.len().saturating_sub(10);
            return Err(format!(
                "the query lacks {} of the {} features the model was trained on: {}{} (send null to have a value imputed)",
                absent.len(),
                self.columns.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        let mut row = vec![0.0; self.width()];
        let mut offset = 0;
        for feature in &self.columns {
            let width = feature.encoding.width();
            let value = fields.get(&feature.name).unwrap_or(&Value::Null);
            let number_text;
            let raw = match (&feature.encoding, value) {
                (_, Value::Null) => Raw::Missing,
                (_, Value::String(text)) if Cell::parse(text.trim()) == Cell::Missing => {
                    Raw::Missing
                }
                (ColumnEncoding::Numeric { .. }, Value::Number(n)) => {
                    Raw::Number(n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
                        format!("feature `{}` is out of range: {n}", feature.name)
                    })?)
                }
                (ColumnEncoding::OneHot { .. }, Value::String(text)) => Raw::Text(text.trim()),
                (ColumnEncoding::OneHot { .. }, Value::Number(n)) => {
                    number_text = n.to_string();
                    Raw::Text(&number_text)
                }
                (ColumnEncoding::OneHot { .. }, Value::Bool(b)) => {
                    Raw::Text(if *b { "true" } else { "false" })
                }
                (ColumnEncoding::Numeric { .. }, other) => {
                    return Err(format!(
                        "feature `{}` must be a number, got {}",
                        feature.name,
                        json_kind(other)
                    ));
                }
                (ColumnEncoding::OneHot { .. }, other) => {
                    return Err(format!(
                        "feature `{}` must be a string or a number, got {}",
                        feature.name,
                        json_kind(other)
                    ));
                }
            };
            feature
                .encoding
                .write(raw, &mut row[offset..offset + width]);
            offset += width;
        }
        if let Some(standardization) = &self.standardization {
            standardization.apply(&mut row);
        }
        Ok(row)
    }

    /// A one-line summary for the trial log.
    pub(crate) fn describe(&self) -> String {
        let numeric = self
            .columns
            .iter()
            .filter(|c| matches!(c.encoding, ColumnEncoding::Numeric { .. }))
            .count();
        let categorical = self.columns.len() - numeric;
        format!(
            "{} features ({numeric} numeric, {categorical} categorical one-hot encoded) → {} \
             encoded columns{}",
            self.columns.len(),
            self.width(),
            if self.standardization.is_some() {
                ", standardised"
            } else {
                ""
            }
        )
    }

    /// Checks invariants that `encode_*` index by, since loaded parameters come from outside.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.columns.is_empty() {
            return Err("the feature encoder has no columns".into());
        }
        for column in &self.columns {
            if let ColumnEncoding::OneHot {
                categories,
                most_frequent,
            } = &column.encoding
                && *most_frequent >= categories.len()
            {
                return Err(format!(
                    "feature `{}` has a bad category index",
                    column.name
                ));
            }
        }
        match &self.standardization {
            Some(s) if s.means.len() != self.width() || s.scales.len() != self.width() => {
                Err("the standardisation does not match the encoded width".into())
            }
            _ => Ok(()),
        }
    }
}

impl ColumnEncoding {
    fn fit(column: &Column<'_>) -> Self {
        if column.is_numeric() {
            let (sum, count) =
                column
                    .cells()
                    .fold((0.0, 0_usize), |(sum, count), cell| match cell {
                        Cell::Text(text) => (sum + parse_number(text).unwrap_or(0.0), count + 1),
                        Cell::Missing => (sum, count),
                    });
            let mean = if count == 0 { 0.0 } else { sum / count as f64 };
            return ColumnEncoding::Numeric { mean };
        }

        let mut counts: HashMap<&str, usize> = HashMap::new();
        for cell in column.cells() {
            if let Cell::Text(text) = cell {
                *counts.entry(text).or_default() += 1;
            }
        }
        // Most frequent first, ties by text, so the result does not depend on hashing.
        let mut by_frequency: Vec<(&str, usize)> = counts.into_iter().collect();
        by_frequency.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        by_frequency.truncate(MAX_CATEGORIES);
        let mode = by_frequency
            .first()
            .map_or("", |(text, _)| *text)
            .to_owned();
        let mut categories: Vec<String> = by_frequency
            .iter()
            .map(|(text, _)| (*text).to_owned())
            .collect();
        categories.sort();
        let most_frequent = categories.binary_search(&mode).unwrap_or(0);
        ColumnEncoding::OneHot {
            categories,
            most_frequent,
        }
    }

    fn width(&self) -> usize {
        match self {
            ColumnEncoding::Numeric { .. } => 1,
            ColumnEncoding::OneHot { categories, .. } => categories.len(),
        }
    }

    /// Writes the encoding of `raw` into `out` (exactly `width()` values). The callers have
    /// already matched the kind of `raw` to the kind of column.
    fn write(&self, raw: Raw<'_>, out: &mut [f64]) {
        match self {
            ColumnEncoding::Numeric { mean } => {
                out[0] = match raw {
                    Raw::Number(value) => value,
                    Raw::Missing | Raw::Text(_) => *mean,
                };
            }
            ColumnEncoding::OneHot {
                categories,
                most_frequent,
            } => {
                out.fill(0.0);
                let index = match raw {
                    Raw::Missing => Some(*most_frequent),
                    Raw::Text(text) => categories.binary_search_by(|c| c.as_str().cmp(text)).ok(),
                    Raw::Number(_) => None,
                };
                if let Some(index) = index {
                    out[index] = 1.0;
                }
            }
        }
    }
}

impl Standardization {
    fn fit(rows: &Matrix) -> Self {
        let n = rows.n_rows().max(1) as f64;
        let mut means = vec![0.0; rows.n_cols()];
        for row in rows.rows() {
            means.iter_mut().zip(row).for_each(|(m, x)| *m += x / n);
        }
        let mut variances = vec![0.0; rows.n_cols()];
        for row in rows.rows() {
            for ((v, x), m) in variances.iter_mut().zip(row).zip(&means) {
                *v += (x - m).powi(2) / n;
            }
        }
        // A constant column keeps scale 1: it centres to zero and stays there.
        let scales = variances
            .iter()
            .map(|v| if *v > 1e-24 { v.sqrt() } else { 1.0 })
            .collect();
        Self { means, scales }
    }

    fn apply(&self, row: &mut [f64]) {
        for ((x, m), s) in row.iter_mut().zip(&self.means).zip(&self.scales) {
            *x = (*x - m) / s;
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(text: &str) -> Table {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, text).unwrap();
        Table::read(&path).unwrap()
    }

    fn features(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn numeric_and_categorical_columns_are_encoded_and_imputed() {
        let t = table("x,colour\n1,red\n,blue\n5,\n3,red\n");
        let (encoder, rows) = FeatureEncoder::fit(&t, &features(&["x", "colour"]), false).unwrap();
        assert_eq!(encoder.width(), 3); // x, blue, red
        assert_eq!(rows.row(0), &[1.0, 0.0, 1.0]);
        assert_eq!(rows.row(1), &[3.0, 1.0, 0.0]); // mean of 1, 5, 3
        assert_eq!(rows.row(2), &[5.0, 0.0, 1.0]); // most frequent colour
        encoder.check().unwrap();

        let query = json!({"x": 2, "colour": "blue", "unrelated": [1]});
        assert_eq!(encoder.encode_query(&query).unwrap(), [2.0, 1.0, 0.0]);
        assert_eq!(
            encoder
                .encode_query(&json!({"x": null, "colour": null}))
                .unwrap(),
            [3.0, 0.0, 1.0],
            "null is imputed"
        );
        assert_eq!(
            encoder
                .encode_query(&json!({"x": "", "colour": "green"}))
                .unwrap(),
            [3.0, 0.0, 0.0]
        );
    }

    #[test]
    fn an_absent_feature_is_an_error_naming_it_not_imputed() {
        let t = table(
            "x,colour
1,red
",
        );
        let (encoder, _) = FeatureEncoder::fit(&t, &features(&["x", "colour"]), false).unwrap();
        let error = encoder.encode_query(&json!({})).unwrap_err();
        assert!(
            error.contains("lacks 2 of the 2 features") && error.contains("`x`, `colour`"),
            "{error}"
        );
        let error = encoder
            .encode_query(&json!({"X": 1, "colour": "red"}))
            .unwrap_err();
        assert!(
            error.contains("lacks 1 of the 2 features") && error.contains("`x`"),
            "{error}"
        );
    }

    #[test]
    fn a_table_too_wide_or_too_large_once_encoded_is_refused_before_allocating() {
        // 50 text columns of 100 distinct values each: 5000 one-hot columns.
        let header: Vec<String> = (0..50).map(|c| format!("t{c}")).collect();
        let mut csv = header.join(",") + "\n";
        for row in 0..100 {
            let cells: Vec<String> = (0..50).map(|c| format!("v{c}_{row}")).collect();
            csv += &(cells.join(",") + "\n");
        }
        let t = table(&csv);
        let error = FeatureEncoder::fit(&t, &header, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("encode to 5000 columns") && error.contains("(100 distinct values)"),
            "{error}"
        );

        let (encoder, _) =
            FeatureEncoder::fit(&table("x,y\n1,2\n"), &features(&["x", "y"]), false).unwrap();
        let error = encoder
            .check_size(MAX_ENCODED_CELLS)
            .unwrap_err()
            .to_string();
        assert!(error.contains("× 2 encoded columns"), "{error}");
        encoder.check_size(MAX_ENCODED_CELLS / 2).unwrap();
    }

    #[test]
    fn wrong_query_types_are_explained() {
        let t = table("x,colour\n1,red\n");
        let (encoder, _) = FeatureEncoder::fit(&t, &features(&["x", "colour"]), false).unwrap();
        let error = encoder
            .encode_query(&json!({"x": "ten", "colour": "red"}))
            .unwrap_err();
        assert_eq!(error, "feature `x` must be a number, got a string");
        let error = encoder
            .encode_query(&json!({"x": 1, "colour": {"r": 1}}))
            .unwrap_err();
        assert!(
            error.contains("`colour` must be a string or a number"),
            "{error}"
        );
        let error = encoder.encode_query(&json!([1, "red"])).unwrap_err();
        assert!(error.contains("JSON object"), "{error}");
    }

    #[test]
    fn standardised_columns_have_zero_mean_and_unit_variance() {
        let t = table("a,b\n1,7\n2,7\n3,7\n4,7\n");
        let (encoder, rows) = FeatureEncoder::fit(&t, &features(&["a", "b"]), true).unwrap();
        let mean: f64 = rows.rows().map(|r| r[0]).sum::<f64>() / 4.0;
        let variance: f64 = rows.rows().map(|r| r[0] * r[0]).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12 && (variance - 1.0).abs() < 1e-12);
        assert!(rows.rows().all(|r| r[1] == 0.0));
        assert_eq!(
            encoder.encode_query(&json!({"a": 2.5, "b": 7})).unwrap(),
            [0.0, 0.0]
        );
    }

    #[test]
    fn validation_files_must_keep_numeric_columns_numeric() {
        let (encoder, _) =
            FeatureEncoder::fit(&table("x,y\n1,a\n"), &features(&["x"]), false).unwrap();
        let error = encoder.encode_table(&table("x,y\noops,a\n")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`x` is numeric but line 2 holds `oops`")
        );
    }

    #[test]
    fn rare_categories_beyond_the_cap_encode_as_unseen() {
        let mut text = String::from("id\n");
        for i in 0..MAX_CATEGORIES + 20 {
            text.push_str(&format!("id{i}\n"));
        }
        let (encoder, _) = FeatureEncoder::fit(&table(&text), &features(&["id"]), false).unwrap();
        assert_eq!(encoder.width(), MAX_CATEGORIES);
    }
}
