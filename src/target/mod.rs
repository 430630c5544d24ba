//! Target kinds: what Serin reads from, and builds for, each kind of object a `targetRef` may
//! name (Deployment and DaemonSet workloads, core Services, Knative Services); pure, no I/O.
pub mod builders;
pub mod configs;
pub mod fingerprint;
pub mod service;
