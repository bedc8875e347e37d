use duma_runtime::params::{FORMAT_VERSION, read_header};
use duma_runtime::{TemplateError, builtin_templates};

use crate::support::{
    CLASSIFIERS, Files, REGRESSORS, Rng, blobs_csv, linear_csv, mixed_csv, no_args, queries_from,
    template, train,
};

fn parameters_reason<T>(result: Result<T, TemplateError>) -> String {
    match result {
        Err(TemplateError::InvalidParameters { reason }) => reason,
        Err(other) => panic!("expected InvalidParameters, got {other}"),
        Ok(_) => panic!("expected InvalidParameters, got success"),
    }
}

#[test]
fn dumped_and_loaded_models_predict_identically() {
    let mut rng = Rng::new(20);
    let files = Files::new();
    let blobs = blobs_csv(&mut rng, 300, 4, &["a", "b", "c"]);
    let mixed = mixed_csv(&mut rng, 300);
    let linear = linear_csv(&mut rng, 300);
    let cases = CLASSIFIERS
        .iter()
        .map(|c| (*c, &blobs))
        .chain(CLASSIFIERS.iter().map(|c| (*c, &mixed)))
        .chain(REGRESSORS.iter().map(|c| (*c, &linear)));
    for (model_class, csv) in cases {
        let dataset = files.write("train.csv", csv);
        let mut trained = train(model_class, &dataset, &no_args()).unwrap();
        let parameters = trained.dump_parameters().unwrap();

        let header = read_header(&parameters).unwrap();
        assert_eq!(header.format_version, FORMAT_VERSION);
        assert_eq!(header.template, template(model_class).name);

        let mut loaded = template(model_class).load(&parameters).unwrap();
        let queries = queries_from(csv, 50);
        assert_eq!(
            trained.predict(&queries).unwrap(),
            loaded.predict(&queries).unwrap(),
            "{model_class}"
        );
        let mut log = duma_runtime::TrialLogger::new();
        assert_eq!(
            trained.evaluate(&dataset, &mut log).unwrap(),
            loaded.evaluate(&dataset, &mut log).unwrap()
        );
        assert_eq!(
            loaded.dump_parameters().unwrap(),
            parameters,
            "{model_class}"
        );
    }
}

#[test]
fn a_loaded_model_can_be_trained_again() {
    let mut rng = Rng::new(21);
    let files = Files::new();
    let dataset = files.write("train.csv", &linear_csv(&mut rng, 200));
    let parameters = train(REGRESSORS[0], &dataset, &no_args())
        .unwrap()
        .dump_parameters()
        .unwrap();
    let mut loaded = template(REGRESSORS[0]).load(&parameters).unwrap();
    loaded
        .train(&dataset, &no_args(), &mut duma_runtime::TrialLogger::new())
        .unwrap();
}

#[test]
fn another_templates_parameters_are_rejected_by_name() {
    let mut rng = Rng::new(22);
    let files = Files::new();
    let dataset = files.write("train.csv", &blobs_csv(&mut rng, 200, 3, &["a", "b"]));
    let parameters = train(CLASSIFIERS[0], &dataset, &no_args())
        .unwrap()
        .dump_parameters()
        .unwrap();
    for other in builtin_templates()
        .iter()
        .filter(|t| t.model_class != CLASSIFIERS[0])
    {
        let reason = parameters_reason(other.load(&parameters));
        assert!(
            reason.contains("saved by template `LogisticRegression`"),
            "{}: {reason}",
            other.name
        );
    }
}

#[test]
fn garbage_and_damaged_parameters_are_rejected() {
    let mut rng = Rng::new(23);
    let files = Files::new();
    let dataset = files.write("train.csv", &blobs_csv(&mut rng, 200, 3, &["a", "b"]));
    let forest = template(CLASSIFIERS[1]);
    let parameters = train(CLASSIFIERS[1], &dataset, &no_args())
        .unwrap()
        .dump_parameters()
        .unwrap();

    assert!(parameters_reason(forest.load(b"")).contains("magic bytes"));
    assert!(parameters_reason(forest.load(b"{\"weights\": [1, 2]}")).contains("magic bytes"));

    let mut newer = parameters.clone();
    newer[8] = newer[8].wrapping_add(1);
    assert!(parameters_reason(forest.load(&newer)).contains("not supported"));

    let truncated = &parameters[..parameters.len() / 2];
    assert!(parameters_reason(forest.load(truncated)).contains("corrupt"));

    // Flip bytes throughout the payload: every result is an error or a usable model, never a
    // panic or a hang.
    let header_len = 12 + forest.name.len();
    for position in (header_len..parameters.len()).step_by(97) {
        let mut damaged = parameters.clone();
        damaged[position] ^= 0xA5;
        if let Ok(model) = forest.load(&damaged) {
            model
                .predict(&queries_from("x0,x1,x2,label\n1,2,3,a\n", 1))
                .unwrap();
        }
    }
}

#[test]
fn saved_knobs_are_checked_on_load() {
    let mut rng = Rng::new(24);
    let files = Files::new();
    let dataset = files.write("train.csv", &linear_csv(&mut rng, 100));
    let mut parameters = train(REGRESSORS[0], &dataset, &no_args())
        .unwrap()
        .dump_parameters()
        .unwrap();
    let saved = br#"{"alpha":1.0}"#;
    let at = parameters
        .windows(saved.len())
        .position(|w| w == saved)
        .expect("the knobs are stored as JSON");
    // Same length, outside the knob space.
    parameters[at..at + saved.len()].copy_from_slice(br#"{"alpha":1e9}"#);
    let reason = parameters_reason(template(REGRESSORS[0]).load(&parameters));
    assert!(reason.contains("saved knobs"), "{reason}");
}
