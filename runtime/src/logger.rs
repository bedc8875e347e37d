//! Trial logs written by a template while it trains and evaluates (Rafiki's `utils.logger`).

use chrono::{DateTime, Utc};
use duma_common::db::trials::TrialLog;
use duma_common::domain::TrialLogKind;
use serde_json::{Map, Value, json};

/// One log record, shaped like a row of `trial_logs`: the train worker stores it as is.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub datetime: DateTime<Utc>,
    pub kind: TrialLogKind,
    /// `{"message": …}` for messages, `{name: value, …}` for metrics,
    /// `{"title": …, "metrics": […], "x_axis": …}` for plot definitions.
    pub payload: Value,
}

/// Collects a trial's log records in the order they were written.
///
/// Templates run synchronously on a blocking thread, so the logger is a plain buffer: the caller
/// drains it when `train` or `evaluate` returns (or between calls) and stores the records.
#[derive(Debug, Default)]
pub struct TrialLogger {
    records: Vec<LogRecord>,
}

impl TrialLogger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A free-text line, shown in the trial's log.
    pub fn message(&mut self, text: impl Into<String>) {
        self.push(TrialLogKind::Message, json!({ "message": text.into() }));
    }

    /// Metric values at one point of training, e.g. `[("epoch", 3.0), ("loss", 0.41)]`.
    ///
    /// JSON has no NaN or infinity, so a non-finite value is stored as `null`.
    pub fn metrics<N: Into<String>>(&mut self, metrics: impl IntoIterator<Item = (N, f64)>) {
        let payload: Map<String, Value> = metrics
            .into_iter()
            .map(|(name, value)| (name.into(), Value::from(value)))
            .collect();
        self.push(TrialLogKind::Metrics, Value::Object(payload));
    }

    /// Declares a plot of `metrics` (against `x_axis`, or against time when `None`) so the
    /// dashboard can draw the metrics logged later.
    pub fn define_plot(
        &mut self,
        title: impl Into<String>,
        metrics: Vec<String>,
        x_axis: Option<String>,
    ) {
        self.push(
            TrialLogKind::Plot,
            json!({ "title": title.into(), "metrics": metrics, "x_axis": x_axis }),
        );
    }

    /// A record written elsewhere (a Python template's logger), kept with its own time.
    pub fn record(&mut self, datetime: DateTime<Utc>, kind: TrialLogKind, payload: Value) {
        self.records.push(LogRecord {
            datetime,
            kind,
            payload,
        });
    }

    /// The records written so far, oldest first.
    pub fn records(&self) -> &[LogRecord] {
        &self.records
    }

    /// Takes the records written so far, oldest first, leaving the logger empty.
    pub fn drain(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.records)
    }

    fn push(&mut self, kind: TrialLogKind, payload: Value) {
        self.records.push(LogRecord {
            datetime: Utc::now(),
            kind,
            payload,
        });
    }
}

impl From<LogRecord> for TrialLog {
    fn from(record: LogRecord) -> Self {
        TrialLog {
            datetime: record.datetime,
            kind: record.kind,
            payload: record.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_map_to_trial_log_kinds_and_payloads() {
        let mut log = TrialLogger::new();
        log.define_plot("Loss", vec!["loss".into()], Some("epoch".into()));
        log.message("starting");
        log.metrics([("epoch", 1.0), ("loss", 0.5)]);
        log.metrics([("bad", f64::NAN)]);

        let records = log.drain();
        let kinds: Vec<_> = records.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                TrialLogKind::Plot,
                TrialLogKind::Message,
                TrialLogKind::Metrics,
                TrialLogKind::Metrics
            ]
        );
        assert_eq!(
            records[0].payload,
            json!({"title": "Loss", "metrics": ["loss"], "x_axis": "epoch"})
        );
        assert_eq!(records[1].payload, json!({"message": "starting"}));
        assert_eq!(records[2].payload, json!({"epoch": 1.0, "loss": 0.5}));
        assert_eq!(records[3].payload, json!({"bad": null}));
        assert!(records.windows(2).all(|w| w[0].datetime <= w[1].datetime));
        assert!(log.drain().is_empty());
    }

    #[test]
    fn metrics_accept_a_map() {
        let mut log = TrialLogger::new();
        let metrics = std::collections::BTreeMap::from([("accuracy".to_owned(), 0.75)]);
        log.metrics(metrics);
        let record: TrialLog = log.drain().remove(0).into();
        assert_eq!(record.kind, TrialLogKind::Metrics);
        assert_eq!(record.payload, json!({"accuracy": 0.75}));
    }

    #[test]
    fn a_plot_without_x_axis_has_a_null_axis() {
        let mut log = TrialLogger::new();
        log.define_plot("Accuracy", vec!["accuracy".into()], None);
        assert_eq!(
            log.records()[0].payload,
            json!({"title": "Accuracy", "metrics": ["accuracy"], "x_axis": null})
        );
    }
}
