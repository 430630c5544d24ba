//! How a fingerprint in `lastAppliedSpec` is told apart: Serin's carry a version prefix, anything
//! else is a Flagger hash found on adoption; pure.

/// Prefix of Serin fingerprints; anything else in `lastAppliedSpec` is a Flagger hash.
pub const FINGERPRINT_PREFIX: &str = "v1:";

/// Whether `s` is a Serin fingerprint (as opposed to a Flagger hash found on adoption).
pub fn is_serin_fingerprint(s: &str) -> bool {
    s.starts_with(FINGERPRINT_PREFIX)
}

/// The fingerprint of a Knative revision: its name (Knative names every template change anew).
pub fn revision_fingerprint(revision: &str) -> String {
    format!("{FINGERPRINT_PREFIX}revision:{revision}")
}
