//! A labelled tabular dataset as the queries a served model answers and the labels it should
//! answer with: what an evaluation scores a model on, read with the columns the train job chose.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::TemplateError;
use crate::tabular::dataset::{Cell, ColumnSelection, Table, parse_number};
use crate::tabular::target::{ClassLabels, TargetKind, labelled_rows};

/// The rows of a dataset that have a target value.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledRows {
    /// One JSON object of feature values per row (numbers as numbers, missing values as null),
    /// the shape of a prediction query.
    pub queries: Vec<Value>,
    /// The target cell of each row, as written.
    pub targets: Vec<String>,
    /// The CSV line each row starts on, for error messages.
    pub lines: Vec<u64>,
}

/// Reads `dataset` with the `features` and `target` of `train_args` (as training did).
pub fn labelled_rows_of(
    dataset: &Path,
    train_args: &Map<String, Value>,
) -> Result<LabelledRows, TemplateError> {
    let table = Table::read(dataset)?;
    let columns = ColumnSelection::from_train_args(train_args, &table)?;
    let target = table.column(&columns.target, "target")?;
    let features = columns
        .features
        .iter()
        .map(|name| table.column(name, "feature"))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = labelled_rows(&target);
    let mut labelled = LabelledRows {
        queries: Vec::with_capacity(rows.len()),
        targets: Vec::with_capacity(rows.len()),
        lines: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let query: Map<String, Value> = features
            .iter()
            .map(|column| (column.name.to_owned(), cell_value(column.cell(row))))
            .collect();
        labelled.queries.push(Value::Object(query));
        if let Cell::Text(text) = target.cell(row) {
            labelled.targets.push(text.to_owned());
        }
        labelled.lines.push(target.line(row));
    }
    Ok(labelled)
}

/// The classes a classifier trained on `dataset` (with `train_args`) orders its probabilities
/// by: the built-in templates' order, and Rafiki's for class indices `0..n`.
pub fn class_names_of(
    dataset: &Path,
    train_args: &Map<String, Value>,
) -> Result<Vec<String>, TemplateError> {
    let table = Table::read(dataset)?;
    let columns = ColumnSelection::from_train_args(train_args, &table)?;
    let target = table.column(&columns.target, "target")?;
    let rows = labelled_rows(&target);
    let (classes, _) = ClassLabels::fit(&target, &rows)?;
    Ok(classes.names())
}

/// What a tabular model trained on `dataset` (with `train_args`) takes and answers, for model
/// metadata: `{"task", "features": [{"name", "datatype": "FP64" | "BYTES"}], "target"}`, and
/// `"classes"` (in the order of predicted probabilities) for classification.
pub fn tabular_metadata(
    dataset: &Path,
    train_args: &Map<String, Value>,
    task: &str,
) -> Result<Value, TemplateError> {
    let table = Table::read(dataset)?;
    let columns = ColumnSelection::from_train_args(train_args, &table)?;
    let mut features = Vec::with_capacity(columns.features.len());
    for name in &columns.features {
        let column = table.column(name, "feature")?;
        let datatype = if column.is_numeric() { "FP64" } else { "BYTES" };
        features.push(serde_json::json!({"name": name, "datatype": datatype}));
    }
    let mut metadata = serde_json::json!({
        "task": task,
        "features": features,
        "target": columns.target,
    });
    if task.ends_with("CLASSIFICATION") {
        let target = table.column(&columns.target, "target")?;
        let (classes, _) = ClassLabels::fit(&target, &labelled_rows(&target))?;
        metadata["classes"] = Value::from(classes.names());
    }
    Ok(metadata)
}

fn cell_value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Missing => Value::Null,
        Cell::Text(text) => match parse_number(text) {
            // Kept as written where JSON can (`1` stays an integer, for categories like it).
            Some(number) => serde_json::from_str::<serde_json::Number>(text)
                .map(Value::Number)
                .unwrap_or_else(|_| Value::from(number)),
            None => Value::String(text.to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_queries_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, "a,b,colour,y\n1,2.5,red,yes\n3,,blue,no\n4,1,red,\n").unwrap();
        let args = json!({"features": ["a", "colour"], "target": "y"});
        let rows = labelled_rows_of(&path, args.as_object().unwrap()).unwrap();
        assert_eq!(
            rows.queries,
            [
                json!({"a": 1, "colour": "red"}),
                json!({"a": 3, "colour": "blue"})
            ]
        );
        assert_eq!(rows.targets, ["yes", "no"]);
        assert_eq!(rows.lines, [2, 3]);
        let classes = class_names_of(&path, args.as_object().unwrap()).unwrap();
        assert_eq!(classes, ["no", "yes"]);
        let metadata =
            tabular_metadata(&path, args.as_object().unwrap(), "TABULAR_CLASSIFICATION").unwrap();
        assert_eq!(
            metadata,
            json!({"task": "TABULAR_CLASSIFICATION", "target": "y", "classes": ["no", "yes"],
                   "features": [{"name": "a", "datatype": "FP64"},
                                {"name": "colour", "datatype": "BYTES"}]})
        );
        let missing = json!({"features": ["nope"], "target": "y"});
        let error = labelled_rows_of(&path, missing.as_object().unwrap()).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }
}
