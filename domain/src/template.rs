//! What a runtime needs to know of a model to run its template, apart from how it is stored.

use crate::TemplateKind;
use crate::dependencies::Dependencies;

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSource {
    /// The model's name, for messages.
    pub name: String,
    pub kind: TemplateKind,
    /// The built-in template's name, or the class an uploaded file defines.
    pub class: String,
    /// Object-store path and sha256 of an uploaded source file.
    pub file: Option<(String, String)>,
    pub dependencies: Dependencies,
    /// An ONNX model's column names, when its uploader gave them (`feature_names`).
    pub feature_names: Option<Vec<String>>,
}
