//! The traffic split a router reads and writes, and the session-affinity cookie of a run; pure.
use chrono::{DateTime, Utc};

/// Live traffic split read back from the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    /// Weight of the primary.
    pub primary: i32,
    /// Weight of the canary.
    pub canary: i32,
    /// Whether traffic is mirrored to the canary.
    pub mirrored: bool,
}

impl Routes {
    /// A split without mirroring: `primary` % to the primary, `canary` % to the canary.
    pub const fn split(primary: i32, canary: i32) -> Self {
        Self {
            primary,
            canary,
            mirrored: false,
        }
    }
}

/// A session-affinity cookie `<name>=<value>` for the run of Canary `uid` that started at
/// `run_start`. Flagger draws the value at random; deriving it keeps `plan` pure and gives every
/// run (and every cookie name) its own value.
pub fn session_cookie(name: &str, uid: &str, run_start: DateTime<Utc>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{uid}/{}/{name}", run_start.timestamp_micros()));
    let value: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{name}={value}")
}
