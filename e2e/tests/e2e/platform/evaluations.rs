//! Evaluations through the real admin and train workers: a version's trials scored on a labelled
//! dataset, ensembled exactly as the predictor serves them; bad datasets and other users'
//! objects refused in words. (`scripts/smoke/evaluations.py` compares whole evaluations with
//! scikit-learn's metrics.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use duma_e2e::client::expect_error;
use duma_e2e::data::classification_csv;
use duma_e2e::stack::{Stack, predict_url, spawn_stack};

const TASK: &str = "TABULAR_CLASSIFICATION";

async fn evaluate(stack: &Stack, body: Value) -> Value {
    let asked = stack.post("/evaluations", body).await;
    assert_eq!(asked["status"], "PENDING", "{asked}");
    let path = format!("/evaluations/{}", asked["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let evaluation = stack.get(&path).await;
        if evaluation["status"] == "COMPLETED" || evaluation["status"] == "ERRORED" {
            return evaluation;
        }
        assert!(Instant::now() < deadline, "never ended: {evaluation}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rows of a `classification_csv` as queries, and their labels.
fn rows(csv: &str) -> (Vec<Value>, Vec<String>) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (mut queries, mut labels) = (Vec::new(), Vec::new());
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let mut query = serde_json::Map::new();
        for (name, cell) in header.iter().zip(&cells).take(header.len() - 1) {
            let value = cell.parse::<f64>().map_or(json!(cell), |v| json!(v));
            query.insert((*name).to_owned(), value);
        }
        queries.push(Value::Object(query));
        labels.push(cells[header.len() - 1].to_owned());
    }
    (queries, labels)
}

#[tokio::test]
async fn an_evaluation_scores_a_version_as_the_predictor_serves_it() {
    let stack = spawn_stack(1).await;
    stack.start_inference_worker();
    let (predictor, _) = stack.start_predictor().await;
    let models = stack
        .builtin_models(TASK, &["LogisticRegression", "KNeighborsClassifier"])
        .await;
    let train = stack.upload_dataset(TASK, classification_csv(200, 1)).await;
    let val = stack.upload_dataset(TASK, classification_csv(100, 2)).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": "scored", "task": TASK, "train_dataset_id": train,
                   "val_dataset_id": val, "budget": {"MODEL_TRIAL_COUNT": 2},
                   "model_ids": models}),
        )
        .await;
    assert_eq!(
        stack.wait_for_end("scored", Duration::from_secs(120)).await["status"],
        "STOPPED"
    );
    // Noisy rows, so the models disagree with the labels now and then.
    let mut csv = classification_csv(300, 3);
    csv = csv.replace(",0\n1", ",0\n-1").replace(",1\n-", ",1\n1");
    let test = stack.upload_dataset(TASK, csv.clone()).await;

    let evaluation = evaluate(
        &stack,
        json!({"dataset_id": test, "app": "scored", "app_version": 1}),
    )
    .await;
    assert_eq!(evaluation["status"], "COMPLETED", "{evaluation}");
    assert_eq!(evaluation["trial_ids"].as_array().unwrap().len(), 2);
    let metrics = &evaluation["metrics"]["classification"];

    // The same rows through the predictor, which ensembles the same two trials.
    let job = stack
        .post("/inference_jobs", json!({"app": "scored"}))
        .await;
    let url = predict_url(&job, &predictor);
    let (queries, labels) = rows(&csv);
    let deadline = Instant::now() + Duration::from_secs(60);
    let answers = loop {
        let response = stack
            .client
            .http
            .post(&url)
            .json(&json!({"queries": queries}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            break body["predictions"].as_array().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut matrix = [[0u64; 2]; 2];
    for (answer, label) in answers.iter().zip(&labels) {
        let p: Vec<f64> = serde_json::from_value(answer.clone()).unwrap();
        let predicted = usize::from(p[1] > p[0]);
        matrix[label.parse::<usize>().unwrap()][predicted] += 1;
    }
    assert_eq!(metrics["labels"], json!(["0", "1"]));
    assert_eq!(metrics["confusion_matrix"], json!(matrix));
    let accuracy = (matrix[0][0] + matrix[1][1]) as f64 / labels.len() as f64;
    assert!((metrics["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-12);
    assert!(
        accuracy < 1.0,
        "the noisy rows should cost something: {metrics}"
    );
    assert_eq!(evaluation["rows"], 300);

    // One trial alone, and the versions side by side.
    let trial = evaluation["trial_ids"][0].as_str().unwrap();
    let single = evaluate(&stack, json!({"dataset_id": test, "trial_id": trial})).await;
    assert_eq!(single["status"], "COMPLETED", "{single}");
    let side_by_side = stack.get("/apps/scored/evaluations").await;
    let lines = side_by_side["versions"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{side_by_side}");
    assert!(lines[0]["scores"]["accuracy"].as_f64().is_some());
    assert!(lines[0]["scores"]["macro_f1"].as_f64().is_some());

    // Bad datasets end the evaluation ERRORED, saying what is wrong.
    let no_colour = csv.replace("colour,", "hue,");
    let wrong_columns = stack.upload_dataset(TASK, no_colour).await;
    let errored = evaluate(
        &stack,
        json!({"dataset_id": wrong_columns, "app": "scored"}),
    )
    .await;
    assert_eq!(errored["status"], "ERRORED");
    assert!(
        errored["error"].as_str().unwrap().contains("colour"),
        "{errored}"
    );
    let unknown_label = format!("{csv}1.0,1.0,1.0,1.0,red,7\n");
    let unknown = stack.upload_dataset(TASK, unknown_label).await;
    let errored = evaluate(&stack, json!({"dataset_id": unknown, "app": "scored"})).await;
    assert_eq!(errored["status"], "ERRORED");
    let error = errored["error"].as_str().unwrap();
    assert!(
        error.contains("`7`") && error.contains("classes"),
        "{error}"
    );
}

#[tokio::test]
async fn evaluation_requests_are_checked_and_owned() {
    let stack = spawn_stack(1).await;
    let models = stack.builtin_models(TASK, &["LogisticRegression"]).await;
    let train = stack.upload_dataset(TASK, classification_csv(100, 4)).await;
    stack
        .post(
            "/train_jobs",
            json!({"app": "mine", "task": TASK, "train_dataset_id": train,
                   "val_dataset_id": train, "budget": {"MODEL_TRIAL_COUNT": 1},
                   "model_ids": models}),
        )
        .await;
    stack.wait_for_end("mine", Duration::from_secs(120)).await;
    let regression = stack
        .upload_dataset("TABULAR_REGRESSION", duma_e2e::data::regression_csv(50, 1))
        .await;
    let shared = &stack;
    let create = move |token: String, body: Value| async move {
        shared.client.post(Some(&token), "/evaluations", body).await
    };
    let token = stack.token.clone();
    for (body, needle) in [
        (json!({"dataset_id": train}), "exactly one of"),
        (
            json!({"dataset_id": train, "app": "mine", "deployment": "d"}),
            "exactly one of",
        ),
        (json!({"dataset_id": "nope", "app": "mine"}), "dataset_id"),
        (
            json!({"dataset_id": train, "trial_id": "not-an-id"}),
            "trial_id",
        ),
        (
            json!({"dataset_id": regression, "app": "mine"}),
            "TABULAR_REGRESSION",
        ),
    ] {
        let message = expect_error(
            create(token.clone(), body).await,
            400,
            if needle == "TABULAR_REGRESSION" {
                "InvalidDatasetError"
            } else {
                "InvalidEvaluationError"
            },
        )
        .await;
        assert!(message.contains(needle), "{message}");
    }
    // A misspelt field is refused, never ignored.
    expect_error(
        create(token.clone(), json!({"dataset_id": train, "apps": "mine"})).await,
        400,
        "InvalidRequestError",
    )
    .await;
    expect_error(
        create(token.clone(), json!({"dataset_id": train, "app": "none"})).await,
        404,
        "InvalidTrainJobError",
    )
    .await;
    let mine = stack
        .post("/evaluations", json!({"dataset_id": train, "app": "mine"}))
        .await;
    let path = format!("/evaluations/{}", mine["id"].as_str().unwrap());

    // Another developer: not their app, not their dataset, not their evaluation.
    let other = stack.client.new_user(&stack.token, "APP_DEVELOPER").await;
    expect_error(
        create(
            other.token.clone(),
            json!({"dataset_id": train, "app": "mine"}),
        )
        .await,
        404,
        "InvalidTrainJobError",
    )
    .await;
    expect_error(
        stack.client.get(Some(&other.token), &path).await,
        404,
        "InvalidEvaluationError",
    )
    .await;
    let theirs: Value = stack
        .client
        .get(Some(&other.token), "/evaluations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    let trial = mine["trial_ids"][0].as_str().unwrap();
    expect_error(
        create(
            other.token.clone(),
            json!({"dataset_id": train, "trial_id": trial}),
        )
        .await,
        404,
        "InvalidTrialError",
    )
    .await;
}
