//! Canary fixtures for router tests; pure.
use serde_json::Value;

use crate::api::Canary;
use crate::core::Routes;

/// The podinfo test Canary (`Canary::test()`, uid `uid-1`) of `provider`, with `extra` merged
/// into its spec (one level deep for `service` and `analysis`).
pub fn canary(provider: &str, extra: Value) -> Canary {
    Canary::test()
        .uid("uid-1")
        .provider(provider)
        .spec(extra)
        .build()
}

/// `canary` doing A/B testing: three iterations over the `analysis.match` conditions
/// `matches`, no traffic steps.
pub fn ab_canary(provider: &str, matches: Value) -> Canary {
    canary(
        provider,
        serde_json::json!({"analysis": {"stepWeight": null, "iterations": 3, "match": matches}}),
    )
}

/// `canary` with a status.
pub fn with_status(mut c: Canary, status: Value) -> Canary {
    c.status = Some(serde_json::from_value(status).expect("fixture status parses"));
    c
}

/// A split without mirroring: `primary` % to the primary, `canary` % to the canary.
pub const fn split(primary: i32, canary: i32) -> Routes {
    Routes::split(primary, canary)
}
