//! ONNX models through the real ONNX Runtime library (`scripts/setup` installs it into
//! `.onnxruntime/`) against the exporting framework's own predictions.

use std::path::PathBuf;
use std::process::Command;

use duma_runtime::Model;
use duma_runtime::onnx::{OnnxModel, inspect, looks_like_onnx};
use serde_json::{Value, json};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn library() -> PathBuf {
    repository().join(".onnxruntime/libonnxruntime.so")
}

/// Exports made by scikit-learn and skl2onnx (in the project's virtualenv), and its predictions.
fn exports() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(repository().join(".venv/bin/python"))
        .arg(repository().join("runtime/tests/onnx_exports.py"))
        .arg(dir.path())
        .status()
        .expect("the project virtualenv (scripts/setup)");
    assert!(status.success());
    let expected =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| close(a, b))
        }
        (a, b) => {
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs()
                <= 1e-5 * b.as_f64().unwrap().abs().max(1.0)
        }
    }
}

#[test]
fn scikit_learn_exports_answer_as_scikit_learn_does() {
    let (dir, expected) = exports();
    let bytes = std::fs::read(dir.path().join("classifier.onnx")).unwrap();
    assert!(looks_like_onnx(&bytes));
    let signature = inspect(&library(), &bytes).unwrap();
    assert_eq!(signature.inputs.len(), 1);
    assert_eq!(signature.inputs[0].datatype, "FP32");
    assert_eq!(signature.inputs[0].shape, [-1, 8]);
    let model = OnnxModel::load(&library(), &bytes).unwrap();
    let rows = expected["classifier_rows"].as_array().unwrap();
    let answers = model.predict(rows).unwrap();
    assert!(close(
        &Value::Array(answers),
        &expected["classifier_probabilities"]
    ));
    // The same row as {input: row}.
    let name = &signature.inputs[0].name;
    let one = model.predict(&[json!({ name: rows[0] })]).unwrap();
    assert!(close(&one[0], &expected["classifier_probabilities"][0]));

    let bytes = std::fs::read(dir.path().join("regressor.onnx")).unwrap();
    let model = OnnxModel::load(&library(), &bytes).unwrap();
    let answers = model
        .predict(expected["regressor_rows"].as_array().unwrap())
        .unwrap();
    assert!(answers[0].is_number(), "{:?}", answers[0]);
    assert!(close(
        &Value::Array(answers),
        &expected["regressor_predictions"]
    ));

    // Bad rows are the query's fault, named.
    let error = model.predict(&[json!([1.0, 2.0])]).unwrap_err().to_string();
    assert!(error.contains("shape"), "{error}");
    let error = model
        .predict(&[json!(["a", 1, 2, 3, 4])])
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a number"), "{error}");
}

#[test]
fn what_cannot_be_served_is_refused_in_words() {
    let (dir, _) = exports();
    let zipmap = std::fs::read(dir.path().join("zipmap.onnx")).unwrap();
    let error = inspect(&library(), &zipmap).unwrap_err();
    assert!(error.contains("zipmap=False"), "{error}");
    let mut truncated = std::fs::read(dir.path().join("classifier.onnx")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let error = inspect(&library(), &truncated).unwrap_err();
    assert!(error.contains("cannot load"), "{error}");
    assert!(!looks_like_onnx(
        b"from rafiki.model import BaseModel\nclass M(BaseModel): pass\n"
    ));
    let error = inspect(&PathBuf::from("/nonexistent/libonnxruntime.so"), &zipmap);
    // The process's runtime is loaded once; a later wrong path changes nothing.
    assert!(error.is_err());
}
