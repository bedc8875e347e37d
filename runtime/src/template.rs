//! Any template a worker can run: built into the binary, uploaded Python, or an uploaded ONNX
//! model (served, never trained).

use std::path::PathBuf;

use duma_domain::Knobs;

use crate::contract::{BuiltinTemplate, Model};
use crate::error::TemplateError;
use crate::python::{KillSwitch, PythonTemplate};
use crate::sandbox::Devices;

#[derive(Debug, Clone)]
pub enum Template {
    Builtin(&'static BuiltinTemplate),
    Python(PythonTemplate),
    Onnx(OnnxTemplate),
}

/// An uploaded ONNX model: the file is its parameters, served with the runtime `library`.
#[derive(Debug, Clone)]
pub struct OnnxTemplate {
    pub library: PathBuf,
    /// The columns of its only input, named at upload.
    pub feature_names: Option<Vec<String>>,
}

impl Template {
    /// This template with `devices` lent to the processes it starts (Python templates; built-in
    /// and ONNX models run in the worker, on CPU).
    pub fn with_devices(mut self, devices: Devices) -> Self {
        if let Template::Python(python) = &mut self {
            python.env.devices = devices;
        }
        self
    }

    /// A model to train with `knobs`. `kill` stops a Python child (built-ins finish on their own).
    pub fn build(&self, knobs: &Knobs, kill: &KillSwitch) -> Result<Box<dyn Model>, TemplateError> {
        match self {
            Template::Builtin(template) => template.build(knobs),
            Template::Python(template) => template.build(knobs, kill),
            Template::Onnx(_) => Err(TemplateError::Training(
                "an ONNX model is served as uploaded, never trained".to_owned(),
            )),
        }
    }

    /// A trained model from saved parameters.
    pub fn load(
        &self,
        knobs: &Knobs,
        parameters: &[u8],
        kill: &KillSwitch,
    ) -> Result<Box<dyn Model>, TemplateError> {
        match self {
            Template::Builtin(template) => template.load(parameters),
            Template::Python(template) => template.load(knobs, parameters, kill),
            Template::Onnx(template) => {
                let mut model = crate::onnx::OnnxModel::load(&template.library, parameters)?;
                if let Some(names) = &template.feature_names {
                    model.name_features(names.clone())?;
                }
                Ok(Box::new(model))
            }
        }
    }
}
