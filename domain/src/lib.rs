//! Domain types shared by every service: ids, statuses, user types, names, knobs, budgets, proposals,
//! trial log records, and the messages services exchange over the RPC ([`protocol`]). All of
//! them round-trip through serde with Rafiki's wire names, and through Postgres. Nothing here
//! does I/O: the runtime and pure logic build and test against this crate alone.

mod budget;
pub mod dependencies;
pub mod ensemble;
pub mod evaluation;
mod ids;
mod knobs;
mod names;
pub mod proposal;
pub mod protocol;
pub mod report;
mod status;
mod template;
pub mod tensor;
mod trial_log;

pub use budget::{Budget, BudgetError, EarlyStopping, FinalTrain, InferenceBudget};
pub use ids::{
    DatasetId, DeploymentId, EvaluationId, InferenceJobId, LeaseId, ModelId, PredictionKeyId,
    SubTrainJobId, TrainJobId, TrialId, UserId, WorkerId,
};
pub use knobs::{Knob, KnobConfig, KnobError, KnobValue, Knobs, Policy};
pub use names::{AppName, Email, ModelClass, ModelName, NameError};
pub use proposal::Proposal;
pub use status::{
    AccessRight, JobStatus, LeaseKind, TemplateKind, TrialLogKind, TrialStatus, UnknownVariant,
    UserType, WorkerKind,
};
pub use template::TemplateSource;
pub use trial_log::TrialLog;
