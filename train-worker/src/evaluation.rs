//! Evaluations, one at a time per worker beside its trial slots: the trials serving a version
//! are loaded from their saved parameters, predict every labelled row of the dataset, their
//! answers are ensembled as the predictor ensembles them, and the result is scored
//! ([`duma_domain::evaluation`]). Whatever is wrong with the dataset or the models ends the
//! evaluation ERRORED with the reason, never the worker.

use std::sync::Arc;
use std::time::Instant;

use duma_common::db::evaluations::{self, Evaluation};
use duma_common::db::{models, train_jobs, trials};
use duma_common::ops::Probe;
use duma_domain::ensemble::{Combine, ensemble};
use duma_domain::evaluation::{self as score, Metrics, canonical_label};
use duma_runtime::python::KillSwitch;
use duma_runtime::{LabelledRows, Model, Template, class_names_of, labelled_rows_of};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::worker::{IDLE_RECHECK, TrainWorker};

/// Rows per predict call.
const CHUNK: usize = 1024;

/// How an evaluation ends when nothing broke on the platform's side: scored (with the rows
/// scored), or refused for a reason the user can act on (the dataset, the model's answers).
enum Outcome {
    Scored(Metrics, usize),
    Invalid(String),
}

impl TrainWorker {
    /// Claims and runs evaluations until `shutdown`.
    pub async fn run_evaluations(self: Arc<Self>, probe: &Probe, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            probe.beat();
            let claimed = match self.pool.get().await {
                Ok(db) => evaluations::claim(&db, self.id)
                    .await
                    .map_err(anyhow::Error::from),
                Err(error) => Err(error.into()),
            };
            match claimed {
                Ok(Some(evaluation)) => self.evaluate(&evaluation, probe).await,
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.evaluations_available.notified() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot claim an evaluation");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
            }
        }
    }

    async fn evaluate(&self, evaluation: &Evaluation, probe: &Probe) {
        let started = Instant::now();
        let outcome = probe.hold(self.score(evaluation)).await;
        let seconds = started.elapsed().as_secs_f64();
        let saved = match self.pool.get().await {
            Ok(db) => match &outcome {
                Ok(Outcome::Scored(metrics, rows)) => {
                    let rows = i32::try_from(*rows).unwrap_or(i32::MAX);
                    evaluations::complete(&db, evaluation.id, metrics, rows, seconds).await
                }
                Ok(Outcome::Invalid(reason)) => evaluations::fail(&db, evaluation.id, reason).await,
                Err(error) => {
                    let reason = format!("the evaluation failed: {error:#}; ask for it again");
                    evaluations::fail(&db, evaluation.id, &reason).await
                }
            }
            .map_err(anyhow::Error::from),
            Err(error) => Err(error.into()),
        };
        match (&outcome, saved) {
            (_, Err(error)) => {
                // The reconciler ends it once this worker is gone; until then it shows RUNNING.
                tracing::warn!(evaluation_id = %evaluation.id, error = format!("{error:#}"), "cannot record an evaluation's end");
            }
            (Ok(Outcome::Scored(_, rows)), Ok(_)) => {
                tracing::info!(evaluation_id = %evaluation.id, rows, seconds, "evaluation completed");
            }
            (Ok(Outcome::Invalid(reason)), Ok(_)) => {
                tracing::info!(evaluation_id = %evaluation.id, reason, "evaluation refused its input");
            }
            (Err(error), Ok(_)) => {
                tracing::warn!(evaluation_id = %evaluation.id, error = format!("{error:#}"), "evaluation failed");
            }
        }
    }

    async fn score(&self, evaluation: &Evaluation) -> anyhow::Result<Outcome> {
        let db = self.pool.get().await?;
        let train_job = train_jobs::by_id(&db, evaluation.train_job_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("its train job is gone"))?;
        let data = self.dataset_file(&db, evaluation.dataset_id).await?;
        // A version served from an uploaded model has no training data: its classes are its
        // output's indices.
        let training = match train_job.train_dataset_id {
            Some(id) => Some(self.dataset_file(&db, id).await?),
            None => None,
        };
        drop(db);
        let train_args = train_job.train_args.clone();
        let classification = evaluation.task.ends_with("CLASSIFICATION");
        let read = tokio::task::spawn_blocking(move || {
            let rows = labelled_rows_of(&data, &train_args)?;
            let classes = match (&training, classification) {
                (Some(training), true) => Some(class_names_of(training, &train_args)?),
                _ => None,
            };
            Ok::<_, duma_runtime::TemplateError>((rows, classes))
        })
        .await?;
        let (rows, classes) = match read {
            Ok(read) => read,
            Err(error) => return Ok(Outcome::Invalid(format!("the dataset: {error}"))),
        };
        if rows.queries.is_empty() {
            return Ok(Outcome::Invalid(
                "the dataset has no row with a target value to score".to_owned(),
            ));
        }
        let mut answers: Vec<Vec<Value>> = Vec::with_capacity(evaluation.trial_ids.len());
        for &trial_id in &evaluation.trial_ids {
            match self.predict_all(trial_id, &rows.queries).await? {
                Ok(predictions) => answers.push(predictions),
                Err(reason) => return Ok(Outcome::Invalid(reason)),
            }
        }
        let combine = Combine::for_task(&evaluation.task);
        let predictions: Vec<Value> = (0..rows.queries.len())
            .map(|row| {
                ensemble(
                    combine,
                    &answers.iter().map(|a| &a[row]).collect::<Vec<_>>(),
                )
            })
            .collect();
        Ok(if classification {
            classify(&rows, &predictions, classes.as_deref())
        } else {
            regress(&rows, &predictions)
        })
    }

    /// `Err(reason)` when the trial's model cannot load or predict.
    async fn predict_all(
        &self,
        trial_id: duma_domain::TrialId,
        queries: &[Value],
    ) -> anyhow::Result<Result<Vec<Value>, String>> {
        let db = self.pool.get().await?;
        let trial = trials::by_id(&db, trial_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("trial {trial_id} is gone"))?;
        let model_row = models::by_id(&db, trial.model_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("trial {trial_id}'s model is gone"))?;
        drop(db);
        let Some(params) = &trial.params else {
            return Ok(Err(format!("trial {trial_id} has no saved parameters")));
        };
        let template: Template = match self.resolver.resolve(&model_row.template_source()).await? {
            Ok(template) => template,
            Err(reason) => return Ok(Err(format!("trial {trial_id}'s template: {reason}"))),
        };
        let bytes = self.store.get_bytes(&params.path).await?;
        let knobs = trial.proposal.knobs.clone();
        let kill = KillSwitch::new();
        let switch = kill.clone();
        let queries = queries.to_vec();
        let work = tokio::task::spawn_blocking(move || {
            let model: Box<dyn Model> = template
                .load(&knobs, &bytes, &switch)
                .map_err(|e| format!("trial {trial_id} failed to load: {e}"))?;
            let mut predictions = Vec::with_capacity(queries.len());
            for chunk in queries.chunks(CHUNK) {
                let answered = model
                    .predict(chunk)
                    .map_err(|e| format!("trial {trial_id} failed to predict: {e}"))?;
                if answered.len() != chunk.len() {
                    return Err(format!(
                        "trial {trial_id} answered {} of {} rows",
                        answered.len(),
                        chunk.len()
                    ));
                }
                predictions.extend(answered);
            }
            Ok(predictions)
        });
        match tokio::time::timeout(self.settings.task_timeout(), work).await {
            Ok(joined) => Ok(joined?),
            Err(_) => {
                kill.fire();
                Ok(Err(format!(
                    "trial {trial_id} took longer than the {}s task timeout to predict the dataset",
                    self.settings.task_timeout_secs
                )))
            }
        }
    }
}

/// `classes`: those of the training data, in probability order; `None` for an uploaded model,
/// whose probability vectors name classes by index.
fn classify(rows: &LabelledRows, predictions: &[Value], classes: Option<&[String]>) -> Outcome {
    let classes: Option<Vec<String>> =
        classes.map(|c| c.iter().map(|c| canonical_label(c)).collect());
    let mut truth = Vec::with_capacity(predictions.len());
    let mut predicted = Vec::with_capacity(predictions.len());
    for ((target, line), prediction) in rows.targets.iter().zip(&rows.lines).zip(predictions) {
        let label = canonical_label(target);
        if let Some(classes) = classes.as_ref().filter(|c| !c.contains(&label)) {
            return Outcome::Invalid(format!(
                "line {line}: label `{target}` is none of the {} classes the model was trained \
                 on ({})",
                classes.len(),
                shown(classes)
            ));
        }
        match score::predicted_label(prediction, classes.as_deref()) {
            Ok(answer) => predicted.push(answer),
            Err(what) => {
                return Outcome::Invalid(format!("line {line}: the model answered {what}"));
            }
        }
        truth.push(label);
    }
    let n = truth.len();
    Outcome::Scored(
        Metrics::Classification(score::classification(&truth, &predicted)),
        n,
    )
}

fn regress(rows: &LabelledRows, predictions: &[Value]) -> Outcome {
    let mut truth = Vec::with_capacity(predictions.len());
    let mut predicted = Vec::with_capacity(predictions.len());
    for ((target, line), prediction) in rows.targets.iter().zip(&rows.lines).zip(predictions) {
        let Some(value) = target.parse::<f64>().ok().filter(|v| v.is_finite()) else {
            return Outcome::Invalid(format!(
                "line {line}: target `{target}` is not a number, and the model is a regressor"
            ));
        };
        let answer = match prediction {
            Value::Array(values) if values.len() == 1 => values[0].as_f64(),
            other => other.as_f64(),
        };
        let Some(answer) = answer.filter(|v| v.is_finite()) else {
            return Outcome::Invalid(format!(
                "line {line}: the model answered {prediction}, not a number"
            ));
        };
        truth.push(value);
        predicted.push(answer);
    }
    let n = truth.len();
    Outcome::Scored(
        Metrics::Regression(score::regression(&truth, &predicted)),
        n,
    )
}

/// The first few of a list, for a message.
fn shown(items: &[String]) -> String {
    let mut text: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
    if items.len() > 10 {
        text.push("…");
    }
    text.join(", ")
}
