//! ONNX models through the real ONNX Runtime library (`scripts/setup` installs it into
//! `.onnxruntime/`) against the exporting framework's own predictions.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use duma_runtime::Model;
use duma_runtime::onnx::{OnnxModel, inspect, looks_like_onnx};
use serde_json::{Value, json};

/// A deadline no call here reaches (an ONNX model computes to the end whatever it says).
fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn library() -> PathBuf {
    repository().join(".onnxruntime/libonnxruntime.so")
}

/// Exports made by each framework (in `.venv-exports`, made by `scripts/setup`), and the
/// framework's own predictions.
fn exports() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(repository().join(".venv-exports/bin/python"))
        .arg(repository().join("runtime/tests/onnx_exports.py"))
        .arg(dir.path())
        .status()
        .expect("the exports virtualenv (scripts/setup)");
    assert!(status.success());
    let expected =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

/// What serving hands a model: one request's queries, as the JSON array it was sent in.
fn request(queries: &[Value]) -> Vec<u8> {
    serde_json::to_vec(queries).unwrap()
}

/// The answers of a model to one request, read as serving reads it.
fn answered(
    model: &OnnxModel,
    queries: &[Value],
) -> Result<Vec<Value>, duma_runtime::TemplateError> {
    let mut answers = model.predict_json(&[&request(queries)], far())?;
    assert_eq!(answers.len(), 1);
    Ok(answers.remove(0))
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
    // The same refusals when the rows are read from their JSON text, naming the query.
    let good = expected["regressor_rows"][0].clone();
    for (bad, says) in [
        (json!([1.0, 2.0]), "shape"),
        (json!(["a", 1, 2, 3, 4]), "\"a\" is not a number"),
        (json!([[1, 2], 3]), "uneven depth"),
        (json!([[1, 2], [3]]), "uneven length"),
        (json!([1, null]), "null is not a number"),
        (json!([1, {"a": 1}]), "an object is not a number"),
    ] {
        let error = answered(&model, &[good.clone(), bad])
            .unwrap_err()
            .to_string();
        assert!(error.contains(says), "{error}");
        assert!(error.contains("index 1"), "{error}");
    }
    // A scalar query then a longer list holds as many numbers as two rows, but is not two rows.
    let error = answered(&model, &[json!(1), json!([1, 2, 3, 4, 5, 6, 7, 8, 9])])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("index 0") && error.contains("shape"),
        "{error}"
    );
    // A row given as {input: row} is read the same way as the value path reads it.
    let name = &inspect(&library(), &bytes).unwrap().inputs[0].name;
    let rows = expected["regressor_rows"].as_array().unwrap();
    let by_input: Vec<Value> = rows.iter().map(|r| json!({ name: r })).collect();
    assert_eq!(
        answered(&model, &by_input).unwrap(),
        model.predict(rows).unwrap()
    );
    // Several requests in one call: one batch, each request getting its own rows' answers; a
    // request whose rows differ in shape from another's, or that is not a list, fails the call.
    let (first, second) = (request(&rows[..2]), request(&rows[2..3]));
    let answers = model.predict_json(&[&first, &second], far()).unwrap();
    let together = model.predict(&rows[..3]).unwrap();
    assert_eq!(answers, [together[..2].to_vec(), together[2..].to_vec()]);
    assert!(
        model
            .predict_json(&[&first, br#"[[1, 2]]"#], far())
            .is_err()
    );
    let error = model.predict_json(&[b"{}"], far()).unwrap_err().to_string();
    assert!(error.contains("not a JSON array"), "{error}");
}

/// scikit-learn, XGBoost and LightGBM classifiers and regressors, a PyTorch MLP and CNN: each
/// answers its held-out rows as the framework itself did, to 1e-5.
#[test]
fn every_frameworks_export_answers_as_the_framework_does() {
    let (dir, expected) = exports();
    let mut served = Vec::new();
    for export in expected["exports"].as_array().unwrap() {
        let name = export["name"].as_str().unwrap();
        let bytes = std::fs::read(dir.path().join(export["file"].as_str().unwrap())).unwrap();
        assert!(looks_like_onnx(&bytes), "{name}");
        let model = OnnxModel::load(&library(), &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows = export["rows"].as_array().unwrap();
        let answers = model
            .predict(rows)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            close(&Value::Array(answers.clone()), &export["expected"]),
            "{name}: {answers:?} vs {}",
            export["expected"]
        );
        // Read from the JSON text serving passes on, the answers are the very same.
        let from_text = answered(&model, rows).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_text, answers, "{name}");
        // One query at a time answers the same as the batch.
        let one = model.predict(&rows[..1]).unwrap();
        assert!(close(&one[0], &export["expected"][0]), "{name}");
        served.push(name.to_owned());
    }
    for framework in [
        "classifier",
        "xgboost",
        "lightgbm",
        "pytorch_mlp",
        "pytorch_cnn",
    ] {
        assert!(
            served.iter().any(|n| n.starts_with(framework)),
            "{framework} missing from {served:?}"
        );
    }
    // A CNN's query may also be the image as one flat list.
    let cnn = expected["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "pytorch_cnn")
        .unwrap();
    let model = OnnxModel::load(
        &library(),
        &std::fs::read(dir.path().join("pytorch_cnn.onnx")).unwrap(),
    )
    .unwrap();
    let flat: Vec<Value> = cnn["rows"][0][0]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    let answer = model.predict(&[Value::Array(flat.clone())]).unwrap();
    assert!(close(&answer[0], &cnn["expected"][0]));
    let from_text = answered(&model, &[Value::Array(flat)]).unwrap();
    assert_eq!(from_text, answer);
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
    let unknown = std::fs::read(dir.path().join("unknown_op.onnx")).unwrap();
    let error = inspect(&library(), &unknown).unwrap_err();
    assert!(error.contains("Frobnicate"), "{error}");
    let huge = std::fs::read(dir.path().join("huge_shape.onnx")).unwrap();
    let error = inspect(&library(), &huge).unwrap_err();
    assert!(error.contains("values per row"), "{error}");
    let error = inspect(&PathBuf::from("/nonexistent/libonnxruntime.so"), &zipmap);
    // The process's runtime is loaded once; a later wrong path changes nothing.
    assert!(error.is_err());
}

/// A model whose only input is a matrix, its columns named at upload: a query may be a dict by
/// feature name (any order), and the names must fit the input.
#[test]
fn columns_named_at_upload_take_queries_by_feature_name() {
    let (dir, expected) = exports();
    let bytes = std::fs::read(dir.path().join("classifier.onnx")).unwrap();
    let mut signature = inspect(&library(), &bytes).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
    let error = signature.name_features(names[..7].to_vec()).unwrap_err();
    assert!(error.contains("8 columns but 7"), "{error}");
    let twice = [names[..7].to_vec(), vec!["f0".to_owned()]].concat();
    assert!(
        signature
            .name_features(twice)
            .unwrap_err()
            .contains("twice")
    );

    let mut model = OnnxModel::load(&library(), &bytes).unwrap();
    model.name_features(names.clone()).unwrap();
    let rows = expected["classifier_rows"].as_array().unwrap();
    let by_name: Vec<Value> = rows
        .iter()
        .map(|row| {
            // Keys in reverse order: the names, not the order, place the values.
            let fields: serde_json::Map<String, Value> = names
                .iter()
                .zip(row.as_array().unwrap())
                .rev()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            Value::Object(fields)
        })
        .collect();
    let answers = model.predict(&by_name).unwrap();
    assert!(close(
        &Value::Array(answers),
        &expected["classifier_probabilities"]
    ));
    // Rows as lists still work.
    assert!(close(
        &model.predict(&rows[..1]).unwrap()[0],
        &expected["classifier_probabilities"][0]
    ));
    let mut missing = by_name[0].as_object().unwrap().clone();
    missing.remove("f3");
    let error = model
        .predict(&[Value::Object(missing.clone())])
        .unwrap_err()
        .to_string();
    assert!(error.contains("no feature `f3`"), "{error}");
    missing.insert("f3".to_owned(), json!(0.0));
    missing.insert("colour".to_owned(), json!(1.0));
    let error = model
        .predict(&[Value::Object(missing)])
        .unwrap_err()
        .to_string();
    assert!(error.contains("no feature `colour`"), "{error}");

    // A model of several inputs has no columns to name.
    let cnn = std::fs::read(dir.path().join("pytorch_cnn.onnx")).unwrap();
    let mut signature = inspect(&library(), &cnn).unwrap();
    let error = signature.name_features(names).unwrap_err();
    assert!(error.contains("[batch, n]"), "{error}");
}
