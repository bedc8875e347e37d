//! Reading time series from the Prometheus that scrapes the services (`admin.prometheus_url`).

use std::time::Duration;

use serde::Deserialize;

/// How long one query may take.
const QUERY_DEADLINE: Duration = Duration::from_secs(10);

pub struct Prometheus {
    client: reqwest::Client,
    base: String,
}

/// One series of a range query: its labels and `(unix seconds, value)` points.
pub struct Series {
    pub labels: std::collections::BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Matrix>,
}

#[derive(Deserialize)]
struct Matrix {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

impl Prometheus {
    /// `None` when no URL is configured.
    pub fn new(url: &str) -> anyhow::Result<Option<Self>> {
        if url.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(QUERY_DEADLINE)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Some(Self {
            client,
            base: url.trim_end_matches('/').to_owned(),
        }))
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `query` evaluated from `start` to `end` (unix seconds) every `step` seconds. A value that
    /// is not a number (NaN, where nothing was observed) is left out.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> anyhow::Result<Vec<Series>> {
        let response = self
            .client
            .get(format!("{}/api/v1/query_range", self.base))
            .query(&[
                ("query", query.to_owned()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step:.0}")),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: Response = response
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("answered {status} with no Prometheus reply ({e})"))?;
        if body.status != "success" {
            anyhow::bail!("refused the query: {}", body.error.unwrap_or_default());
        }
        Ok(body
            .data
            .map(|d| d.result)
            .unwrap_or_default()
            .into_iter()
            .map(|m| Series {
                labels: m.metric,
                points: m
                    .values
                    .into_iter()
                    .filter_map(|(t, v)| {
                        v.parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .map(|v| (t, v))
                    })
                    .collect(),
            })
            .collect())
    }
}
