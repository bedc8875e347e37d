//! Scoring predictions against a labelled dataset, with scikit-learn's definitions: for
//! classification accuracy, per-label precision, recall, F1 and support, their macro and
//! weighted averages and the confusion matrix (labels are the sorted union of true and
//! predicted labels, and a ratio whose denominator is 0 is 0, as `zero_division=0`); for
//! regression MAE, RMSE and R² (1 when the truth is constant and predicted exactly, else 0
//! then, as `force_finite=True`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an evaluation found, by task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metrics {
    Classification(ClassificationMetrics),
    Regression(RegressionMetrics),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    /// Every label seen in the truth or the predictions, sorted (by value when all are numbers):
    /// the order of `confusion_matrix`'s rows (truth) and columns (prediction).
    pub labels: Vec<String>,
    pub per_label: BTreeMap<String, LabelScores>,
    pub macro_avg: LabelScores,
    pub weighted_avg: LabelScores,
    pub confusion_matrix: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
}

/// A label as text, numbers written one way (`1`, `1.0` and `1e0` are the label `1`), so labels
/// read from a CSV file and labels a model answers with compare equal.
pub fn canonical_label(text: &str) -> String {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => {
            // -0 and 0 are one label.
            let value = if value == 0.0 { 0.0 } else { value };
            value.to_string()
        }
        _ => text.to_owned(),
    }
}

/// The label a classifier's answer names: the most probable of `classes` for a probability
/// vector (the first on ties), the answer itself for a string or number.
pub fn predicted_label(prediction: &Value, classes: Option<&[String]>) -> Result<String, String> {
    match prediction {
        Value::String(label) => Ok(canonical_label(label)),
        Value::Number(number) => Ok(canonical_label(&number.to_string())),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Array(values) => {
            let probabilities: Option<Vec<f64>> = values.iter().map(Value::as_f64).collect();
            let Some(probabilities) = probabilities.filter(|p| !p.is_empty()) else {
                return Err("a list that is not a probability vector".to_owned());
            };
            let best = probabilities
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(best, max), (i, &p)| {
                    if p > max { (i, p) } else { (best, max) }
                })
                .0;
            match classes {
                Some(classes) if classes.len() == probabilities.len() => Ok(classes[best].clone()),
                Some(classes) => Err(format!(
                    "{} probabilities for the {} classes of the training data",
                    probabilities.len(),
                    classes.len()
                )),
                None => Ok(best.to_string()),
            }
        }
        other => Err(format!(
            "{other}, which is neither a label nor a probability vector"
        )),
    }
}

/// Sorts labels by value when every one is a number, else as text.
fn sort_labels(labels: &mut [String]) {
    let numbers: Option<Vec<f64>> = labels.iter().map(|l| l.parse::<f64>().ok()).collect();
    if numbers.is_some() {
        labels.sort_by(|a, b| {
            let (a, b) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        });
    } else {
        labels.sort();
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Classification metrics of `predicted` labels against `truth` (equally long, canonical).
pub fn classification(truth: &[String], predicted: &[String]) -> ClassificationMetrics {
    let mut labels: Vec<String> = truth.iter().chain(predicted).cloned().collect();
    labels.sort();
    labels.dedup();
    sort_labels(&mut labels);
    let index: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let n = labels.len();
    let mut matrix = vec![vec![0u64; n]; n];
    for (t, p) in truth.iter().zip(predicted) {
        matrix[index[t.as_str()]][index[p.as_str()]] += 1;
    }
    let total = truth.len() as u64;
    let correct: u64 = (0..n).map(|i| matrix[i][i]).sum();
    let mut per_label = BTreeMap::new();
    let mut scores = Vec::with_capacity(n);
    for (i, label) in labels.iter().enumerate() {
        let tp = matrix[i][i];
        let support: u64 = matrix[i].iter().sum();
        let predicted: u64 = matrix.iter().map(|row| row[i]).sum();
        let (false_pos, false_neg) = (predicted - tp, support - tp);
        let score = LabelScores {
            precision: ratio(tp, predicted),
            recall: ratio(tp, support),
            f1: ratio(2 * tp, 2 * tp + false_pos + false_neg),
            support,
        };
        per_label.insert(label.clone(), score.clone());
        scores.push(score);
    }
    let average = |weight: &dyn Fn(&LabelScores) -> f64| {
        let weights: f64 = scores.iter().map(weight).sum();
        let mean = |field: fn(&LabelScores) -> f64| {
            if weights == 0.0 {
                0.0
            } else {
                scores.iter().map(|s| field(s) * weight(s)).sum::<f64>() / weights
            }
        };
        LabelScores {
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
            support: total,
        }
    };
    ClassificationMetrics {
        accuracy: ratio(correct, total),
        macro_avg: average(&|_| 1.0),
        weighted_avg: average(&|s| s.support as f64),
        labels,
        per_label,
        confusion_matrix: matrix,
    }
}

/// Regression metrics of `predicted` values against `truth` (equally long, not empty).
pub fn regression(truth: &[f64], predicted: &[f64]) -> RegressionMetrics {
    let n = truth.len().max(1) as f64;
    let errors = truth.iter().zip(predicted).map(|(t, p)| t - p);
    let mae = errors.clone().map(f64::abs).sum::<f64>() / n;
    let ss_res: f64 = errors.map(|e| e * e).sum();
    let mean = truth.iter().sum::<f64>() / n;
    let ss_tot: f64 = truth.iter().map(|t| (t - mean) * (t - mean)).sum();
    let r2 = if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    };
    RegressionMetrics {
        mae,
        rmse: (ss_res / n).sqrt(),
        r2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| canonical_label(t)).collect()
    }

    // Worked by hand with scikit-learn's definitions (classification_report with
    // zero_division=0, confusion_matrix); scripts/smoke/evaluations.py compares whole
    // evaluations with scikit-learn itself.
    #[test]
    fn classification_matches_scikit_learn() {
        let truth = labels(&["cat", "dog", "dog", "bird", "cat", "dog"]);
        let predicted = labels(&["cat", "dog", "cat", "cat", "cat", "fish"]);
        let m = classification(&truth, &predicted);
        assert_eq!(m.labels, ["bird", "cat", "dog", "fish"]);
        assert_eq!(
            m.confusion_matrix,
            [[0, 1, 0, 0], [0, 2, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]
        );
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        let cat = &m.per_label["cat"];
        assert!((cat.precision - 0.5).abs() < 1e-12);
        assert!((cat.recall - 1.0).abs() < 1e-12);
        assert!((cat.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(cat.support, 2);
        let dog = &m.per_label["dog"];
        assert!((dog.precision - 1.0).abs() < 1e-12);
        assert!((dog.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((dog.f1 - 0.5).abs() < 1e-12);
        assert_eq!(m.per_label["fish"].support, 0);
        // macro over 4 labels, weighted by support 1, 2, 3, 0.
        assert!((m.macro_avg.precision - 0.375).abs() < 1e-12);
        assert!((m.macro_avg.f1 - (2.0 / 3.0 + 0.5) / 4.0).abs() < 1e-12);
        assert!((m.weighted_avg.recall - (2.0 + 1.0) / 6.0).abs() < 1e-12);
        assert!((m.weighted_avg.precision - (0.5 * 2.0 + 3.0) / 6.0).abs() < 1e-12);
        assert_eq!(m.weighted_avg.support, 6);
    }

    #[test]
    fn numeric_labels_sort_by_value_and_compare_by_value() {
        let truth = labels(&["10", "2", "1.0"]);
        let predicted = labels(&["10.0", "2", "1"]);
        let m = classification(&truth, &predicted);
        assert_eq!(m.labels, ["1", "2", "10"]);
        assert_eq!(m.accuracy, 1.0);
    }

    #[test]
    fn probability_vectors_name_their_most_probable_class() {
        let classes = labels(&["no", "yes"]);
        assert_eq!(
            predicted_label(&json!([0.2, 0.8]), Some(&classes)).unwrap(),
            "yes"
        );
        assert_eq!(
            predicted_label(&json!([0.5, 0.5]), Some(&classes)).unwrap(),
            "no"
        );
        assert_eq!(predicted_label(&json!(3.0), None).unwrap(), "3");
        assert!(predicted_label(&json!([0.1, 0.2, 0.7]), Some(&classes)).is_err());
        assert!(predicted_label(&json!({"a": 1}), None).is_err());
    }

    #[test]
    fn regression_matches_scikit_learn() {
        let m = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]);
        assert!((m.mae - 0.5).abs() < 1e-12);
        assert!((m.rmse - 0.375f64.sqrt()).abs() < 1e-12);
        assert!((m.r2 - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 1.0]).r2, 1.0);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 2.0]).r2, 0.0);
    }
}
