//! Trial logs written by a template while it trains and evaluates (Rafiki's `utils.logger`).

use chrono::{DateTime, Utc};
use duma_domain::TrialLog;
use duma_domain::TrialLogKind;
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
///
/// Bounded: at most [`MAX_RECORDS`] records per trial, each payload at most
/// [`MAX_PAYLOAD_BYTES`] of JSON; what is over is dropped and counted, and the next drain ends
/// with one message saying how much.
#[derive(Debug, Default)]
pub struct TrialLogger {
    records: Vec<LogRecord>,
    /// Records kept over the logger's life (drained ones included).
    kept: usize,
    /// Records dropped since the last drain.
    dropped: usize,
    watch: Option<Watch>,
    /// Why the watch stopped the trial, once it has.
    stopped: Option<String>,
}

/// Sees every METRICS payload kept; returns why the trial must stop, once it must (and stops
/// it: the closure fires the trial's kill switch).
pub struct Watch(Box<WatchFn>);

type WatchFn = dyn FnMut(&Value) -> Option<String> + Send;

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// Log records one trial may keep.
pub const MAX_RECORDS: usize = 20_000;
/// The largest payload of one record, as JSON.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 10;

impl TrialLogger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Passes every METRICS payload kept from now on to `watch` (the train worker's early
    /// stopping), until it returns a reason to stop; the reason is then logged as a message, and
    /// nothing written after it is kept.
    pub fn watch(&mut self, watch: impl FnMut(&Value) -> Option<String> + Send + 'static) {
        self.watch = Some(Watch(Box::new(watch)));
    }

    /// Why the watch stopped the trial, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
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
        self.keep(LogRecord {
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
        if self.dropped > 0 {
            let note = format!(
                "… {} more log records were dropped (a trial keeps at most {MAX_RECORDS}, each at most {MAX_PAYLOAD_BYTES} bytes)",
                std::mem::take(&mut self.dropped)
            );
            self.records.push(LogRecord {
                datetime: Utc::now(),
                kind: TrialLogKind::Message,
                payload: json!({ "message": note }),
            });
        }
        std::mem::take(&mut self.records)
    }

    fn push(&mut self, kind: TrialLogKind, payload: Value) {
        self.keep(LogRecord {
            datetime: Utc::now(),
            kind,
            payload,
        });
    }

    fn keep(&mut self, record: LogRecord) {
        // A stopped trial ends at the record that stopped it (and the message saying why):
        // what its dying process still sends is not kept.
        if self.stopped.is_some() {
            return;
        }
        let size = serde_json::to_vec(&record.payload).map_or(usize::MAX, |b| b.len());
        if self.kept >= MAX_RECORDS || size > MAX_PAYLOAD_BYTES {
            self.dropped += 1;
            return;
        }
        self.kept += 1;
        let verdict = match (&mut self.watch, record.kind) {
            (Some(Watch(watch)), TrialLogKind::Metrics) => watch(&record.payload),
            _ => None,
        };
        self.records.push(record);
        if let Some(reason) = verdict {
            self.push(TrialLogKind::Message, json!({ "message": &reason }));
            self.stopped = Some(reason);
        }
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
    fn a_trial_keeps_a_bounded_log_and_says_what_it_dropped() {
        let mut log = TrialLogger::new();
        log.message("x".repeat(MAX_PAYLOAD_BYTES));
        for i in 0..MAX_RECORDS + 5 {
            log.message(format!("line {i}"));
        }
        let records = log.drain();
        assert_eq!(records.len(), MAX_RECORDS + 1);
        assert_eq!(
            records[MAX_RECORDS].payload["message"]
                .as_str()
                .unwrap()
                .split(' ')
                .nth(1),
            Some("6"),
            "5 over the count and 1 over the size"
        );
        log.message("after the cap");
        assert_eq!(
            log.drain().len(),
            1,
            "only the note that one more was dropped"
        );
    }

    #[test]
    fn a_watch_sees_metrics_until_it_stops_the_trial() {
        let mut log = TrialLogger::new();
        let mut seen = 0;
        log.watch(move |payload| {
            seen += 1;
            (payload["loss"].as_f64() > Some(1.0)).then(|| format!("stopped after {seen}"))
        });
        log.message("not metrics");
        log.metrics([("loss", 0.5)]);
        assert_eq!(log.stopped(), None);
        log.metrics([("loss", 2.0)]);
        log.metrics([("loss", 3.0)]);
        assert_eq!(log.stopped(), Some("stopped after 2"));
        let messages: Vec<Value> = log
            .drain()
            .into_iter()
            .filter(|r| r.kind == TrialLogKind::Message)
            .map(|r| r.payload)
            .collect();
        assert_eq!(
            messages[1],
            json!({"message": "stopped after 2"}),
            "{messages:?}"
        );
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
