use std::fmt;
use std::str::FromStr;

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of: {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

/// Enums stored as Postgres enum types and sent with Rafiki's names.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident as $pg:literal, $kind:literal { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSql, FromSql)]
        #[postgres(name = $pg)]
        pub enum $name {
            $(
                #[serde(rename = $wire)]
                #[postgres(name = $wire)]
                $variant,
            )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: [$($wire),+].join(", "),
                    }),
                }
            }
        }
    };
}

wire_enum!(
    /// Who a user is; decides what they may do.
    UserType as "user_type", "user type" {
        Superadmin = "SUPERADMIN",
        Admin = "ADMIN",
        ModelDeveloper = "MODEL_DEVELOPER",
        AppDeveloper = "APP_DEVELOPER",
    }
);

wire_enum!(
    /// Life of train jobs, sub train jobs and inference jobs.
    JobStatus as "job_status", "job status" {
        Started = "STARTED",
        Running = "RUNNING",
        Stopped = "STOPPED",
        Errored = "ERRORED",
    }
);

wire_enum!(
    /// Life of a trial. STOPPED: ended early by the budget's `EARLY_STOPPING` rule, scored
    /// with its last report.
    TrialStatus as "trial_status", "trial status" {
        Pending = "PENDING",
        Running = "RUNNING",
        Completed = "COMPLETED",
        Errored = "ERRORED",
        Stopped = "STOPPED",
    }
);

wire_enum!(
    /// Who may use a model template besides its owner.
    AccessRight as "access_right", "access right" {
        Private = "PRIVATE",
        Public = "PUBLIC",
    }
);

wire_enum!(
    /// How a model template is run.
    TemplateKind as "template_kind", "template kind" {
        Native = "native",
        Python = "python",
        Onnx = "onnx",
    }
);

wire_enum!(
    /// What a trial log record holds.
    TrialLogKind as "trial_log_kind", "trial log kind" {
        Message = "MESSAGE",
        Metrics = "METRICS",
        Plot = "PLOT",
    }
);

wire_enum!(
    /// The pool a worker process belongs to.
    WorkerKind as "worker_kind", "worker kind" {
        Advisor = "ADVISOR",
        Train = "TRAIN",
        Inference = "INFERENCE",
        Predictor = "PREDICTOR",
    }
);

wire_enum!(
    /// What a work lease grants.
    LeaseKind as "lease_kind", "lease kind" {
        Advise = "ADVISE",
        Train = "TRAIN",
        Serve = "SERVE",
    }
);

impl JobStatus {
    /// STARTED or RUNNING: the job still has work to do.
    pub fn is_live(self) -> bool {
        matches!(self, JobStatus::Started | JobStatus::Running)
    }
}

impl TrialStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TrialStatus::Completed | TrialStatus::Errored | TrialStatus::Stopped
        )
    }
}

impl UserType {
    /// Superadmins and admins manage users and see everyone's jobs.
    pub fn is_admin(self) -> bool {
        matches!(self, UserType::Superadmin | UserType::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_through_serde_and_from_str() {
        for status in JobStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<JobStatus>(&json).unwrap(), *status);
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), *status);
        }
        assert_eq!(
            "MODEL_DEVELOPER".parse::<UserType>().unwrap(),
            UserType::ModelDeveloper
        );
        let err = "GOD".parse::<UserType>().unwrap_err().to_string();
        assert!(err.contains("SUPERADMIN"), "{err}");
    }
}
