//! From a model's [`TemplateSource`] to a runnable [`Template`]: built-ins by class name; uploaded Python
//! templates by fetching their source (cached by checksum) and preparing the virtualenv of their
//! dependencies; ONNX models by the runtime library they are served with (their file arrives as
//! the trial's parameters). Shared by the train and inference workers.

use std::path::PathBuf;
use std::sync::Arc;

use duma_common::config::{OnnxSettings, PythonSettings};
use duma_common::store::ObjectCache;
use duma_domain::{TemplateKind, TemplateSource};

use crate::python::{PythonEnv, PythonTemplate, VenvCache};
use crate::sandbox::Sandbox;
use crate::template::{OnnxTemplate, Template};

#[derive(Clone)]
pub struct TemplateResolver {
    pub cache: ObjectCache,
    pub venvs: VenvCache,
    /// The folder holding the `duma` SDK package.
    pub sdk_path: PathBuf,
    /// Parent of Python runners' working directories.
    pub work_root: PathBuf,
    pub sandbox: Arc<Sandbox>,
    /// The ONNX Runtime library ONNX models are served with.
    pub onnx_runtime: PathBuf,
}

impl TemplateResolver {
    /// Python templates get environments under `python.env_dir` and run in the sandbox of
    /// `python.sandbox` (checked now: a host that cannot confine model code is logged once and
    /// refuses Python templates).
    pub fn new(
        cache: ObjectCache,
        python: &PythonSettings,
        onnx: &OnnxSettings,
        work_root: PathBuf,
    ) -> Self {
        let sandbox = Arc::new(Sandbox::new(
            &python.sandbox,
            &python.interpreter,
            &python.env_dir,
            &python.sdk_path,
        ));
        Self {
            cache,
            venvs: VenvCache::new(&python.env_dir, &python.interpreter, sandbox.clone()),
            sdk_path: python.sdk_path.clone(),
            work_root,
            sandbox,
            onnx_runtime: onnx.runtime_path.clone(),
        }
    }
}

impl TemplateResolver {
    /// `Ok(Err(reason))` when the template cannot run (unknown built-in, missing source,
    /// dependencies that do not install); `Err` for platform failures (store, disk).
    pub async fn resolve(
        &self,
        model: &TemplateSource,
    ) -> anyhow::Result<Result<Template, String>> {
        match model.kind {
            TemplateKind::Native => Ok(crate::builtin_template(&model.class)
                .map(Template::Builtin)
                .ok_or_else(|| format!("no built-in template `{}`", model.class))),
            TemplateKind::Onnx => Ok(Ok(Template::Onnx(OnnxTemplate {
                library: self.onnx_runtime.clone(),
                feature_names: model.feature_names.clone(),
            }))),
            TemplateKind::Python => {
                let Some((path, sha256)) = &model.file else {
                    return Ok(Err(format!("model {} has no source file", model.name)));
                };
                let source = self.cache.fetch(path, sha256, ".py").await?;
                let venvs = self.venvs.clone();
                let dependencies = model.dependencies.clone();
                // Creating a virtualenv runs pip: seconds to minutes, off the async executor.
                let python =
                    match tokio::task::spawn_blocking(move || venvs.interpreter(&dependencies))
                        .await?
                    {
                        Ok(python) => python,
                        Err(error) => return Ok(Err(error.to_string())),
                    };
                Ok(Ok(Template::Python(PythonTemplate {
                    source,
                    class_name: model.class.clone(),
                    env: PythonEnv {
                        python,
                        sdk_path: self.sdk_path.clone(),
                        work_root: self.work_root.clone(),
                        sandbox: self.sandbox.clone(),
                        devices: Default::default(),
                    },
                })))
            }
        }
    }
}
