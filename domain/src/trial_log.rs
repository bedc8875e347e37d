//! One record of a trial's log: a message, a metric or a plot definition, as templates log them
//! through the SDK and `GET /trials/{id}/logs` returns them.

use chrono::{DateTime, Utc};

use crate::TrialLogKind;

#[derive(Debug, Clone, PartialEq)]
pub struct TrialLog {
    pub datetime: DateTime<Utc>,
    pub kind: TrialLogKind,
    pub payload: serde_json::Value,
}

impl TrialLog {
    /// A message record stamped now.
    pub fn message(text: &str) -> Self {
        Self {
            datetime: Utc::now(),
            kind: TrialLogKind::Message,
            payload: serde_json::json!({ "message": text }),
        }
    }
}
