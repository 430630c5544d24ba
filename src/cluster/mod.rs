//! The embedded Kubernetes-compatible cluster: simulated workload controllers (the API server lands separately).
pub mod sim;
