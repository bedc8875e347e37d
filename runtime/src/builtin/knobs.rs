//! Reading typed values out of [`Knobs`] that were already checked against a knob config. The
//! errors only fire if a learner's `from_knobs` and `knob_config` disagree.

use duma_domain::{Knob, KnobError, KnobValue, Knobs};

use crate::error::TemplateError;

fn get<'a>(knobs: &'a Knobs, name: &str) -> Result<&'a KnobValue, TemplateError> {
    knobs.get(name).ok_or_else(|| {
        TemplateError::InvalidKnobs(KnobError::Missing {
            knob: name.to_owned(),
        })
    })
}

fn wrong_type(name: &str, value: &KnobValue) -> TemplateError {
    TemplateError::InvalidKnobs(KnobError::OutOfSpace {
        knob: name.to_owned(),
        value: serde_json::to_string(value).unwrap_or_default(),
    })
}

pub(crate) fn float(knobs: &Knobs, name: &str) -> Result<f64, TemplateError> {
    match get(knobs, name)? {
        KnobValue::Float(v) => Ok(*v),
        KnobValue::Int(v) => Ok(*v as f64),
        other => Err(wrong_type(name, other)),
    }
}

/// An integer knob as a count, which every integer knob here is.
pub(crate) fn count(knobs: &Knobs, name: &str) -> Result<usize, TemplateError> {
    match get(knobs, name)? {
        KnobValue::Int(v) => usize::try_from(*v).map_err(|_| wrong_type(name, &KnobValue::Int(*v))),
        other => Err(wrong_type(name, other)),
    }
}

pub(crate) fn choice<'a>(knobs: &'a Knobs, name: &str) -> Result<&'a str, TemplateError> {
    match get(knobs, name)? {
        KnobValue::Str(v) => Ok(v),
        other => Err(wrong_type(name, other)),
    }
}

pub(crate) fn float_knob(min: f64, max: f64, is_exp: bool) -> Knob {
    Knob::Float { min, max, is_exp }
}

pub(crate) fn integer_knob(min: i64, max: i64, is_exp: bool) -> Knob {
    Knob::Integer { min, max, is_exp }
}

pub(crate) fn categorical_knob(values: &[&str]) -> Knob {
    Knob::Categorical {
        values: values
            .iter()
            .map(|v| KnobValue::Str((*v).to_owned()))
            .collect(),
    }
}

/// `Knobs` from `(name, value)` pairs, for default knob values.
pub(crate) fn knobs<const N: usize>(values: [(&str, KnobValue); N]) -> Knobs {
    values
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}
