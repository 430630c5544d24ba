//! Serin: a progressive-delivery operator for Kubernetes, API-compatible with Flagger.
pub mod api;
pub mod bench;
pub mod cli;
/// The embedded Kubernetes-compatible API server (the `serin-cluster` crate in `crates/cluster`).
pub use serin_cluster as cluster;
pub mod controller;
pub mod core;
pub mod demo;
pub mod install;
pub mod loadtester;
pub mod metrics;
pub mod notifier;
pub mod router;
pub mod target;
/// Test fixtures as builders (`Canary::test().progressing(40)`), for unit and integration tests.
#[doc(hidden)]
pub use api::testing;
pub mod webhook;

/// Installs ring as the process-wide rustls provider (kube and reqwest both use rustls); safe to
/// call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
