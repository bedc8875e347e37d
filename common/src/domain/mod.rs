//! Domain types shared by every service: ids, statuses, user types, knobs, budgets, proposals.
//! All of them round-trip through serde with Rafiki's wire names, and through Postgres.

mod budget;
pub mod dependencies;
mod ids;
mod knobs;
mod proposal;
mod status;

pub use budget::{Budget, BudgetError};
pub use ids::{
    DatasetId, InferenceJobId, LeaseId, ModelId, SubTrainJobId, TrainJobId, TrialId, UserId,
    WorkerId,
};
pub use knobs::{Knob, KnobConfig, KnobError, KnobValue, Knobs, Policy};
pub use proposal::Proposal;
pub use status::{
    AccessRight, JobStatus, LeaseKind, TemplateKind, TrialLogKind, TrialStatus, UnknownVariant,
    UserType, WorkerKind,
};
