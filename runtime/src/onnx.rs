//! ONNX models, served with ONNX Runtime through the `ort` crate. The runtime library is loaded
//! at run time from `onnx.runtime_path` (the pinned PyPI `onnxruntime` wheel's, which
//! `scripts/setup` unpacks into `.onnxruntime/`), so machines without it build and run
//! unchanged and refuse ONNX models in words.
//!
//! - [`inspect`] loads an uploaded file once and records what it takes and answers
//!   ([`Signature`]); what cannot be served is refused with the reason and the fix.
//! - [`OnnxModel`] answers Rafiki queries: for one input, a query is the row (a number list,
//!   nested as the input's shape) or `{input: row}`; for several, `{input: value}`. The answer
//!   is the row of the one output (a scalar for one value), the class probabilities of a
//!   classifier (an output named like `probabilities`), else `{output: row}`.
//!
//! Sessions use one intra-op thread (scale with processes) and all graph optimisations, done
//! once at load.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use duma_domain::tensor::nest;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use parking_lot::Mutex;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract::{Model, parse_requests, split};
use crate::error::TemplateError;
use crate::json_rows::read_number_rows;
use crate::logger::TrialLogger;

/// Values one row of one input or output may hold, at most (a 4k×4k image is 16M).
const MAX_ROW_VALUES: i64 = 16 << 20;

/// A tensor an ONNX model takes or answers, in the Open Inference Protocol's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// `FP32`, `FP64`, `INT64`, `INT32`, `BOOL`, `STRING`, …
    pub datatype: String,
    /// `-1` where the size is free (the batch, usually).
    pub shape: Vec<i64>,
}

/// What an ONNX model takes and answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The output a prediction is: the only one, or a classifier's probabilities (an output
    /// named like `probabilities`); `None`: every output, by name.
    #[serde(default)]
    pub answer: Option<String>,
    /// Names of the columns of the only input, a `[batch, n]` matrix, given at upload: a query
    /// may then be `{"<feature>": number}` for each of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

impl Signature {
    /// Names the columns of the only input; refused unless it is a `[batch, n]` matrix of `n`
    /// (or any number of) columns and the names are distinct and non-blank.
    pub fn name_features(&mut self, names: Vec<String>) -> Result<(), String> {
        let [input] = self.inputs.as_slice() else {
            return Err(format!(
                "feature_names name the columns of a model's only input; this one has {} inputs \
                 (query them by input name instead)",
                self.inputs.len()
            ));
        };
        let columns = match input.shape.as_slice() {
            [_, columns] => *columns,
            other => {
                return Err(format!(
                    "feature_names name the columns of a [batch, n] input; `{}` has shape {other:?}",
                    input.name
                ));
            }
        };
        if columns >= 0 && names.len() as i64 != columns {
            return Err(format!(
                "`{}` has {columns} columns but {} feature_names were given",
                input.name,
                names.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for name in &names {
            if name.trim().is_empty() || name.len() > 256 {
                return Err("a feature name is blank or longer than 256 bytes".to_owned());
            }
            if !seen.insert(name) {
                return Err(format!("feature `{name}` is named twice"));
            }
        }
        self.features = Some(names);
        Ok(())
    }
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime, loaded from `library` the first time (later calls reuse it,
/// whatever path they give).
fn environment(library: &Path) -> Result<&'static Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            if !library.is_file() {
                return Err(format!(
                    "no ONNX Runtime library at {} (onnx.runtime_path; scripts/setup installs \
                     one into .onnxruntime/)",
                    library.display()
                ));
            }
            let builder = ort::init_from(library)
                .map_err(|e| format!("ONNX Runtime at {} did not load: {e}", library.display()))?;
            builder
                .with_name("duma")
                .build()
                .map_err(|e| format!("ONNX Runtime did not start: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn datatype(ty: TensorElementType) -> &'static str {
    match ty {
        TensorElementType::Float32 => "FP32",
        TensorElementType::Float64 => "FP64",
        TensorElementType::Float16 => "FP16",
        TensorElementType::Bfloat16 => "BF16",
        TensorElementType::Int8 => "INT8",
        TensorElementType::Int16 => "INT16",
        TensorElementType::Int32 => "INT32",
        TensorElementType::Int64 => "INT64",
        TensorElementType::Uint8 => "UINT8",
        TensorElementType::Uint16 => "UINT16",
        TensorElementType::Uint32 => "UINT32",
        TensorElementType::Uint64 => "UINT64",
        TensorElementType::Bool => "BOOL",
        TensorElementType::String => "STRING",
        _ => "UNSUPPORTED",
    }
}

/// Input types a query's numbers can fill.
const INPUT_TYPES: [&str; 4] = ["FP32", "FP64", "INT64", "INT32"];
/// Output types an answer can carry.
const OUTPUT_TYPES: [&str; 6] = ["FP32", "FP64", "INT64", "INT32", "BOOL", "STRING"];

fn spec(name: &str, ty: &ValueType, role: &str) -> Result<TensorSpec, String> {
    let ValueType::Tensor { ty, shape, .. } = ty else {
        let zipmap =
            matches!(ty, ValueType::Sequence(inner) if matches!(**inner, ValueType::Map { .. }));
        return Err(if zipmap {
            format!(
                "output `{name}` is a sequence of maps (scikit-learn's ZipMap), which Duma does not \
                 serve: export the classifier with zipmap=False (skl2onnx: \
                 options={{id(model): {{'zipmap': False}}}}) to get a probability tensor"
            )
        } else {
            format!("{role} `{name}` is a {ty:?}, not a tensor; Duma serves tensors only")
        });
    };
    Ok(TensorSpec {
        name: name.to_owned(),
        datatype: datatype(*ty).to_owned(),
        shape: shape.to_vec(),
    })
}

/// Values per row of a tensor (its shape past the batch), where known.
fn row_values(spec: &TensorSpec) -> i64 {
    spec.shape.iter().skip(1).map(|&d| d.max(1)).product()
}

fn check(signature: &Signature) -> Result<(), String> {
    if signature.inputs.is_empty() || signature.outputs.is_empty() {
        return Err("the model has no inputs or no outputs".to_owned());
    }
    for input in &signature.inputs {
        if !INPUT_TYPES.contains(&input.datatype.as_str()) {
            return Err(format!(
                "input `{}` is {}; Duma fills inputs of {} from queries (encode text and \
                 categories as numbers before export)",
                input.name,
                input.datatype,
                INPUT_TYPES.join(", ")
            ));
        }
        if input.shape.is_empty() {
            return Err(format!(
                "input `{}` is a scalar; Duma needs a batch dimension first",
                input.name
            ));
        }
    }
    for output in &signature.outputs {
        if !OUTPUT_TYPES.contains(&output.datatype.as_str()) {
            return Err(format!(
                "output `{}` is {}, which Duma cannot answer with",
                output.name, output.datatype
            ));
        }
    }
    for spec in signature.inputs.iter().chain(&signature.outputs) {
        if row_values(spec) > MAX_ROW_VALUES || spec.shape.iter().any(|&d| d > MAX_ROW_VALUES) {
            return Err(format!(
                "`{}` has shape {:?}: more than {MAX_ROW_VALUES} values per row",
                spec.name, spec.shape
            ));
        }
    }
    Ok(())
}

fn load_session(library: &Path, bytes: &[u8]) -> Result<Session, String> {
    let environment = environment(library)?;
    let builder = Session::builder(environment).map_err(|e| e.to_string())?;
    let builder = builder
        .with_intra_threads(1)
        .map_err(|e| e.to_string())?
        .with_inter_threads(1)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| e.to_string())?;
    let mut builder = builder;
    builder
        .commit_from_memory(bytes)
        .map_err(|e| format!("ONNX Runtime cannot load it: {e}"))
}

fn signature_of(session: &Session) -> Result<Signature, String> {
    let inputs = session
        .inputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype(), "input"))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = session
        .outputs()
        .iter()
        .map(|o| spec(o.name(), o.dtype(), "output"))
        .collect::<Result<Vec<_>, _>>()?;
    let answer = match outputs.as_slice() {
        [only] => Some(only.name.clone()),
        many => many
            .iter()
            .find(|o| o.name.to_ascii_lowercase().contains("probab"))
            .map(|o| o.name.clone()),
    };
    let signature = Signature {
        inputs,
        outputs,
        answer,
        features: None,
    };
    check(&signature)?;
    Ok(signature)
}

/// Whether `bytes` look like a serialised ONNX model — a protobuf `ModelProto` starts with its
/// `ir_version` field: tag `0x08`, then a small version number — as opposed to a Python template
/// (text never starts with a backspace) or anything else. Loading it is the real check.
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.len() > 16 && bytes[0] == 0x08 && (1..=64).contains(&bytes[1])
}

/// Loads `bytes` as a model and says what it takes and answers, or why it cannot be served.
pub fn inspect(library: &Path, bytes: &[u8]) -> Result<Signature, String> {
    let session = load_session(library, bytes)?;
    signature_of(&session)
}

/// A loaded ONNX model answering queries.
pub struct OnnxModel {
    session: Mutex<Session>,
    signature: Signature,
    bytes: Vec<u8>,
}

impl OnnxModel {
    pub fn load(library: &Path, bytes: &[u8]) -> Result<Self, TemplateError> {
        let invalid = |reason: String| TemplateError::InvalidParameters { reason };
        let session = load_session(library, bytes).map_err(invalid)?;
        let signature = signature_of(&session).map_err(invalid)?;
        Ok(Self {
            session: Mutex::new(session),
            signature,
            bytes: bytes.to_vec(),
        })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Names the columns of its only input (see [`Signature::name_features`]).
    pub fn name_features(&mut self, names: Vec<String>) -> Result<(), TemplateError> {
        self.signature
            .name_features(names)
            .map_err(|reason| TemplateError::InvalidParameters { reason })
    }
}

/// Walks a query's value for one input — a number, or lists of numbers nested as deep as the
/// input's rows — appending its numbers to `out` and recording the shape of the row; from a
/// parsed value or straight from the JSON text it came in (so serving builds no values).
struct Flatten<'a> {
    out: &'a mut Vec<f64>,
    /// Per depth, the length of the lists seen there (`UNSEEN` until the first one ends).
    shape: &'a mut Vec<usize>,
    depth: usize,
}

const UNSEEN: usize = usize::MAX;

impl Flatten<'_> {
    fn number<E: de::Error>(self, value: f64) -> Result<(), E> {
        if self.depth < self.shape.len() {
            return Err(E::custom("nested lists of uneven depth"));
        }
        self.out.push(value);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number or a list of numbers")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.number(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.number(value as f64)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.number(value as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let Flatten { out, shape, depth } = self;
        if depth == shape.len() {
            shape.push(UNSEEN);
        }
        let mut length = 0;
        while items
            .next_element_seed(Flatten {
                out: &mut *out,
                shape: &mut *shape,
                depth: depth + 1,
            })?
            .is_some()
        {
            length += 1;
        }
        match shape[depth] {
            UNSEEN => shape[depth] = length,
            seen if seen != length => {
                return Err(de::Error::custom("nested lists of uneven length"));
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        Err(E::custom(format!("{} is not a number", Value::from(value))))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        Err(E::custom(format!("{value} is not a number")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom("null is not a number"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom("an object is not a number"))
    }
}

/// A batch's tensors by input name, as ONNX Runtime takes them.
type Inputs = Vec<(String, DynValue)>;

/// The rows of one input, one per query, gathered into the batch tensor.
struct Rows<'s> {
    spec: &'s TensorSpec,
    numbers: Vec<f64>,
    /// The shape of the first row; every other must have it too.
    row_shape: Option<Vec<usize>>,
    count: usize,
}

impl<'s> Rows<'s> {
    fn new(spec: &'s TensorSpec, queries: usize) -> Self {
        let per_row = usize::try_from(row_values(spec)).unwrap_or(1);
        Self {
            spec,
            numbers: Vec::with_capacity(queries.saturating_mul(per_row).min(1 << 20)),
            row_shape: None,
            count: 0,
        }
    }

    /// Adds the row a query holds (parsed, or its JSON text).
    fn push<'de, D>(&mut self, value: D) -> Result<(), String>
    where
        D: Deserializer<'de, Error = serde_json::Error>,
    {
        let (values, written) = self.read(value)?;
        self.take(1, values, written)
    }

    /// Adds the rows of a whole request, a list of queries each of which is its row written as
    /// numbers; how many. Rows written any other way (objects) fail here.
    fn push_all<'de, D>(&mut self, list: D) -> Result<usize, String>
    where
        D: Deserializer<'de, Error = serde_json::Error>,
    {
        let (values, shape) = self.read(list)?;
        let Some((&count, written)) = shape.split_first() else {
            return Err("the queries are not a list".to_owned());
        };
        // Every query written to the same nesting (`[1, [2, 3]]` is not): then each row holds
        // the same numbers, and the rows are whole.
        let per_row: usize = written.iter().product();
        if values != count * per_row {
            return Err("the queries' rows are not written alike".to_owned());
        }
        if count > 0 {
            self.take(count, per_row, written.to_vec())?;
        }
        Ok(count)
    }

    /// Reads a value's numbers onto the batch: how many, and the shape they were written in.
    fn read<'de, D>(&mut self, value: D) -> Result<(usize, Vec<usize>), String>
    where
        D: Deserializer<'de, Error = serde_json::Error>,
    {
        let start = self.numbers.len();
        let mut shape = Vec::new();
        Flatten {
            out: &mut self.numbers,
            shape: &mut shape,
            depth: 0,
        }
        .deserialize(value)
        .map_err(|e| e.to_string())?;
        Ok((self.numbers.len() - start, shape))
    }

    /// Counts `count` rows just read, of `values` numbers each written with shape `written`.
    fn take(&mut self, count: usize, values: usize, written: Vec<usize>) -> Result<(), String> {
        let shape = self.fit(values, written)?;
        match &self.row_shape {
            Some(first) if *first != shape => {
                return Err(format!(
                    "rows of `{}` differ in shape within one batch ({first:?} and {shape:?})",
                    self.spec.name
                ));
            }
            Some(_) => {}
            None => self.row_shape = Some(shape),
        }
        self.count += count;
        Ok(())
    }

    /// The shape of a row of `values` numbers written with `shape`, checked against the input's.
    fn fit(&self, values: usize, shape: Vec<usize>) -> Result<Vec<usize>, String> {
        let expected = &self.spec.shape[1..];
        // A row may be written flat for a tensor of more dimensions (an image as one list).
        let fixed = expected.iter().all(|&d| d >= 0);
        let wanted: usize = expected.iter().map(|&d| d.max(1) as usize).product();
        if fixed && values == wanted {
            return Ok(expected.iter().map(|&d| d as usize).collect());
        }
        if shape.len() != expected.len()
            || shape
                .iter()
                .zip(expected)
                .any(|(&got, &want)| want >= 0 && got as i64 != want)
        {
            return Err(format!(
                "input `{}` takes rows of shape {:?}, not {:?} ({values} values)",
                self.spec.name, expected, shape,
            ));
        }
        Ok(shape)
    }

    fn tensor(self) -> Result<DynValue, String> {
        let mut shape = vec![self.count];
        shape.extend(self.row_shape.unwrap_or_default());
        tensor_value(self.spec, shape, self.numbers)
    }
}

/// The row a query by feature name stands for, its values in the order of `features`.
fn feature_row(
    features: &[String],
    fields: &serde_json::Map<String, Value>,
) -> Result<Value, String> {
    let row = features
        .iter()
        .map(|name| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("the query has no feature `{name}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if fields.len() != features.len() {
        let unknown: Vec<&str> = fields
            .keys()
            .filter(|k| !features.contains(k))
            .map(String::as_str)
            .collect();
        return Err(format!(
            "the model has no feature {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Value::Array(row))
}

fn tensor_value(
    spec: &TensorSpec,
    shape: Vec<usize>,
    numbers: Vec<f64>,
) -> Result<DynValue, String> {
    let made = match spec.datatype.as_str() {
        "FP32" => {
            Tensor::from_array((shape, numbers.iter().map(|&v| v as f32).collect::<Vec<_>>()))
                .map(|t| t.into_dyn())
        }
        "FP64" => Tensor::from_array((shape, numbers)).map(|t| t.into_dyn()),
        "INT64" => {
            Tensor::from_array((shape, numbers.iter().map(|&v| v as i64).collect::<Vec<_>>()))
                .map(|t| t.into_dyn())
        }
        "INT32" => {
            Tensor::from_array((shape, numbers.iter().map(|&v| v as i32).collect::<Vec<_>>()))
                .map(|t| t.into_dyn())
        }
        other => return Err(format!("input `{}` is {other}", spec.name)),
    };
    made.map_err(|e| e.to_string())
}

/// Values of an output tensor as JSON, with its shape.
fn output_values(value: &DynValue) -> Result<(Vec<usize>, Vec<Value>), String> {
    let shape_of = |shape: &ort::value::Shape| shape.iter().map(|&d| d.max(0) as usize).collect();
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err("an output that is not a tensor".to_owned());
    };
    let numbers = |values: Vec<f64>| values.into_iter().map(Value::from).collect::<Vec<_>>();
    let err = |e: ort::Error| e.to_string();
    Ok(match ty {
        TensorElementType::Float32 => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            (
                shape_of(shape),
                numbers(data.iter().map(|&v| f64::from(v)).collect()),
            )
        }
        TensorElementType::Float64 => {
            let (shape, data) = value.try_extract_tensor::<f64>().map_err(err)?;
            (shape_of(shape), numbers(data.to_vec()))
        }
        TensorElementType::Int64 => {
            let (shape, data) = value.try_extract_tensor::<i64>().map_err(err)?;
            (
                shape_of(shape),
                data.iter().map(|&v| Value::from(v)).collect(),
            )
        }
        TensorElementType::Int32 => {
            let (shape, data) = value.try_extract_tensor::<i32>().map_err(err)?;
            (
                shape_of(shape),
                data.iter().map(|&v| Value::from(v)).collect(),
            )
        }
        TensorElementType::Bool => {
            let (shape, data) = value.try_extract_tensor::<bool>().map_err(err)?;
            (
                shape_of(shape),
                data.iter().map(|&v| Value::from(v)).collect(),
            )
        }
        TensorElementType::String => {
            let (shape, data) = value.try_extract_strings().map_err(err)?;
            (shape_of(shape), data.into_iter().map(Value::from).collect())
        }
        other => return Err(format!("an output of type {other:?}")),
    })
}

impl OnnxModel {
    fn inputs_of(&self, queries: &[Value]) -> Result<Inputs, TemplateError> {
        let mut tensors = Vec::with_capacity(self.signature.inputs.len());
        for spec in &self.signature.inputs {
            let mut rows = Rows::new(spec, queries.len());
            for (index, query) in queries.iter().enumerate() {
                let invalid = |reason: String| TemplateError::InvalidQuery { index, reason };
                let by_feature;
                let value = match query {
                    Value::Object(fields) if !fields.contains_key(&spec.name) => {
                        match &self.signature.features {
                            Some(features) => {
                                by_feature = feature_row(features, fields).map_err(invalid)?;
                                &by_feature
                            }
                            None => {
                                return Err(invalid(format!(
                                    "the query has no `{}`; the model's inputs are {}",
                                    spec.name,
                                    self.input_names()
                                )));
                            }
                        }
                    }
                    Value::Object(fields) => &fields[&spec.name],
                    other if self.signature.inputs.len() == 1 => other,
                    _ => {
                        return Err(invalid(format!(
                            "the model has several inputs: send {{\"input\": value}} for each of {}",
                            self.input_names()
                        )));
                    }
                };
                rows.push(value).map_err(invalid)?;
            }
            let tensor = rows
                .tensor()
                .map_err(|reason| TemplateError::InvalidQuery { index: 0, reason })?;
            tensors.push((spec.name.clone(), tensor));
        }
        Ok(tensors)
    }

    /// The input of a one-input model straight from the requests' JSON text, with how many
    /// queries each request has, when every query is its row written as numbers (what most
    /// clients send); `None` for anything else — other shapes of query, and bad ones, which the
    /// way of parsed values answers (or names).
    fn input_of_text(&self, requests: &[&[u8]]) -> Option<(Inputs, Vec<usize>)> {
        let [spec] = self.signature.inputs.as_slice() else {
            return None;
        };
        let mut rows = Rows::new(spec, requests.len());
        let mut counts = Vec::with_capacity(requests.len());
        for payload in requests {
            // Rows of plain numbers, the usual request, are read without serde.
            if let Some((count, per_row)) = read_number_rows(payload, &mut rows.numbers) {
                rows.take(count, per_row, vec![per_row]).ok()?;
                counts.push(count);
                continue;
            }
            let mut text = serde_json::Deserializer::from_slice(payload);
            counts.push(rows.push_all(&mut text).ok()?);
            text.end().ok()?;
        }
        let tensor = rows.tensor().ok()?;
        Some((vec![(spec.name.clone(), tensor)], counts))
    }

    fn input_names(&self) -> String {
        let names: Vec<String> = self
            .signature
            .inputs
            .iter()
            .map(|i| format!("`{}`", i.name))
            .collect();
        names.join(", ")
    }
}

impl Model for OnnxModel {
    fn train(
        &mut self,
        _dataset: &Path,
        _train_args: &Map<String, Value>,
        _log: &mut TrialLogger,
    ) -> Result<(), TemplateError> {
        Err(TemplateError::Training(
            "an ONNX model is served as uploaded, never trained".to_owned(),
        ))
    }

    fn evaluate(&mut self, _dataset: &Path, _log: &mut TrialLogger) -> Result<f64, TemplateError> {
        Err(TemplateError::Training(
            "an ONNX model is served as uploaded, never trained".to_owned(),
        ))
    }

    fn predict(&self, queries: &[Value]) -> Result<Vec<Value>, TemplateError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let inputs = self.inputs_of(queries)?;
        self.run(inputs, queries.len())
    }

    /// Computes in this process, so it runs to the end whatever `deadline` says.
    fn predict_json(
        &self,
        requests: &[&[u8]],
        _deadline: Instant,
    ) -> Result<Vec<Vec<Value>>, TemplateError> {
        if let Some((inputs, counts)) = self.input_of_text(requests) {
            let n = counts.iter().sum();
            if n == 0 {
                return Ok(counts.iter().map(|_| Vec::new()).collect());
            }
            return Ok(split(self.run(inputs, n)?, &counts));
        }
        let (queries, counts) = parse_requests(requests)?;
        Ok(split(self.predict(&queries)?, &counts))
    }

    fn dump_parameters(&self) -> Result<Vec<u8>, TemplateError> {
        Ok(self.bytes.clone())
    }
}

impl OnnxModel {
    /// Runs the model on a batch of `n` rows and answers each row.
    fn run(&self, inputs: Vec<(String, DynValue)>, n: usize) -> Result<Vec<Value>, TemplateError> {
        let failed = |reason: String| TemplateError::InvalidQuery { index: 0, reason };
        let mut session = self.session.lock();
        let outputs = session
            .run(inputs)
            .map_err(|e| failed(format!("ONNX Runtime refused the batch: {e}")))?;
        let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
        for spec in &self.signature.outputs {
            let Some(value) = outputs.get(&spec.name) else {
                continue;
            };
            let (shape, values) = output_values(value).map_err(failed)?;
            if shape.first() != Some(&n) {
                return Err(failed(format!(
                    "output `{}` has shape {shape:?}, not one row per query",
                    spec.name
                )));
            }
            let mut row_shape = shape[1..].to_vec();
            // One value per row is that value, not a list of one.
            if row_shape.iter().product::<usize>() == 1 {
                row_shape.clear();
            }
            let step = values.len() / n;
            let rows = values
                .chunks(step.max(1))
                .map(|c| nest(c, &row_shape))
                .collect();
            columns.push((spec.name.clone(), rows));
        }
        let answer = &self.signature.answer;
        Ok((0..n)
            .map(|i| match answer {
                Some(name) => columns
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(Value::Null, |(_, rows)| rows[i].clone()),
                None => Value::Object(
                    columns
                        .iter()
                        .map(|(name, rows)| (name.clone(), rows[i].clone()))
                        .collect(),
                ),
            })
            .collect())
    }
}
