use std::fmt;
use std::str::FromStr;

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),+ $(,)?) => {$(
        #[$doc]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            ToSql, FromSql,
        )]
        #[serde(transparent)]
        #[postgres(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so fresh rows land at the end of their index.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )+};
}

id_type!(
    /// A user account.
    UserId,
    /// An uploaded dataset.
    DatasetId,
    /// A model template.
    ModelId,
    /// A train job (one app version).
    TrainJobId,
    /// The part of a train job that tunes one model.
    SubTrainJobId,
    /// One training run with one set of knob values.
    TrialId,
    /// An inference job serving a train job's best trials.
    InferenceJobId,
    /// A running worker process.
    WorkerId,
    /// A claimable unit of work.
    LeaseId,
    /// A key that lets its bearer query an app's predictions.
    PredictionKeyId,
    /// A named, long-lived endpoint of an app.
    DeploymentId,
    /// Scores of a served version on a labelled dataset.
    EvaluationId,
);
