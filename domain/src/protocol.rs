//! Messages services exchange over the Redis RPC primitive (`duma_common::redis::rpc`).

use serde::{Deserialize, Serialize};

use crate::{InferenceJobId, Knobs, LeaseId, Proposal, SubTrainJobId, TrialId, WorkerId};

/// The RPC target of the advisor of a sub train job.
pub fn advisor_target(sub_train_job_id: SubTrainJobId) -> String {
    format!("advisor:{sub_train_job_id}")
}

/// The RPC target serving one trial of an inference job. Requests carry a JSON array of
/// queries; replies a JSON array of predictions, one per query.
pub fn serving_target(inference_job_id: InferenceJobId, trial_id: TrialId) -> String {
    format!("serve:{inference_job_id}:{trial_id}")
}

/// What an RPC target names (the inverse of [`advisor_target`] and [`serving_target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Advisor(SubTrainJobId),
    Serving(InferenceJobId, TrialId),
}

impl Target {
    pub fn parse(target: &str) -> Option<Self> {
        if let Some(sub_job) = target.strip_prefix("advisor:") {
            return sub_job.parse().ok().map(Target::Advisor);
        }
        let (job, trial) = target.strip_prefix("serve:")?.split_once(':')?;
        Some(Target::Serving(job.parse().ok()?, trial.parse().ok()?))
    }
}

/// Train worker → advisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdvisorRequest {
    /// Asks for the next trial for the slot holding TRAIN lease `lease_id`; the advisor creates
    /// the trial row (RUNNING, held by `worker_id`). A slot asks only when it runs nothing, so
    /// if its last trial is still RUNNING the reply was lost, and the advisor sends it again.
    Propose {
        worker_id: WorkerId,
        #[serde(default)]
        lease_id: Option<LeaseId>,
    },
    /// Reports how a trial ended, so the advisor learns from it.
    Feedback {
        trial_id: TrialId,
        knobs: Knobs,
        outcome: TrialOutcome,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrialOutcome {
    Completed {
        score: f64,
    },
    Errored {
        error: String,
    },
    /// Stopped early (the budget's `EARLY_STOPPING`), with its last reported score.
    Stopped {
        score: f64,
    },
}

/// Advisor → train worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdvisorReply {
    /// Run this trial.
    Trial {
        trial_id: TrialId,
        proposal: Proposal,
    },
    /// The budget is spent or the sub job ended: no more trials from this sub job.
    Done,
    /// Nothing to run right now (e.g. trials in flight must finish first); ask again later.
    Wait { retry_ms: u64 },
    /// Feedback received.
    Ack,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_back_to_what_named_them() {
        let sub_job = SubTrainJobId::new();
        let (job, trial) = (InferenceJobId::new(), TrialId::new());
        assert_eq!(
            Target::parse(&advisor_target(sub_job)),
            Some(Target::Advisor(sub_job))
        );
        assert_eq!(
            Target::parse(&serving_target(job, trial)),
            Some(Target::Serving(job, trial))
        );
        assert_eq!(Target::parse("serve:nope"), None);
        assert_eq!(Target::parse("other:1"), None);
    }

    #[test]
    fn messages_round_trip_with_readable_tags() {
        let request = AdvisorRequest::Feedback {
            trial_id: TrialId::new(),
            knobs: Knobs::new(),
            outcome: TrialOutcome::Completed { score: 0.5 },
        };
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""type":"feedback""#), "{json}");
        assert_eq!(
            serde_json::from_str::<AdvisorRequest>(&json).unwrap(),
            request
        );
        let reply: AdvisorReply =
            serde_json::from_str(r#"{"type":"wait","retry_ms":100}"#).unwrap();
        assert_eq!(reply, AdvisorReply::Wait { retry_ms: 100 });
    }
}
