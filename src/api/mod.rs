//! The `flagger.app/v1beta1` API: Canary, MetricTemplate and AlertProvider types, their defaults,
//! validation rules and generated CRDs; pure (no I/O, no clock).
pub mod alert_provider;
pub mod canary;
pub mod crd;
pub mod defaults;
pub mod duration;
pub mod manifest;
pub mod metric_template;
pub mod phase;
pub mod provider;
pub mod schema;
mod schema_util;
pub mod suggest;
pub mod target_kind;
pub mod template;
pub mod time;
pub mod validation;
pub mod webhook_type;

pub use alert_provider::{AlertProvider, AlertProviderSpec};
pub use canary::{Canary, CanarySpec, CanaryStatus};
pub use defaults::Strategy;
pub use metric_template::{MetricTemplate, MetricTemplateSpec};
pub use phase::CanaryPhase;
pub use provider::Provider;
pub use target_kind::TargetKind;
