//! The canary controller: pure building blocks (desired objects, config tracking, change
//! fingerprints, readiness) and the workload abstraction; no I/O in these modules.
pub mod builders;
pub mod configs;
pub mod fingerprint;
pub mod readiness;
pub mod workload;
