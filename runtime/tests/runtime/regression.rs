use serde_json::json;

use crate::support::{Files, REGRESSORS, Rng, evaluate, linear_csv, no_args, train};

#[test]
fn every_regressor_fits_a_noisy_linear_function() {
    let mut rng = Rng::new(10);
    let files = Files::new();
    let train_csv = files.write("train.csv", &linear_csv(&mut rng, 1000));
    let validation = files.write("validation.csv", &linear_csv(&mut rng, 400));
    for model_class in REGRESSORS {
        let mut model = train(model_class, &train_csv, &no_args()).unwrap();
        let r2 = evaluate(&mut model, &validation);
        eprintln!("{model_class}: validation R² {r2:.4}");
        assert!(r2 >= 0.8, "{model_class}: R² {r2}");
    }
}

#[test]
fn ridge_recovers_the_linear_function() {
    let mut rng = Rng::new(11);
    let files = Files::new();
    let dataset = files.write("train.csv", &linear_csv(&mut rng, 2000));
    let model = train(REGRESSORS[0], &dataset, &no_args()).unwrap();
    let at_origin = model
        .predict(&[json!({"a": 0, "b": 0, "c": 0, "d": 0})])
        .unwrap();
    let at_one = model
        .predict(&[json!({"a": 1, "b": 1, "c": 1, "d": 1})])
        .unwrap();
    let origin = at_origin[0].as_f64().unwrap();
    let one = at_one[0].as_f64().unwrap();
    assert!((origin - 3.0).abs() < 0.15, "intercept {origin}");
    assert!(
        (one - origin - 4.5).abs() < 0.2,
        "sum of weights {}",
        one - origin
    );
}
