use duma_domain::{KnobError, KnobValue};
use duma_runtime::{TemplateError, builtin_template, builtin_templates};

use crate::support::{CLASSIFIERS, REGRESSORS};

#[test]
fn the_registry_lists_every_template_once() {
    let classes: Vec<&str> = builtin_templates().iter().map(|t| t.model_class).collect();
    let mut expected: Vec<&str> = CLASSIFIERS.iter().chain(&REGRESSORS).copied().collect();
    expected.sort_unstable();
    let mut sorted = classes.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    for t in builtin_templates() {
        assert_eq!(t.model_class, format!("duma.tabular.{}", t.name));
        let task = if CLASSIFIERS.contains(&t.model_class) {
            "TABULAR_CLASSIFICATION"
        } else {
            "TABULAR_REGRESSION"
        };
        assert_eq!(t.task, task, "{}", t.name);
    }
    assert!(builtin_template("duma.tabular.Nope").is_none());
}

#[test]
fn knob_configs_are_valid_tunable_spaces_and_defaults_lie_in_them() {
    for t in builtin_templates() {
        let config = t.knob_config();
        config.validate().unwrap();
        assert!(!config.is_fixed(), "{} has nothing to tune", t.name);
        config.check(&t.default_knobs()).unwrap();
        t.build(&t.default_knobs()).unwrap();
        // Round-trips with Rafiki's wire names, as the admin API will serve it.
        let json = serde_json::to_value(&config).unwrap();
        assert!(
            json.as_object()
                .unwrap()
                .values()
                .all(|k| k["type"].is_string())
        );
    }
}

#[test]
fn regularisation_knobs_are_log_scaled() {
    for model_class in [
        "duma.tabular.LogisticRegression",
        "duma.tabular.RidgeRegression",
    ] {
        let config = builtin_template(model_class).unwrap().knob_config();
        let alpha = serde_json::to_value(&config.0["alpha"]).unwrap();
        assert_eq!(alpha["type"], "FloatKnob");
        assert_eq!(alpha["is_exp"], true, "{model_class}");
    }
}

#[test]
fn build_rejects_knobs_outside_the_space() {
    let lr = builtin_template("duma.tabular.LogisticRegression").unwrap();

    let mut too_big = lr.default_knobs();
    too_big.insert("alpha".into(), KnobValue::Float(1e6));
    assert!(matches!(
        lr.build(&too_big),
        Err(TemplateError::InvalidKnobs(KnobError::OutOfSpace { .. }))
    ));

    let mut wrong_choice = lr.default_knobs();
    wrong_choice.insert("class_weight".into(), KnobValue::Str("heavy".into()));
    assert!(matches!(
        lr.build(&wrong_choice),
        Err(TemplateError::InvalidKnobs(KnobError::OutOfSpace { .. }))
    ));

    let mut missing = lr.default_knobs();
    missing.remove("alpha");
    let error = lr.build(&missing).err().unwrap();
    assert_eq!(
        error.to_string(),
        "invalid knobs: knob `alpha` is missing a value"
    );

    let mut unknown = lr.default_knobs();
    unknown.insert("learning_rate".into(), KnobValue::Float(0.1));
    assert!(matches!(
        lr.build(&unknown),
        Err(TemplateError::InvalidKnobs(KnobError::Unknown { .. }))
    ));

    let forest = builtin_template("duma.tabular.RandomForestClassifier").unwrap();
    let mut fractional = forest.default_knobs();
    fractional.insert("n_trees".into(), KnobValue::Float(10.5));
    assert!(forest.build(&fractional).is_err());
}
