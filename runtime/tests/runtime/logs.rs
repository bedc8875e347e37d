use duma_domain::TrialLogKind;
use duma_runtime::TrialLogger;

use crate::support::{
    CLASSIFIERS, Files, REGRESSORS, Rng, blobs_csv, linear_csv, no_args, template,
};

#[test]
fn training_logs_messages_metrics_and_plots() {
    let mut rng = Rng::new(40);
    let files = Files::new();
    let blobs = files.write("blobs.csv", &blobs_csv(&mut rng, 200, 3, &["a", "b"]));
    let linear = files.write("linear.csv", &linear_csv(&mut rng, 200));
    let cases = CLASSIFIERS
        .iter()
        .map(|c| (*c, &blobs, "train_accuracy"))
        .chain(REGRESSORS.iter().map(|c| (*c, &linear, "train_r2")));
    for (model_class, dataset, score) in cases {
        let t = template(model_class);
        let mut model = t.build(&t.default_knobs()).unwrap();
        let mut log = TrialLogger::new();
        model.train(dataset, &no_args(), &mut log).unwrap();
        let records = log.drain();
        let first = &records[0];
        assert_eq!(first.kind, TrialLogKind::Message);
        assert!(
            first.payload["message"].as_str().unwrap().contains(t.name),
            "{model_class}: {:?}",
            first.payload
        );
        let last = records.last().unwrap();
        assert_eq!(last.kind, TrialLogKind::Metrics);
        assert!(
            last.payload[score].as_f64().unwrap() > 0.8,
            "{model_class}: {:?}",
            last.payload
        );
        assert!(last.payload["train_seconds"].is_f64());

        model.evaluate(dataset, &mut log).unwrap();
        let evaluation = log.drain();
        assert_eq!(evaluation.last().unwrap().kind, TrialLogKind::Metrics);
    }
}

#[test]
fn logistic_regression_plots_its_loss() {
    let mut rng = Rng::new(41);
    let files = Files::new();
    let dataset = files.write("train.csv", &blobs_csv(&mut rng, 300, 5, &["a", "b", "c"]));
    let t = template(CLASSIFIERS[0]);
    let mut model = t.build(&t.default_knobs()).unwrap();
    let mut log = TrialLogger::new();
    model.train(&dataset, &no_args(), &mut log).unwrap();
    let records = log.drain();
    let plot = records
        .iter()
        .find(|r| r.kind == TrialLogKind::Plot)
        .unwrap();
    assert_eq!(plot.payload["metrics"], serde_json::json!(["loss"]));
    assert_eq!(plot.payload["x_axis"], "iteration");
    let losses: Vec<f64> = records
        .iter()
        .filter_map(|r| r.payload.get("loss").and_then(|l| l.as_f64()))
        .collect();
    assert!(!losses.is_empty());
    assert!(
        losses.windows(2).all(|w| w[1] <= w[0]),
        "loss went up: {losses:?}"
    );
}
