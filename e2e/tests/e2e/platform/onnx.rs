//! Uploaded ONNX models through the real admin, workers, predictor and ONNX Runtime: recognised
//! by content and checked at upload, served without training (an inference job or a deployment
//! from `model_id`), answering as the exporting framework (scikit-learn) does; what cannot be
//! served refused at upload with nothing stored.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use duma_e2e::client::{ModelUpload, expect_error};
use duma_e2e::stack::{Stack, predict_url, spawn_stack};

const TASK: &str = "TABULAR_CLASSIFICATION";

/// Models exported by each framework (`.venv-exports`, made by `scripts/setup`), and the
/// framework's own predictions.
fn exports() -> (tempfile::TempDir, Value) {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(repository.join(".venv-exports/bin/python"))
        .arg(repository.join("runtime/tests/onnx_exports.py"))
        .arg(dir.path())
        .status()
        .expect("the exports virtualenv (scripts/setup)");
    assert!(status.success());
    let expected = std::fs::read(dir.path().join("expected.json")).unwrap();
    (dir, serde_json::from_slice(&expected).unwrap())
}

async fn upload(stack: &Stack, name: &str, file: Vec<u8>) -> reqwest::Response {
    let upload = ModelUpload {
        name,
        task: TASK,
        class: "OnnxModel",
        source: file,
        dependencies: json!({}),
        access_right: "PRIVATE",
        checkpoint: None,
    };
    stack.client.upload_model(&stack.token, upload).await
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| close(a, b))
        }
        (a, b) => (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-5,
    }
}

#[tokio::test]
async fn an_uploaded_onnx_model_is_served_without_training_as_scikit_learn_answers() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let (dir, expected) = exports();
    let file = std::fs::read(dir.path().join("classifier.onnx")).unwrap();
    let uploaded: Value = upload(&stack, "iris-onnx", file)
        .await
        .json()
        .await
        .unwrap();
    let id = uploaded["id"].as_str().expect("a model id").to_owned();
    let model = stack.get(&format!("/models/{id}")).await;
    assert_eq!(model["template_kind"], "onnx");
    let input = &model["signature"]["inputs"][0];
    assert_eq!(input["datatype"], "FP32");
    assert_eq!(input["shape"], json!([-1, 8]));

    // Rafiki's inference job, from the model: a new version of the app, nothing trained.
    let job = stack
        .post(
            "/inference_jobs",
            json!({"app": "uploaded", "model_id": id}),
        )
        .await;
    let version = stack.get("/train_jobs/uploaded/1").await;
    assert_eq!(version["status"], "STOPPED");
    assert!(version["train_dataset_id"].is_null(), "{version}");
    let rows = &expected["classifier_rows"];
    let answers = stack
        .predictions(&predict_url(&job, &predictor), rows)
        .await;
    assert!(
        close(
            &Value::Array(answers),
            &expected["classifier_probabilities"]
        ),
        "the served model does not answer as scikit-learn does"
    );

    // Queries reach the model as the text they were sent in: a row written with exponents,
    // integers and line breaks answers as the same row written plainly, and a number no float
    // can hold is the query's fault, named.
    let url = predict_url(&job, &predictor);
    let row: Vec<f64> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let written: Vec<String> = row
        .iter()
        .enumerate()
        .map(|(i, v)| match i % 3 {
            0 => format!("{v:e}"),
            1 => format!("{}E-1\n", v * 10.0),
            _ if v.fract() == 0.0 => format!("{v:.0}"),
            _ => v.to_string(),
        })
        .collect();
    let post = |body: String| {
        let request = stack
            .client
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        async move { request.send().await.unwrap() }
    };
    let answered: Value = post(format!(r#"{{"query": [{}]}}"#, written.join(", ")))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        close(
            &answered["prediction"],
            &expected["classifier_probabilities"][0]
        ),
        "{answered}"
    );
    let refused =
        post(r#"{"queries": [[1, 2, 3, 4, 5, 6, 7, 8], [1e999, 2, 3, 4, 5, 6, 7, 8]]}"#.to_owned())
            .await;
    assert_eq!(refused.status(), 400);
    let message: Value = refused.json().await.unwrap();
    let message = message["message"].as_str().unwrap();
    assert!(message.contains("index 1"), "{message}");
    assert!(message.contains("out of range"), "{message}");

    // A deployment from the same model: another version, behind a stable name.
    stack
        .post(
            "/deployments",
            json!({"name": "uploaded-live", "app": "uploaded", "model_id": id}),
        )
        .await;
    let url = format!("{predictor}/deployments/uploaded-live/predict");
    let answers = stack.predictions(&url, rows).await;
    assert!(close(
        &Value::Array(answers),
        &expected["classifier_probabilities"]
    ));
    assert_eq!(
        stack.get("/deployments/uploaded-live").await["routes"][0]["app_version"],
        2
    );

    // It is served, never trained.
    let train = stack
        .upload_dataset(TASK, duma_e2e::data::classification_csv(50, 1))
        .await;
    let message = expect_error(
        stack
            .client
            .post(
                Some(&stack.token),
                "/train_jobs",
                json!({"app": "tune-it", "task": TASK, "train_dataset_id": train,
                       "val_dataset_id": train, "budget": {"MODEL_TRIAL_COUNT": 1},
                       "model_ids": [id]}),
            )
            .await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("served as uploaded"), "{message}");
}

#[tokio::test]
async fn onnx_files_that_cannot_be_served_are_refused_at_upload_with_nothing_stored() {
    let stack = spawn_stack(0).await;
    let (dir, _) = exports();
    let zipmap = std::fs::read(dir.path().join("zipmap.onnx")).unwrap();
    let message = expect_error(
        upload(&stack, "zipmap", zipmap).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("zipmap=False"), "{message}");
    let mut truncated = std::fs::read(dir.path().join("classifier.onnx")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let truncated_copy = truncated.clone();
    let message = expect_error(
        upload(&stack, "truncated", truncated).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("cannot load"), "{message}");
    let unknown = std::fs::read(dir.path().join("unknown_op.onnx")).unwrap();
    let message = expect_error(
        upload(&stack, "unknown-op", unknown.clone()).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("Frobnicate"), "{message}");
    let huge = std::fs::read(dir.path().join("huge_shape.onnx")).unwrap();
    let message = expect_error(
        upload(&stack, "huge", huge.clone()).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("values per row"), "{message}");
    // Neither ONNX nor Python source (a file named .onnx that is not one, say).
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let message = expect_error(
        upload(&stack, "binary", binary.clone()).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(
        message.contains("neither an ONNX model nor Python"),
        "{message}"
    );
    let available = stack.get(&format!("/models/available?task={TASK}")).await;
    let names: Vec<&str> = available
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        !["zipmap", "truncated", "unknown-op", "huge", "binary"]
            .iter()
            .any(|n| names.contains(n)),
        "{names:?}"
    );
    // Neither file is left in the object store (other tests share it: look for their bytes),
    // where an accepted upload's file is.
    let accepted = std::fs::read(dir.path().join("regressor.onnx")).unwrap();
    assert_eq!(upload(&stack, "kept", accepted.clone()).await.status(), 200);
    let refused = [
        std::fs::read(dir.path().join("zipmap.onnx")).unwrap(),
        truncated_copy,
        unknown,
        huge,
        binary,
    ];
    let root = stack.ctx.settings.object_store.root.join("models");
    let mut stored = Vec::new();
    for model in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(model.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            stored.push(std::fs::read(file.path()).unwrap_or_default());
        }
    }
    assert!(
        stored.contains(&accepted),
        "the store is not where the test looks"
    );
    assert!(
        !stored.iter().any(|bytes| refused.contains(bytes)),
        "a refused upload left its file"
    );

    // A model that is not ONNX is not served without training.
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let message = expect_error(
        stack
            .client
            .post(
                Some(&stack.token),
                "/inference_jobs",
                json!({"app": "nope", "model_id": models[0]}),
            )
            .await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("train it first"), "{message}");
}

/// The Open Inference Protocol on the same model: metadata from its signature, readiness,
/// inference by job id and by deployment name with KServe's JSON tensors, and its errors.
#[tokio::test]
async fn the_open_inference_protocol_serves_an_onnx_model_by_job_id_and_deployment_name() {
    let stack = spawn_stack(0).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let (dir, expected) = exports();
    let file = std::fs::read(dir.path().join("classifier.onnx")).unwrap();
    let uploaded: Value = upload(&stack, "v2-onnx", file).await.json().await.unwrap();
    let id = uploaded["id"].as_str().unwrap().to_owned();
    let job = stack
        .post("/inference_jobs", json!({"app": "v2app", "model_id": id}))
        .await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let http = &stack.client.http;
    let get = |path: String| http.get(format!("{predictor}{path}")).send();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(format!("/v2/models/{job_id}/ready"))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get("/v2/health/live".into()).await.unwrap().status(), 200);
    let metadata: Value = get(format!("/v2/models/{job_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["platform"], "onnxruntime_onnx");
    assert_eq!(metadata["versions"], json!(["1"]));
    let input = metadata["inputs"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(metadata["inputs"][0]["shape"], json!([-1, 8]));

    let rows = expected["classifier_rows"].as_array().unwrap();
    let flat: Vec<Value> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    let request = json!({"id": "r1", "inputs": [{"name": input, "shape": [rows.len(), 8],
                         "datatype": "FP32", "data": flat}]});
    let infer = |name: String, body: Value| {
        http.post(format!("{predictor}/v2/models/{name}/infer"))
            .json(&body)
            .send()
    };
    let answer: Value = infer(job_id.clone(), request.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["id"], "r1");
    assert_eq!(answer["model_version"], "1");
    let output = &answer["outputs"][0];
    assert_eq!(output["shape"], json!([rows.len(), 3]), "{answer}");
    assert_eq!(output["datatype"], "FP32");
    let probabilities: Vec<Value> = expected["classifier_probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    assert!(close(&output["data"], &Value::Array(probabilities)));

    // By a deployment's name too.
    stack
        .post(
            "/deployments",
            json!({"name": "v2-live", "app": "v2app", "app_version": 1}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = infer("v2-live".into(), request.clone()).await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the deployment never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A version named in the path: the deployment's, or the job's own; any other is a 404.
    for name in ["v2-live".to_owned(), job_id.clone()] {
        let versioned: Value = http
            .post(format!("{predictor}/v2/models/{name}/versions/1/infer"))
            .json(&request)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(versioned["model_version"], "1", "{versioned}");
        assert!(close(&versioned["outputs"][0]["data"], &output["data"]));
        let ready = get(format!("/v2/models/{name}/versions/1/ready"))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let missing = get(format!("/v2/models/{name}/versions/7")).await.unwrap();
        assert_eq!(missing.status(), 404);
        let error: Value = missing.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("no version 7"),
            "{error}"
        );
    }

    // Errors as KServe answers them: {"error": ...} with 404 and 400.
    let response = infer("no-such-model".into(), request.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    for (body, needle) in [
        (
            json!({"inputs": [{"name": "nope", "shape": [1, 8], "datatype": "FP32", "data": vec![0; 8]}]}),
            "no input",
        ),
        (
            json!({"inputs": [{"name": input, "shape": [1, 8], "datatype": "FP32", "data": vec![0; 7]}]}),
            "values for shape",
        ),
        (
            json!({"inputs": [{"name": input, "shape": [1, 8], "datatype": "FP32", "data": vec!["a"; 8]}]}),
            "holds",
        ),
        (json!({"inputs": []}), "non-empty"),
        (
            json!({"inputs": [{"name": input, "shape": [1, 8], "datatype": "FP32", "data": vec![0; 8]}],
                "outputs": [{"name": "nope"}]}),
            "no output",
        ),
    ] {
        let response = infer(job_id.clone(), body).await.unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains(needle), "{error}");
    }
}

/// An XGBoost export uploaded with the names of its columns: served from `model_id`, it takes
/// Rafiki's dict queries by feature name and answers as XGBoost does; names that do not fit the
/// model, or given with a Python template, are refused at upload.
#[tokio::test]
async fn columns_named_at_upload_take_rafiki_dict_queries() {
    use reqwest::multipart::{Form, Part};
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let (dir, expected) = exports();
    let export = expected["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "xgboost_classifier")
        .unwrap()
        .clone();
    let file = std::fs::read(dir.path().join("xgboost_classifier.onnx")).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("col_{i}")).collect();
    let send = |name: &str, bytes: Vec<u8>, features: Value| {
        let form = Form::new()
            .text("name", name.to_owned())
            .text("task", TASK)
            .text("model_class", "Xgb")
            .text("feature_names", features.to_string())
            .part("model_file_bytes", Part::bytes(bytes).file_name("m.onnx"));
        stack
            .client
            .http
            .post(stack.client.url("/models"))
            .bearer_auth(&stack.token)
            .multipart(form)
            .send()
    };
    let message = expect_error(
        send("short", file.clone(), json!(names[..3]))
            .await
            .unwrap(),
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("8 columns but 3"), "{message}");
    let message = expect_error(
        send("python", b"class Xgb: pass\n".to_vec(), json!(names))
            .await
            .unwrap(),
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("a template reads its own"), "{message}");
    let uploaded = duma_e2e::client::json_ok(send("xgb", file, json!(names)).await.unwrap()).await;
    let id = uploaded["id"].as_str().unwrap();
    let model = stack.get(&format!("/models/{id}")).await;
    assert_eq!(model["signature"]["features"], json!(names), "{model}");

    let job = stack
        .post("/inference_jobs", json!({"app": "xgb", "model_id": id}))
        .await;
    let queries: Vec<Value> = export["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            Value::Object(
                names
                    .iter()
                    .zip(row.as_array().unwrap())
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    let answers = stack
        .predictions(&predict_url(&job, &predictor), &json!(queries))
        .await;
    assert!(
        close(&Value::Array(answers), &export["expected"]),
        "the served model does not answer as XGBoost does"
    );
    let response = stack
        .client
        .http
        .post(predict_url(&job, &predictor))
        .json(&json!({"query": {"col_0": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no feature `col_1`"),
        "{body}"
    );
}

/// ONNX Runtime parses untrusted files in a child process: one that crashes the parser ends its
/// upload with a 400 and leaves the admin serving. (A stand-in inspector crashes on purpose:
/// no known file crashes the pinned ONNX Runtime.) The child gets none of the admin's environment.
#[tokio::test]
async fn an_onnx_file_that_crashes_its_inspection_is_refused_and_the_admin_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let crashing = dir.path().join("inspector");
    let seen_environment = dir.path().join("environment");
    std::fs::write(
        &crashing,
        format!(
            "#!/bin/sh\nenv > {}\nkill -SEGV $$\n",
            seen_environment.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &crashing,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let inspector = crashing.clone();
    let stack = duma_e2e::stack::spawn_stack_with(0, move |settings| {
        settings.onnx.inspector = Some(inspector);
    })
    .await;
    // Bytes that look like ONNX (a protobuf starting with its ir_version).
    let mut model = vec![0x08, 0x07];
    model.extend(std::iter::repeat_n(0x3a, 64));
    let message = expect_error(
        upload(&stack, "crasher", model).await,
        400,
        "InvalidModelError",
    )
    .await;
    assert!(message.contains("crashed"), "{message}");
    let environment = std::fs::read_to_string(&seen_environment).unwrap();
    assert!(!environment.contains("DUMA"), "{environment}");
    // Still serving, and nothing was kept.
    let available = stack.get(&format!("/models/available?task={TASK}")).await;
    assert!(!available.to_string().contains("crasher"), "{available}");
}
