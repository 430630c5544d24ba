//! Manual requests (`serin.dev/request: <verb>@<revision>` on a Canary, written by
//! `kubectl serin`): their vocabulary, and how the state machine screens and acknowledges them;
//! pure.
//!
//! A request is handled when the annotation differs from `status.lastRequest.request` (or that
//! acknowledgement is still `Pending`), so it is applied exactly once whatever woke the
//! reconcile, and a restarted controller picks up a request it had not acknowledged yet. The
//! revision is `status.lastAppliedSpec`, the fingerprint of the target revision the current (or
//! last) run is about; a request about another revision is stale and ignored.

use super::*;
use crate::api::canary::RequestStatus;

/// The annotation a request is written in.
pub const REQUEST_ANNOTATION: &str = "serin.dev/request";

/// The field manager the plugin writes the annotation with.
pub const PLUGIN_FIELD_MANAGER: &str = "kubectl-serin";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Skip the rest of the analysis and promote the revision under analysis.
    Promote,
    /// Roll the run back now.
    Abort,
    /// Run a Failed revision again.
    Retry,
    /// Hold the run at its current step: no weight changes, no analysis.
    Pause,
    /// Continue a paused run.
    Resume,
}

impl Verb {
    /// Every verb, in the order the documentation lists them.
    pub const ALL: [Verb; 5] = [
        Verb::Promote,
        Verb::Abort,
        Verb::Retry,
        Verb::Pause,
        Verb::Resume,
    ];

    /// The verb as written in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Abort => "abort",
            Self::Retry => "retry",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }

    /// Parses a verb as written in the annotation (lower case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The phases the verb applies in, for messages.
    fn phases(self) -> &'static [CanaryPhase] {
        match self {
            Self::Promote | Self::Abort | Self::Pause | Self::Resume => {
                &[CanaryPhase::Progressing, CanaryPhase::WaitingPromotion]
            }
            Self::Retry => &[CanaryPhase::Failed],
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What is asked.
    pub verb: Verb,
    /// The revision it is about (`status.lastAppliedSpec` when it was written).
    pub revision: String,
}

impl Request {
    /// The annotation value, `<verb>@<revision>`.
    pub fn annotation(&self) -> String {
        format!("{}@{}", self.verb, self.revision)
    }
}

/// Why an annotation value is not a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The verb is not one of ours.
    #[error("unknown verb {0:?}: expected one of promote, abort, retry, pause, resume")]
    UnknownVerb(String),
    /// There is no `@<revision>`.
    #[error("no revision: expected <verb>@<revision>, e.g. promote@v1:3f2a…")]
    NoRevision,
}

/// Parses `<verb>@<revision>`.
pub fn parse(value: &str) -> Result<Request, ParseError> {
    let value = value.trim();
    let (verb, revision) = match value.split_once('@') {
        Some((v, r)) => (v.trim(), r.trim()),
        None => (value, ""),
    };
    let verb = Verb::parse(verb).ok_or_else(|| ParseError::UnknownVerb(verb.to_string()))?;
    if revision.is_empty() {
        return Err(ParseError::NoRevision);
    }
    Ok(Request {
        verb,
        revision: revision.to_string(),
    })
}

/// What the controller did with a request (`status.lastRequest.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Applied,
    /// Accepted; waits for the canary to be ready (a promotion).
    Pending,
    /// Not applied: stale, or not applicable in the current phase.
    Ignored,
    /// Not a request (unknown verb, no revision).
    Rejected,
}

impl Outcome {
    /// As written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "Applied",
            Self::Pending => "Pending",
            Self::Ignored => "Ignored",
            Self::Rejected => "Rejected",
        }
    }

    /// Parses the status value.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Applied, Self::Pending, Self::Ignored, Self::Rejected]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// The request annotation's value, when the status has not acknowledged it yet (a `Pending`
/// acknowledgement is not final).
pub fn unacknowledged<'a>(canary: &'a Canary, status: &CanaryStatus) -> Option<&'a str> {
    let raw = canary
        .metadata
        .annotations
        .as_ref()?
        .get(REQUEST_ANNOTATION)?
        .trim();
    if raw.is_empty() {
        return None;
    }
    let done = status
        .last_request
        .as_ref()
        .is_some_and(|l| l.request == raw && Outcome::parse(&l.outcome) != Some(Outcome::Pending));
    (!done).then_some(raw)
}

/// A screened request the phase handler still has to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Accepted {
    /// The annotation's value.
    pub raw: String,
    /// The request.
    pub request: Request,
}

impl Machine<'_> {
    /// Screens an unacknowledged request: a malformed one is rejected, a stale one or one that
    /// does not apply in this phase is ignored (each with a Warning Event), and nothing else
    /// changes; an applicable one is kept for the phase handler.
    pub(super) fn screen_request(&mut self) {
        let Some(raw) = unacknowledged(&self.o.canary, &self.status).map(str::to_string) else {
            return;
        };
        let request = match parse(&raw) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("not a request: {e}");
                self.event(
                    EventType::Warning,
                    format!(
                        "Rejected {REQUEST_ANNOTATION} {raw:?} on {}: {msg}",
                        self.id()
                    ),
                );
                self.acknowledge(&raw, Outcome::Rejected, msg);
                return;
            }
        };
        let current = self.target().fingerprint.clone();
        let applied = self.status.last_applied_spec.clone().unwrap_or_default();
        let why_not = if request.revision != current || request.revision != applied {
            Some(format!(
                "revision {} is no longer current (the canary's revision is {current})",
                request.revision
            ))
        } else if !self
            .phase()
            .is_some_and(|p| request.verb.phases().contains(&p))
        {
            let phases: Vec<&str> = request.verb.phases().iter().map(|p| p.as_str()).collect();
            Some(format!(
                "{} applies only in phase {}, and the canary is {}",
                request.verb,
                phases.join(" or "),
                self.phase().map_or("not initialised", CanaryPhase::as_str)
            ))
        } else if request.verb == Verb::Resume && self.status.paused_at.is_none() {
            Some("the run is not paused".to_string())
        } else {
            None
        };
        if let Some(why) = why_not {
            self.event(
                EventType::Warning,
                format!(
                    "Ignored {REQUEST_ANNOTATION} {raw:?} on {}: {why}",
                    self.id()
                ),
            );
            self.acknowledge(&raw, Outcome::Ignored, why);
            return;
        }
        if request.verb == Verb::Pause && self.status.paused_at.is_some() {
            self.acknowledge(&raw, Outcome::Applied, "the run was already paused".into());
            return;
        }
        self.request = Some(Accepted { raw, request });
    }

    /// The accepted request, if it asks for `verb`.
    pub(super) fn requested(&self, verb: Verb) -> Option<String> {
        self.request
            .as_ref()
            .filter(|a| a.request.verb == verb)
            .map(|a| a.raw.clone())
    }

    /// Writes the acknowledgement; a repeated `Pending` keeps its first time, so waiting does
    /// not rewrite the status.
    pub(super) fn acknowledge(&mut self, raw: &str, outcome: Outcome, message: String) {
        let same_pending = outcome == Outcome::Pending
            && self
                .status
                .last_request
                .as_ref()
                .is_some_and(|l| l.request == raw && l.outcome == outcome.as_str());
        if same_pending {
            if let Some(l) = self.status.last_request.as_mut() {
                l.message = Some(message);
            }
            return;
        }
        self.status.last_request = Some(RequestStatus {
            request: raw.to_string(),
            observed_at: Some(to_time(self.now)),
            outcome: outcome.as_str().to_string(),
            message: Some(message),
        });
    }

    /// Abort, pause and resume, for a run in Progressing or WaitingPromotion; then, while the
    /// run is paused, holds it. `Some` completes the plan.
    pub(super) fn manual_control(&mut self) -> Option<Flow> {
        if let Some(raw) = self.requested(Verb::Abort) {
            self.request = None;
            let weight = self.status.canary_weight;
            self.acknowledge(
                &raw,
                Outcome::Applied,
                format!("rolled back from canary weight {weight}"),
            );
            return Some(self.rollback(super::promotion::Rollback::Manual));
        }
        let mut just_paused = false;
        if let Some(raw) = self.requested(Verb::Pause) {
            self.request = None;
            just_paused = true;
            let weight = self.status.canary_weight;
            self.status.paused_at = Some(to_time(self.now));
            self.event(
                EventType::Normal,
                format!("Paused {} at canary weight {weight}", self.id()),
            );
            self.acknowledge(
                &raw,
                Outcome::Applied,
                format!("paused at canary weight {weight}"),
            );
        }
        if let Some(raw) = self.requested(Verb::Resume) {
            self.request = None;
            if let Some(since) = self.status.paused_at.take().map(|t| from_time(&t)) {
                // The time spent paused does not count against the progress deadline.
                let paused = self.now - since;
                for t in [
                    &mut self.status.run_start_time,
                    &mut self.status.hold_start_time,
                ]
                .into_iter()
                .flatten()
                {
                    *t = to_time(from_time(t) + paused);
                }
            }
            self.event(EventType::Normal, format!("Resumed {}", self.id()));
            self.acknowledge(&raw, Outcome::Applied, "resumed".into());
        }
        if self.status.paused_at.is_some() {
            if just_paused {
                // The "Paused …" event above announces it.
                self.wait_announced(Wait::Paused);
                return Some(Ok(Requeue::AwaitChange));
            }
            return Some(self.wait(Wait::Paused, Requeue::AwaitChange));
        }
        None
    }

    /// A promotion request the canary is not ready for yet: acknowledged as `Pending`.
    pub(super) fn promotion_pending(&mut self, why: &str) {
        let Some(raw) = self.requested(Verb::Promote) else {
            return;
        };
        let first = !self
            .status
            .last_request
            .as_ref()
            .is_some_and(|l| l.request == raw && l.outcome == Outcome::Pending.as_str());
        if first {
            self.event(
                EventType::Normal,
                format!(
                    "Promotion of {} requested; waiting for the canary to be ready",
                    self.id()
                ),
            );
        }
        self.acknowledge(
            &raw,
            Outcome::Pending,
            format!("waiting for the canary to be ready: {why}"),
        );
    }

    /// A promotion request for a ready canary: skip the rest of the analysis (and the
    /// confirm-promotion gate: the request is the confirmation) and promote.
    pub(super) fn manual_promotion(&mut self) -> Option<Flow> {
        let raw = self.requested(Verb::Promote)?;
        self.request = None;
        self.event(
            EventType::Normal,
            format!(
                "Promotion of {} requested: skipping the rest of the analysis",
                self.id()
            ),
        );
        self.acknowledge(
            &raw,
            Outcome::Applied,
            format!("promoting from canary weight {}", self.status.canary_weight),
        );
        Some(self.promote())
    }

    /// A retry request for a Failed revision: run it again (through the confirm-rollout gate).
    pub(super) fn manual_retry(&mut self) -> Option<Flow> {
        let raw = self.requested(Verb::Retry)?;
        self.request = None;
        self.acknowledge(&raw, Outcome::Applied, "running the revision again".into());
        Some(match self.gate(super::gates::Gate::ConfirmRollout) {
            Err(question) => Err(question),
            Ok(false) => {
                self.status.last_analysis_time = Some(to_time(self.now));
                Ok(self.interval())
            }
            Ok(true) => self.start_run("Retry requested! Scaling up"),
        })
    }
}
