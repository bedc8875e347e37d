//! `duma predict`: one query, or a file of rows (CSV with a header, or JSON lines) sent in
//! batches to the app's predictor; the predictions are written next to the inputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::api::{Failure, Outcome, answer, unreachable};
use super::jobs::running_job;
use super::{Globals, cell};

/// Each predict request's deadline.
const PREDICT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["query", "file"])))]
pub struct PredictArgs {
    /// The served app.
    app: String,
    /// The app version [default: the latest served]
    #[arg(long)]
    version: Option<i64>,
    /// One query, as JSON (e.g. '{"x1": 1.5, "x2": 2.0}').
    #[arg(long)]
    query: Option<String>,
    /// Rows to predict: `.csv` (a header, then one row per query) or `.jsonl` (one JSON query
    /// per line).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Where the predictions go [default: beside the file, `NAME.predictions.csv|jsonl`]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Queries per request (the predictor takes at most 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    JsonLines,
}

pub async fn predict(globals: &Globals, args: PredictArgs) -> Outcome<()> {
    // Read the input first: a bad file is the caller's to fix before anything is asked.
    let rows = match &args.file {
        Some(file) => Some(read_rows(file)?),
        None => None,
    };
    let single = match &args.query {
        Some(text) => Some(
            serde_json::from_str::<Value>(text)
                .map_err(|e| Failure::usage(format!("--query is not JSON: {e}")))?,
        ),
        None => None,
    };
    let (admin, _) = globals.admin().await?;
    let job = running_job(&admin, &args.app, args.version.unwrap_or(-1)).await?;
    let url = match &globals.predictor {
        Some(base) => format!(
            "{}/inference_jobs/{}/predict",
            base.trim_end_matches('/'),
            cell(&job["id"])
        ),
        None => format!("http://{}/predict", cell(&job["predictor_host"])),
    };
    let send = |body: Value| {
        let (http, url) = (admin.http.clone(), url.clone());
        async move {
            let response = http
                .post(&url)
                .json(&body)
                .timeout(PREDICT_TIMEOUT)
                .send()
                .await
                .map_err(|e| unreachable(&url, &e))?;
            answer(response).await
        }
    };
    if let Some(query) = single {
        let answer = send(json!({ "query": query })).await?;
        globals
            .output
            .show(&answer["prediction"], || answer["prediction"].to_string());
        return Ok(());
    }
    let Some((format, header, queries)) = rows else {
        return Err(Failure::usage("give --query or --file"));
    };
    let file = args.file.clone().unwrap_or_default();
    let progress = if globals.output.live() {
        let bar = indicatif::ProgressBar::new(queries.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "predicting [{bar:30}] {pos}/{len} rows {per_sec} ETA {eta}",
            )
            .map_err(|e| Failure::other(e.to_string()))?
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut predictions = Vec::with_capacity(queries.len());
    for batch in queries.chunks(usize::from(args.batch)) {
        let answer = send(json!({ "queries": batch })).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(failure) => {
                progress.abandon();
                return Err(failure);
            }
        };
        let got = answer["predictions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if got.len() != batch.len() {
            return Err(Failure::other(format!(
                "the predictor answered {} predictions for {} queries",
                got.len(),
                batch.len()
            )));
        }
        progress.inc(batch.len() as u64);
        predictions.extend(got);
    }
    progress.finish_and_clear();
    let out = args.out.clone().unwrap_or_else(|| beside(&file, format));
    write_predictions(&out, format, &header, &queries, &predictions)?;
    globals.output.show(
        &json!({"rows": predictions.len(), "out": out.display().to_string()}),
        || {
            format!(
                "Wrote {} predictions to {}",
                predictions.len(),
                out.display()
            )
        },
    );
    Ok(())
}

/// `(format, CSV header, queries)` of a rows file.
fn read_rows(file: &Path) -> Outcome<(Format, Vec<String>, Vec<Value>)> {
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => Format::Csv,
        Some("jsonl" | "ndjson") => Format::JsonLines,
        _ => {
            return Err(Failure::usage(format!(
                "{}: give a .csv or .jsonl file",
                file.display()
            )));
        }
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let (header, queries) = match format {
        Format::Csv => {
            csv_rows(&text).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?
        }
        Format::JsonLines => {
            let mut queries = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                queries.push(serde_json::from_str(line).map_err(|e| {
                    Failure::usage(format!("{} line {}: {e}", file.display(), number + 1))
                })?);
            }
            (Vec::new(), queries)
        }
    };
    if queries.is_empty() {
        return Err(Failure::usage(format!("{}: no rows", file.display())));
    }
    Ok((format, header, queries))
}

/// A CSV's header and its rows as query objects, keys in the header's order: numbers as
/// numbers (integers stay integers), empty cells as null, the rest as text.
fn csv_rows(text: &str) -> Result<(Vec<String>, Vec<Value>), String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut queries = Vec::new();
    for (number, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("row {}: {e}", number + 1))?;
        let mut query = Map::new();
        for (name, value) in header.iter().zip(record.iter()) {
            query.insert(name.clone(), typed(value));
        }
        queries.push(Value::Object(query));
    }
    Ok((header, queries))
}

fn typed(text: &str) -> Value {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    if let Ok(integer) = trimmed.parse::<i64>() {
        return json!(integer);
    }
    match trimmed.parse::<f64>() {
        Ok(number) if number.is_finite() => json!(number),
        _ => Value::String(text.to_owned()),
    }
}

/// `rows.csv` → `rows.predictions.csv`, in the same folder.
fn beside(file: &Path, format: Format) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rows".to_owned());
    let extension = match format {
        Format::Csv => "csv",
        Format::JsonLines => "jsonl",
    };
    file.with_file_name(format!("{stem}.predictions.{extension}"))
}

/// CSV: the input's columns plus `prediction` (a number or label as is, anything else as
/// JSON); JSON lines: `{"query": …, "prediction": …}` per line.
fn write_predictions(
    out: &Path,
    format: Format,
    header: &[String],
    queries: &[Value],
    predictions: &[Value],
) -> Outcome<()> {
    let failed = |e: &dyn std::fmt::Display| Failure::other(format!("{}: {e}", out.display()));
    match format {
        Format::Csv => {
            let mut writer = csv::Writer::from_path(out).map_err(|e| failed(&e))?;
            let mut columns = header.to_vec();
            columns.push("prediction".to_owned());
            writer.write_record(&columns).map_err(|e| failed(&e))?;
            for (query, prediction) in queries.iter().zip(predictions) {
                let mut record: Vec<String> = header
                    .iter()
                    .map(|name| match &query[name] {
                        Value::Null => String::new(),
                        value => cell(value),
                    })
                    .collect();
                record.push(cell(prediction));
                writer.write_record(&record).map_err(|e| failed(&e))?;
            }
            writer.flush().map_err(|e| failed(&e))?;
        }
        Format::JsonLines => {
            let mut lines = String::new();
            for (query, prediction) in queries.iter().zip(predictions) {
                lines.push_str(&json!({"query": query, "prediction": prediction}).to_string());
                lines.push('\n');
            }
            std::fs::write(out, lines).map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_queries_in_the_headers_order_with_numbers_typed() {
        let (header, queries) = csv_rows("zeta,alpha,name\n1,2.5,x\n,-3,7up\n").unwrap();
        assert_eq!(header, ["zeta", "alpha", "name"]);
        assert_eq!(
            serde_json::to_string(&queries[0]).unwrap(),
            r#"{"zeta":1,"alpha":2.5,"name":"x"}"#
        );
        assert_eq!(
            queries[1],
            json!({"zeta": null, "alpha": -3, "name": "7up"})
        );
    }

    #[test]
    fn predictions_are_written_beside_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let rows = dir.path().join("rows.csv");
        assert_eq!(
            beside(&rows, Format::Csv),
            dir.path().join("rows.predictions.csv")
        );
        let out = beside(&rows, Format::Csv);
        let queries = vec![json!({"a": 1, "b": null}), json!({"a": 2, "b": "x"})];
        let predictions = vec![json!([0.25, 0.75]), json!("cat")];
        write_predictions(
            &out,
            Format::Csv,
            &["a".into(), "b".into()],
            &queries,
            &predictions,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "a,b,prediction\n1,,\"[0.25,0.75]\"\n2,x,cat\n"
        );
    }
}
