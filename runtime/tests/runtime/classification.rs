use duma_runtime::TemplateError;
use serde_json::json;

use crate::support::{
    CLASSIFIERS, Files, Rng, blobs_csv, evaluate, no_args, probabilities, queries_from, template,
    train,
};

#[test]
fn every_classifier_separates_easy_blobs() {
    let mut rng = Rng::new(1);
    let files = Files::new();
    let classes = ["alpha", "beta", "gamma"];
    let train_csv = files.write("train.csv", &blobs_csv(&mut rng, 600, 8, &classes));
    let validation = files.write("validation.csv", &blobs_csv(&mut rng, 300, 8, &classes));
    for model_class in CLASSIFIERS {
        let mut model = train(model_class, &train_csv, &no_args()).unwrap();
        let accuracy = evaluate(&mut model, &validation);
        eprintln!("{model_class}: validation accuracy {accuracy:.4}");
        assert!(accuracy >= 0.9, "{model_class}: accuracy {accuracy}");
    }
}

#[test]
fn predictions_are_probabilities_in_sorted_class_order() {
    let mut rng = Rng::new(2);
    let files = Files::new();
    // Classes listed out of order: predictions follow the sorted order alpha, beta, gamma.
    let csv = blobs_csv(&mut rng, 400, 3, &["gamma", "alpha", "beta"]);
    let dataset = files.write("train.csv", &csv);
    let far_on_x0 = json!({"x0": 8.0, "x1": 0.0, "x2": 0.0});
    for model_class in CLASSIFIERS {
        let model = train(model_class, &dataset, &no_args()).unwrap();
        let predictions = model.predict(&queries_from(&csv, 20)).unwrap();
        assert_eq!(predictions.len(), 20);
        for prediction in &predictions {
            let probabilities: Vec<f64> = serde_json::from_value(prediction.clone()).unwrap();
            assert_eq!(probabilities.len(), 3, "{model_class}");
            assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
            let sum: f64 = probabilities.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{model_class}: sum {sum}");
        }
        // "gamma" (listed first) has its mean on x0, and is last in sorted order.
        let gamma = probabilities(model.as_ref(), far_on_x0.clone());
        assert!(gamma[2] > 0.8, "{model_class}: {gamma:?}");
    }
}

#[test]
fn numeric_class_labels_sort_by_value() {
    let mut rng = Rng::new(3);
    let files = Files::new();
    let csv = blobs_csv(&mut rng, 300, 2, &["10", "9"]);
    let dataset = files.write("train.csv", &csv);
    let model = train(CLASSIFIERS[0], &dataset, &no_args()).unwrap();
    // Class "10" has its mean on x0 and comes after "9".
    let p = probabilities(model.as_ref(), json!({"x0": 6.0, "x1": 0.0}));
    assert!(p[1] > p[0], "{p:?}");
}

#[test]
fn untrained_models_say_so() {
    let template = template(CLASSIFIERS[1]);
    let model = template.build(&template.default_knobs()).unwrap();
    assert!(matches!(
        model.predict(&[json!({})]),
        Err(TemplateError::NotTrained { .. })
    ));
    let error = model.dump_parameters().unwrap_err();
    assert!(error.to_string().contains("not been trained"), "{error}");
}
