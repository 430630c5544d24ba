//! The pure core: the observed model, the plan, readiness, verdicts and the vocabulary shared by
//! the planner and the adapters (routers, metrics, notifier). It imports only `api`; no client,
//! no clock, no I/O.
pub mod alert;
pub mod fields;
pub mod fingerprint;
pub mod judge;
pub mod knative;
pub mod plan;
pub mod readiness;
pub mod routes;
pub mod text;
pub mod verdict;
pub mod workload;

pub use alert::AlertSeverity;
pub use fields::{FIELD_MANAGER, TOOLKIT_MARKER};
pub use routes::{Routes, session_cookie};
