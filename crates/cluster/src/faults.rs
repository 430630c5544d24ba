//! Fault injection for reliability tests and benchmarks: error rates, latency, cut or expired
//! watches, and a paused server; set through the Rust API or `/admin/faults` (no I/O itself).
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One fault rule; empty matchers match every request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fault {
    /// Only requests with this verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`).
    pub verb: Option<String>,
    /// Only requests for this resource (plural, optionally `plural/subresource`).
    pub resource: Option<String>,
    /// Fraction of matching requests (0.0 to 1.0) answered with `error_code`.
    pub error_rate: f64,
    /// The injected error code: 500, 429 or 409.
    pub error_code: u16,
    /// Latency added before answering.
    pub latency_ms: u64,
    /// Watch streams end after this many seconds.
    pub close_watch_after_secs: Option<u64>,
    /// Watches get an immediate 410 Gone ERROR event.
    pub watch_gone: bool,
}

impl Fault {
    fn matches(&self, verb: &str, resource: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| r == resource || resource.split('/').next() == Some(r))
    }
}

/// What the faults in force do to one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effect {
    /// Answer with this error code instead.
    pub error: Option<u16>,
    /// Wait this long first.
    pub latency: Duration,
    /// End a watch after this long.
    pub close_watch_after: Option<Duration>,
    /// Answer a watch with 410 Gone.
    pub watch_gone: bool,
}

/// The faults in force, shared by the server and its handle.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    paused: watch::Sender<bool>,
    injected: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(vec![]),
            paused: watch::channel(false).0,
            injected: AtomicU64::new(0),
        }
    }
}

impl Faults {
    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a rule.
    pub fn add(&self, f: Fault) {
        self.rules().push(f);
    }

    /// Replaces all rules.
    pub fn set(&self, rules: Vec<Fault>) {
        *self.rules() = rules;
    }

    /// The rules in force.
    pub fn list(&self) -> Vec<Fault> {
        self.rules().clone()
    }

    /// Removes every rule and resumes a paused server.
    pub fn clear(&self) {
        self.rules().clear();
        self.resume();
    }

    /// Stops answering: requests and watch streams hang until [`Faults::resume`].
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Answers again.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Whether the server is paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Waits while the server is paused.
    pub async fn wait_resumed(&self) {
        let mut rx = self.paused.subscribe();
        // An error means the sender is gone, i.e. the server is shutting down: stop waiting.
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// How many requests [`Faults::effect`] has answered with an injected error so far.
    pub fn injected_errors(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The combined effect on a request; `roll` is a uniform random number in [0, 1). Counts the
    /// injected errors.
    pub fn effect(&self, verb: &str, resource: &str, roll: f64) -> Effect {
        let mut e = Effect::default();
        for f in self.rules().iter().filter(|f| f.matches(verb, resource)) {
            if e.error.is_none() && f.error_rate > 0.0 && roll < f.error_rate {
                e.error = Some(if f.error_code == 0 { 500 } else { f.error_code });
            }
            e.latency += Duration::from_millis(f.latency_ms);
            if let Some(s) = f.close_watch_after_secs {
                e.close_watch_after = Some(Duration::from_secs(s));
            }
            e.watch_gone |= f.watch_gone;
        }
        if e.error.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_verb_and_resource() {
        let f = Faults::default();
        f.add(Fault {
            verb: Some("list".into()),
            resource: Some("deployments".into()),
            error_rate: 1.0,
            error_code: 429,
            ..Default::default()
        });
        f.add(Fault {
            latency_ms: 5,
            ..Default::default()
        });
        assert_eq!(f.effect("list", "deployments", 0.5).error, Some(429));
        assert_eq!(f.effect("get", "deployments", 0.5).error, None);
        assert_eq!(f.effect("list", "deployments/status", 0.5).error, Some(429));
        assert_eq!(
            f.effect("get", "pods", 0.1).latency,
            Duration::from_millis(5)
        );
    }

    #[test]
    fn error_rate_applies_to_that_fraction_of_rolls() {
        let f = Faults::default();
        f.add(Fault {
            error_rate: 0.25,
            ..Default::default()
        });
        assert_eq!(f.effect("get", "pods", 0.2).error, Some(500));
        assert_eq!(f.effect("get", "pods", 0.3).error, None);
        assert_eq!(f.injected_errors(), 1);
    }
}
