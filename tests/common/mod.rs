//! Helpers shared by integration tests.
pub mod capture;
pub mod e2e;
pub mod gateway;
pub mod inprocess;
pub mod rbac;
