//! Combining the predictions of several trials for one query (DESIGN §3.4): the mean of
//! probability vectors (classification), the mean of numbers (regression), else the first.

use serde_json::Value;

pub fn ensemble(predictions: &[&Value]) -> Value {
    match predictions {
        [] => Value::Null,
        [only] => (*only).clone(),
        [first, ..] => {
            if let Some(numbers) = predictions
                .iter()
                .map(|p| p.as_f64())
                .collect::<Option<Vec<f64>>>()
            {
                return mean(&numbers).map_or_else(|| (*first).clone(), Value::from);
            }
            let vectors: Option<Vec<Vec<f64>>> = predictions
                .iter()
                .map(|p| {
                    p.as_array()
                        .and_then(|a| a.iter().map(Value::as_f64).collect())
                })
                .collect();
            match vectors {
                Some(vectors) if vectors.iter().all(|v| v.len() == vectors[0].len()) => {
                    let averaged: Option<Vec<f64>> = (0..vectors[0].len())
                        .map(|i| mean(&vectors.iter().map(|v| v[i]).collect::<Vec<_>>()))
                        .collect();
                    averaged.map_or_else(|| (*first).clone(), Value::from)
                }
                _ => (*first).clone(),
            }
        }
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    mean.is_finite().then_some(mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probability_vectors_are_averaged_numbers_too_and_anything_else_takes_the_first() {
        assert_eq!(
            ensemble(&[&json!([0.25, 0.75]), &json!([0.75, 0.25])]),
            json!([0.5, 0.5])
        );
        assert_eq!(ensemble(&[&json!(1.0), &json!(3.0)]), json!(2.0));
        assert_eq!(
            ensemble(&[&json!(["NN", "VB"]), &json!(["DT", "VB"])]),
            json!(["NN", "VB"])
        );
        assert_eq!(
            ensemble(&[&json!([0.1, 0.9]), &json!([1.0])]),
            json!([0.1, 0.9])
        );
        assert_eq!(ensemble(&[&json!({"a": 1})]), json!({"a": 1}));
    }
}
