//! What an analysis tick concluded: the outcome of each check, the verdict and the decision
//! records; pure.
use crate::api::canary::CheckRecord;

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The value is inside the range.
    Pass,
    /// The value is outside the range: a real regression.
    Fail,
    /// The query returned nothing (or NaN): usually no traffic.
    NoData,
    /// The query could not be run (transport, credentials, PromQL, unexpected shape).
    Error,
    /// Serin: fewer requests in the window than the metric's `minSamples` (or the judge could
    /// not conclude): too little evidence either way, handled like `NoData`.
    InsufficientSample,
}

impl Outcome {
    /// The wire spelling (`status.checks[].outcome`, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "Pass",
            Self::Fail => "Fail",
            Self::NoData => "NoData",
            Self::Error => "Error",
            Self::InsufficientSample => "InsufficientSample",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pass,
            Self::Fail,
            Self::NoData,
            Self::Error,
            Self::InsufficientSample,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    /// Whether the outcome says nothing about the canary's health.
    pub fn is_inconclusive(self) -> bool {
        matches!(self, Self::NoData | Self::Error | Self::InsufficientSample)
    }
}

/// What one analysis tick concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every check passed: the canary may advance.
    Pass,
    /// A check failed: counts as a failed check (Flagger's "Halt …" message).
    Fail(String),
    /// The result is inconclusive (no data, or the provider failed) and the policy says hold:
    /// neither fail nor advance.
    Hold(String),
}

/// The verdict plus one decision record per check.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisReport {
    /// The conclusion.
    pub verdict: Verdict,
    /// What each check saw.
    pub records: Vec<CheckRecord>,
}

impl AnalysisReport {
    /// A passing report with no records.
    pub fn pass() -> Self {
        Self {
            verdict: Verdict::Pass,
            records: vec![],
        }
    }
}
