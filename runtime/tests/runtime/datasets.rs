use duma_runtime::TemplateError;
use serde_json::json;

use crate::support::{
    CLASSIFIERS, Files, REGRESSORS, Rng, args, dataset_reason, evaluate, mixed_csv, no_args,
    probabilities, train,
};

#[test]
fn string_features_and_missing_values_are_encoded_and_imputed() {
    let mut rng = Rng::new(30);
    let files = Files::new();
    let train_csv = files.write("train.csv", &mixed_csv(&mut rng, 600));
    let validation = files.write("validation.csv", &mixed_csv(&mut rng, 300));
    for model_class in CLASSIFIERS {
        let mut model = train(model_class, &train_csv, &no_args()).unwrap();
        let accuracy = evaluate(&mut model, &validation);
        eprintln!(
            "{model_class}: validation accuracy {accuracy:.4} with a string feature and missing values"
        );
        assert!(accuracy >= 0.9, "{model_class}: accuracy {accuracy}");

        let queries = [
            json!({"colour": "blue", "size": 4.1}),
            json!({"colour": "blue", "size": null}),
            json!({"colour": null, "size": 4.0}),
            json!({"colour": "mauve", "size": 4.0}),
            json!({"colour": "NA", "size": "NA"}),
        ];
        let predictions = model.predict(&queries).unwrap();
        for prediction in &predictions[..4] {
            // Classes sort as apple, pear, plum; blue and size ≈ 4 mean plum.
            let p: Vec<f64> = serde_json::from_value(prediction.clone()).unwrap();
            assert!(p[2] > 0.5, "{model_class}: {p:?}");
        }
    }
}

#[test]
fn wrong_query_types_name_the_query_and_feature() {
    let mut rng = Rng::new(31);
    let files = Files::new();
    let dataset = files.write("train.csv", &mixed_csv(&mut rng, 200));
    let model = train(CLASSIFIERS[0], &dataset, &no_args()).unwrap();
    let queries = [
        json!({"colour": "red", "size": 1}),
        json!({"colour": "red", "size": "big"}),
    ];
    match model.predict(&queries) {
        Err(TemplateError::InvalidQuery { index, reason }) => {
            assert_eq!(index, 1);
            assert_eq!(reason, "feature `size` must be a number, got a string");
        }
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    match model.predict(&[json!({"size": 1})]) {
        Err(TemplateError::InvalidQuery { index: 0, reason }) => {
            assert!(
                reason.contains("lacks 1 of the 2 features") && reason.contains("`colour`"),
                "{reason}"
            );
        }
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    match model.predict(&[json!(["red", 1])]) {
        Err(TemplateError::InvalidQuery { index: 0, reason }) => {
            assert!(reason.contains("JSON object"), "{reason}");
        }
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
}

#[test]
fn features_and_target_train_args_pick_columns() {
    let files = Files::new();
    let mut csv = String::from("label,noise,signal,id\n");
    for i in 0..200 {
        let label = i % 2;
        csv.push_str(&format!("{label},{},{},{i}\n", (i * 7919) % 13, label * 5));
    }
    let dataset = files.write("train.csv", &csv);
    let chosen = args(json!({"features": ["signal"], "target": "label"}));
    for model_class in CLASSIFIERS {
        let mut model = train(model_class, &dataset, &chosen).unwrap();
        assert_eq!(evaluate(&mut model, &dataset), 1.0, "{model_class}");
        // Only `signal` is read; the other columns may be absent from queries.
        let p = probabilities(model.as_ref(), json!({"signal": 5}));
        assert!(p[1] > 0.9, "{model_class}: {p:?}");
    }
}

#[test]
fn bad_csv_files_name_the_problem() {
    let files = Files::new();
    let ok = files.write("ok.csv", "a,b,y\n1,2,3\n4,5,6\n");

    let missing_target = train(REGRESSORS[0], &ok, &args(json!({"target": "price"})));
    assert!(
        dataset_reason(missing_target).contains("target column `price` is not in the CSV header"),
    );

    let ragged = files.write("ragged.csv", "a,b,y\n1,2,3\n4,5\n");
    assert!(
        dataset_reason(train(REGRESSORS[0], &ragged, &no_args()))
            .contains("line 3 has 2 fields but the header has 3")
    );

    let text_target = files.write("text.csv", "a,b,y\n1,2,3\n4,5,cheap\n");
    assert!(
        dataset_reason(train(REGRESSORS[1], &text_target, &no_args()))
            .contains("target column `y` must be numeric for regression, but line 3 holds `cheap`")
    );

    let one_class = files.write("one.csv", "a,y\n1,x\n2,x\n");
    assert!(
        dataset_reason(train(CLASSIFIERS[0], &one_class, &no_args()))
            .contains("at least 2 classes")
    );

    let empty = files.write("empty.csv", "");
    assert!(dataset_reason(train(CLASSIFIERS[0], &empty, &no_args())).contains("empty"));

    let header_only = files.write("header.csv", "a,b,y\n");
    assert!(
        dataset_reason(train(CLASSIFIERS[0], &header_only, &no_args())).contains("no data rows")
    );

    let no_file = files.write("placeholder", "").with_file_name("absent.csv");
    assert!(dataset_reason(train(CLASSIFIERS[0], &no_file, &no_args())).contains("cannot read"));

    assert!(matches!(
        train(CLASSIFIERS[0], &ok, &args(json!({"features": "a"}))),
        Err(TemplateError::InvalidTrainArgs { .. })
    ));
}

#[test]
fn validation_files_must_have_the_training_columns() {
    let files = Files::new();
    let dataset = files.write("train.csv", "a,b,y\n1,2,3\n4,5,6\n7,8,10\n");
    let mut model = train(REGRESSORS[0], &dataset, &no_args()).unwrap();
    let mut log = duma_runtime::TrialLogger::new();

    let without_b = files.write("v1.csv", "a,y\n1,3\n");
    let reason = dataset_reason(model.evaluate(&without_b, &mut log));
    assert!(
        reason.contains("feature column `b` is not in the CSV header"),
        "{reason}"
    );

    let text_in_numeric = files.write("v2.csv", "a,b,y\n1,two,3\n");
    let reason = dataset_reason(model.evaluate(&text_in_numeric, &mut log));
    assert!(
        reason.contains("`b` is numeric but line 2 holds `two`"),
        "{reason}"
    );
}

#[test]
fn rows_without_a_target_are_left_out() {
    let files = Files::new();
    let mut csv = String::from("x,y\n");
    for i in 0..100 {
        let y = if i % 10 == 0 {
            String::new()
        } else {
            (2 * i).to_string()
        };
        csv.push_str(&format!("{i},{y}\n"));
    }
    let dataset = files.write("train.csv", &csv);
    let template = crate::support::template(REGRESSORS[0]);
    let mut model = template.build(&template.default_knobs()).unwrap();
    let mut log = duma_runtime::TrialLogger::new();
    model.train(&dataset, &no_args(), &mut log).unwrap();
    let first = &log.drain()[0];
    assert_eq!(
        first.payload["message"],
        "left out 10 of 100 rows whose target `y` is missing"
    );
    assert!(evaluate(&mut model, &dataset) > 0.99);
}
