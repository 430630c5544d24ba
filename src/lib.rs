//! Serin: a progressive-delivery operator for Kubernetes, API-compatible with Flagger.
pub mod api;
pub mod cli;
pub mod cluster;
