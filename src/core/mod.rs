//! The pure core: the vocabulary shared by the planner and the adapters (routers, metrics,
//! notifier, targets). It imports only `api`; no client, no clock, no I/O.
pub mod alert;
pub mod fields;
pub mod knative;
pub mod routes;
pub mod text;

pub use alert::AlertSeverity;
pub use fields::{FIELD_MANAGER, TOOLKIT_MARKER};
pub use routes::{Routes, session_cookie};
