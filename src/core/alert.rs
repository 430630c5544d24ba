//! Alert severities, as AlertProviders filter them; pure.

/// Alert severity, as AlertProviders filter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertSeverity {
    /// Informational.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}
