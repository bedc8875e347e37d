//! Rafiki's tabular dataset format: a CSV file with a header row, read into columns of text cells,
//! and the `features` / `target` train args that pick the columns a model uses.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TemplateError;

/// A CSV file held column by column, cells as trimmed text. Typing happens later, per column,
/// because whether a column is numeric depends on all of its cells.
#[derive(Debug)]
pub(crate) struct Table {
    names: Vec<String>,
    columns: Vec<Vec<String>>,
    /// The file line each row starts on, for error messages.
    lines: Vec<u64>,
}

/// One column of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column<'a> {
    pub name: &'a str,
    cells: &'a [String],
    lines: &'a [u64],
}

/// A cell's content once missing-value markers are recognised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    Missing,
    Text(&'a str),
}

impl Table {
    /// Reads a CSV file with a header row. Every row must have as many fields as the header.
    pub(crate) fn read(path: &Path) -> Result<Self, TemplateError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| {
                TemplateError::dataset(format!("cannot read `{}`: {e}", path.display()))
            })?;
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(path, &e))?
            .iter()
            .map(str::to_owned)
            .collect();
        if names.iter().all(String::is_empty) {
            return Err(TemplateError::dataset(
                "the CSV file is empty: a tabular dataset needs a header row naming its columns",
            ));
        }
        if let Some(duplicate) = first_duplicate(&names) {
            return Err(TemplateError::dataset(format!(
                "the CSV header names column `{duplicate}` more than once"
            )));
        }

        let mut columns = vec![Vec::new(); names.len()];
        let mut lines = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(path, &e)),
            }
            lines.push(record.position().map_or(0, csv::Position::line));
            for (column, field) in columns.iter_mut().zip(record.iter()) {
                column.push(field.to_owned());
            }
        }
        if lines.is_empty() {
            return Err(TemplateError::dataset(
                "the CSV file has a header but no data rows",
            ));
        }
        Ok(Self {
            names,
            columns,
            lines,
        })
    }

    pub(crate) fn n_rows(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn column_names(&self) -> &[String] {
        &self.names
    }

    /// The column called `name`; `role` ("feature", "target") makes the error say which is missing.
    pub(crate) fn column(&self, name: &str, role: &str) -> Result<Column<'_>, TemplateError> {
        let index = self.names.iter().position(|n| n == name).ok_or_else(|| {
            TemplateError::dataset(format!(
                "{role} column `{name}` is not in the CSV header (columns: {})",
                list_names(&self.names)
            ))
        })?;
        Ok(Column {
            name: &self.names[index],
            cells: &self.columns[index],
            lines: &self.lines,
        })
    }
}

impl<'a> Column<'a> {
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    pub(crate) fn cell(&self, row: usize) -> Cell<'a> {
        Cell::parse(&self.cells[row])
    }

    pub(crate) fn cells(&self) -> impl Iterator<Item = Cell<'a>> + 'a {
        self.cells.iter().map(|text| Cell::parse(text))
    }

    /// The file line of `row`, for error messages.
    pub(crate) fn line(&self, row: usize) -> u64 {
        self.lines[row]
    }

    /// True when every present cell is a finite number (a column of only missing cells counts).
    pub(crate) fn is_numeric(&self) -> bool {
        self.cells().all(|cell| match cell {
            Cell::Missing => true,
            Cell::Text(text) => parse_number(text).is_some(),
        })
    }
}

impl<'a> Cell<'a> {
    /// Empty cells and the usual spellings of "not available" (`NA`, `N/A`, `NaN`, `null`, any
    /// case) are missing values.
    pub(crate) fn parse(text: &'a str) -> Self {
        const MISSING: [&str; 4] = ["na", "n/a", "nan", "null"];
        if text.is_empty() || MISSING.iter().any(|m| text.eq_ignore_ascii_case(m)) {
            Cell::Missing
        } else {
            Cell::Text(text)
        }
    }
}

/// Parses a finite number. Infinities are rejected: no model can learn from them.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The columns a tabular model reads, chosen at training time and kept for evaluation and
/// prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ColumnSelection {
    pub features: Vec<String>,
    pub target: String,
}

impl ColumnSelection {
    /// Reads the `features` (list of column names) and `target` (column name) train args.
    /// Without `target`, the last column is the target; without `features`, every other column is
    /// a feature.
    pub(crate) fn from_train_args(
        train_args: &Map<String, Value>,
        table: &Table,
    ) -> Result<Self, TemplateError> {
        let header = table.column_names();
        let target = match train_args.get("target") {
            None | Some(Value::Null) => header
                .last()
                .cloned()
                .ok_or_else(|| TemplateError::dataset("the CSV header has no columns"))?,
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(TemplateError::train_args(format!(
                    "`target` must be a column name (a string), got {other}"
                )));
            }
        };
        table.column(&target, "target")?;

        let features = match train_args.get("features") {
            None | Some(Value::Null) => header.iter().filter(|n| **n != target).cloned().collect(),
            Some(Value::Array(names)) => names
                .iter()
                .map(|name| match name {
                    Value::String(name) => Ok(name.clone()),
                    other => Err(TemplateError::train_args(format!(
                        "`features` must be a list of column names (strings), got {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(TemplateError::train_args(format!(
                    "`features` must be a list of column names, got {other}"
                )));
            }
        };
        if features.is_empty() {
            return Err(TemplateError::dataset(format!(
                "there are no feature columns besides the target `{target}`"
            )));
        }
        if let Some(duplicate) = first_duplicate(&features) {
            return Err(TemplateError::train_args(format!(
                "`features` names column `{duplicate}` more than once"
            )));
        }
        if features.contains(&target) {
            return Err(TemplateError::train_args(format!(
                "column `{target}` cannot be both a feature and the target"
            )));
        }
        for name in &features {
            table.column(name, "feature")?;
        }
        Ok(Self { features, target })
    }
}

fn csv_error(path: &Path, error: &csv::Error) -> TemplateError {
    let reason = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let line = pos.as_ref().map_or(0, csv::Position::line);
            format!("line {line} has {len} fields but the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { pos, .. } => {
            let line = pos.as_ref().map_or(0, csv::Position::line);
            format!("line {line} is not valid UTF-8")
        }
        _ => format!("cannot read `{}` as CSV: {error}", path.display()),
    };
    TemplateError::dataset(reason)
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    names
        .iter()
        .find(|name| !seen.insert(name.as_str()))
        .map(String::as_str)
}

/// Names for an error message, cut short for very wide files.
fn list_names(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut listed = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        listed.push_str(&format!(", … ({} in all)", names.len()));
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(text: &str) -> Result<Table, TemplateError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, text).unwrap();
        Table::read(&path)
    }

    fn reason(result: Result<impl std::fmt::Debug, TemplateError>) -> String {
        match result {
            Err(TemplateError::InvalidDataset { reason }) => reason,
            other => panic!("expected InvalidDataset, got {other:?}"),
        }
    }

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn reads_columns_and_recognises_missing_cells() {
        let t = table("a, b ,c\n1,x,\n NA ,\"y, z\",3\n").unwrap();
        assert_eq!(t.column_names(), ["a", "b", "c"]);
        assert_eq!(t.n_rows(), 2);
        let a = t.column("a", "feature").unwrap();
        assert_eq!(
            a.cells().collect::<Vec<_>>(),
            [Cell::Text("1"), Cell::Missing]
        );
        assert!(a.is_numeric());
        let b = t.column("b", "feature").unwrap();
        assert_eq!(b.cell(1), Cell::Text("y, z"));
        assert!(!b.is_numeric());
        assert_eq!(b.line(1), 3);
    }

    #[test]
    fn bad_files_name_the_problem() {
        assert!(
            reason(table("a,b\n1,2\n3\n")).contains("line 3 has 1 fields but the header has 2")
        );
        assert!(reason(table("")).contains("empty"));
        assert!(reason(table("a,b\n")).contains("no data rows"));
        assert!(reason(table("a,a\n1,2\n")).contains("`a` more than once"));
        let missing = tempfile::tempdir().unwrap().path().join("nope.csv");
        assert!(reason(Table::read(&missing)).contains("cannot read"));
    }

    #[test]
    fn columns_default_to_all_but_last_as_features() {
        let t = table("a,b,label\n1,2,x\n").unwrap();
        let columns = ColumnSelection::from_train_args(&Map::new(), &t).unwrap();
        assert_eq!(columns.features, ["a", "b"]);
        assert_eq!(columns.target, "label");

        let chosen =
            ColumnSelection::from_train_args(&args(json!({"target": "a", "features": ["b"]})), &t)
                .unwrap();
        assert_eq!(chosen.features, ["b"]);
        assert_eq!(chosen.target, "a");
    }

    #[test]
    fn bad_column_choices_are_rejected() {
        let t = table("a,b,label\n1,2,x\n").unwrap();
        let missing_target = ColumnSelection::from_train_args(&args(json!({"target": "y"})), &t);
        assert!(reason(missing_target).contains("target column `y` is not in the CSV header"));
        let missing_feature =
            ColumnSelection::from_train_args(&args(json!({"features": ["a", "q"]})), &t);
        assert!(reason(missing_feature).contains("feature column `q`"));
        assert!(matches!(
            ColumnSelection::from_train_args(&args(json!({"features": "a"})), &t),
            Err(TemplateError::InvalidTrainArgs { .. })
        ));
        assert!(matches!(
            ColumnSelection::from_train_args(&args(json!({"features": ["label"]})), &t),
            Err(TemplateError::InvalidTrainArgs { .. })
        ));
    }
}
