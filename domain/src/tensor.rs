//! Rows of tensors as JSON: what the ONNX runtime and the predictor's Open Inference Protocol
//! both turn flat tensor data into.

use serde_json::Value;

/// Nests one row's `values` (flat, row-major) by `shape` (the row's dimensions, past the batch):
/// a scalar for `[]`, a list for `[n]`, lists of lists beyond.
pub fn nest(values: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] => values.first().cloned().unwrap_or(Value::Null),
        [_] => Value::Array(values.to_vec()),
        [_, rest @ ..] => {
            let step = rest.iter().product::<usize>().max(1);
            Value::Array(values.chunks(step).map(|c| nest(c, rest)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_nest_by_their_shape() {
        let values: Vec<Value> = (1..=6).map(Value::from).collect();
        assert_eq!(nest(&values[..1], &[]), json!(1));
        assert_eq!(nest(&values, &[6]), json!([1, 2, 3, 4, 5, 6]));
        assert_eq!(nest(&values, &[2, 3]), json!([[1, 2, 3], [4, 5, 6]]));
    }
}
