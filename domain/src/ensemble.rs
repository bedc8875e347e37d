//! Combining the predictions of several trials for one query, by task: probability vectors are
//! averaged for classification and numbers for regression; for every other task (POS tagging,
//! question answering, speech, anything unknown) the answers are labels, so they are voted on —
//! per position for equally long lists, as a whole otherwise — never averaged. Ties go to the
//! answer of the best trial (answers come best trial first).

use serde_json::Value;

/// How a task's answers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Classification and regression: arithmetic mean.
    Mean,
    /// Any other task: majority vote.
    Vote,
}

impl Combine {
    pub fn for_task(task: &str) -> Self {
        if task.ends_with("CLASSIFICATION") || task.ends_with("REGRESSION") {
            Combine::Mean
        } else {
            Combine::Vote
        }
    }
}

pub fn ensemble(combine: Combine, predictions: &[&Value]) -> Value {
    match predictions {
        [] => Value::Null,
        [only] => (*only).clone(),
        _ => match combine {
            Combine::Mean => mean_of(predictions),
            Combine::Vote => vote(predictions),
        },
    }
}

/// The mean of numbers, or of equally long numeric vectors; else the best trial's answer.
fn mean_of(predictions: &[&Value]) -> Value {
    let first = predictions[0];
    if let Some(numbers) = predictions
        .iter()
        .map(|p| p.as_f64())
        .collect::<Option<Vec<f64>>>()
    {
        return mean(&numbers).map_or_else(|| first.clone(), Value::from);
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
            averaged.map_or_else(|| first.clone(), Value::from)
        }
        _ => first.clone(),
    }
}

/// Per-position majority for equally long lists, whole-answer majority otherwise.
fn vote(predictions: &[&Value]) -> Value {
    let lists: Option<Vec<&Vec<Value>>> = predictions.iter().map(|p| p.as_array()).collect();
    match lists {
        Some(lists) if lists.iter().all(|l| l.len() == lists[0].len()) => Value::Array(
            (0..lists[0].len())
                .map(|i| majority(&lists.iter().map(|l| &l[i]).collect::<Vec<_>>()))
                .collect(),
        ),
        _ => majority(predictions),
    }
}

/// The most frequent value; among equally frequent ones, the one seen first.
fn majority(values: &[&Value]) -> Value {
    let mut best: Option<(&Value, usize)> = None;
    for (i, value) in values.iter().enumerate() {
        if values[..i].contains(value) {
            continue; // counted with its first occurrence
        }
        let count = values.iter().filter(|v| *v == value).count();
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((value, count));
        }
    }
    best.map_or(Value::Null, |(value, _)| value.clone())
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
    fn classification_and_regression_average() {
        let mean = Combine::for_task("TABULAR_CLASSIFICATION");
        assert_eq!(mean, Combine::for_task("TABULAR_REGRESSION"));
        assert_eq!(
            ensemble(mean, &[&json!([0.25, 0.75]), &json!([0.75, 0.25])]),
            json!([0.5, 0.5])
        );
        assert_eq!(ensemble(mean, &[&json!(1.0), &json!(3.0)]), json!(2.0));
        assert_eq!(
            ensemble(mean, &[&json!([0.1, 0.9]), &json!([1.0])]),
            json!([0.1, 0.9])
        );
        assert_eq!(ensemble(mean, &[&json!({"a": 1})]), json!({"a": 1}));
    }

    #[test]
    fn labels_of_other_tasks_are_voted_on_never_averaged() {
        let vote = Combine::for_task("POS_TAGGING");
        assert_eq!(vote, Combine::Vote);
        assert_eq!(Combine::for_task("SOMETHING_NEW"), Combine::Vote);
        // Tag ids stay tag ids: per position, the majority; a tie goes to the best trial.
        assert_eq!(
            ensemble(
                vote,
                &[&json!([3, 7, 1]), &json!([3, 8, 2]), &json!([4, 8, 1])]
            ),
            json!([3, 8, 1])
        );
        assert_eq!(
            ensemble(vote, &[&json!(["NN", "VB"]), &json!(["DT", "JJ"])]),
            json!(["NN", "VB"])
        );
        assert_eq!(
            ensemble(vote, &[&json!("a cat"), &json!("a dog"), &json!("a dog")]),
            json!("a dog")
        );
        assert_eq!(
            ensemble(vote, &[&json!([1, 2]), &json!([1])]),
            json!([1, 2]),
            "unequal lists: whole answers, the best trial's on a tie"
        );
    }
}
