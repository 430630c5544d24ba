//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it:
//! the pure decision ("given the observed Lease, my identity and my clock: create, acquire, renew,
//! wait or lost") and the loop around it that reads and writes the Lease (network I/O).
//!
//! Expiry is judged on the local monotonic clock only (how long a record has been seen
//! unchanged), never by comparing `renewTime` with the local wall clock, so clock skew between
//! nodes does not matter. Every write carries the resourceVersion it was decided on, so two
//! candidates can never both win: the second gets 409 Conflict.
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::time::Instant;

/// The Lease Serin's controllers elect a leader on (Flagger uses its own name, so both can run
/// side by side).
pub const LEASE_NAME: &str = "serin-leader-election";

/// Leader-election errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The timings cannot work together.
    #[error("invalid leader election timings: {0}")]
    Timing(String),
    /// Releasing the Lease failed (the others take over once it expires).
    #[error("cannot release the lease: {0}")]
    Release(#[source] kube::Error),
    /// Releasing the Lease took too long.
    #[error("releasing the lease timed out")]
    ReleaseTimeout,
}

/// How leadership is kept and taken over (client-go's `LeaseDuration`, `RenewDeadline`,
/// `RetryPeriod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long candidates wait, after they last saw the Lease change, before taking it over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates look at the Lease.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// 10s / 7s / 2s: a standby takes over within about 12 s of a leader's death (Flagger's
    /// 60s / 15s / 5s would take up to 65 s).
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(7),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Checks client-go's constraints: lease duration > renew deadline > retry period > 0, and
    /// a lease duration of whole seconds (it is written as `leaseDurationSeconds`).
    pub fn validate(&self) -> Result<(), Error> {
        let Self {
            lease_duration: l,
            renew_deadline: r,
            retry_period: p,
        } = *self;
        if p.is_zero() {
            return Err(Error::Timing("the retry period must be positive".into()));
        }
        if r <= p {
            return Err(Error::Timing(format!(
                "the renew deadline ({r:?}) must be longer than the retry period ({p:?})"
            )));
        }
        if l <= r {
            return Err(Error::Timing(format!(
                "the lease duration ({l:?}) must be longer than the renew deadline ({r:?})"
            )));
        }
        if l.subsec_nanos() != 0 {
            return Err(Error::Timing(format!(
                "the lease duration ({l:?}) must be a whole number of seconds"
            )));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The part of a Lease that elections look at; a change of any field restarts the expiry clock
/// (client-go compares the whole record too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Who holds it; `None` or empty when nobody does.
    pub holder: Option<String>,
    /// How long the holder promised the record stays valid without renewal.
    pub lease_duration: Option<Duration>,
    /// When the holder acquired it (as written).
    pub acquire_time: Option<String>,
    /// When the holder last renewed it (as written).
    pub renew_time: Option<String>,
    /// How many times it changed hands.
    pub transitions: i32,
}

impl Record {
    /// The election record of a Lease.
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        let time = |t: Option<MicroTime>| t.map(|t| t.0.to_string());
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            lease_duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            acquire_time: time(spec.acquire_time),
            renew_time: time(spec.renew_time),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What a look at the Lease found.
#[derive(Debug, Clone, Copy)]
pub enum Observation<'a> {
    /// The Lease does not exist.
    Missing,
    /// The Lease, with its record.
    Found(&'a Record),
    /// The API server could not be asked (or did not answer in time).
    Unreachable,
}

/// Everything one decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// What the last look found.
    pub observation: Observation<'a>,
    /// This process's holder identity.
    pub identity: &'a str,
    /// Whether this process currently leads.
    pub leading: bool,
    /// How long the observed record has been seen unchanged, by the local clock.
    pub unchanged_for: Duration,
    /// While leading: time since the last successful renewal was sent.
    pub since_renewed: Duration,
    /// The timings.
    pub timing: Timing,
}

/// Why leadership was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// No renewal succeeded within the renew deadline.
    RenewDeadline,
    /// Another candidate holds the Lease.
    TakenBy(String),
    /// Someone cleared the holder or deleted the Lease.
    Removed,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RenewDeadline => write!(f, "no renewal succeeded within the renew deadline"),
            Self::TakenBy(h) => write!(f, "the lease is held by {h}"),
            Self::Removed => write!(f, "the lease was cleared or deleted by someone else"),
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create the Lease, holding it.
    Create,
    /// Take the Lease over (it is free, expired, or already ours).
    Acquire,
    /// Renew our Lease.
    Renew,
    /// Look again after this long.
    Wait(Duration),
    /// Stop leading at once.
    Lost(Loss),
}

/// The election decision (pure).
pub fn decide(i: &Input) -> Decision {
    let t = i.timing;
    if i.leading {
        if i.since_renewed >= t.renew_deadline {
            return Decision::Lost(Loss::RenewDeadline);
        }
        return match i.observation {
            // A Lease that vanished under us may be recreated by a candidate at any moment:
            // recreating it too could make two leaders, so step down.
            Observation::Missing => Decision::Lost(Loss::Removed),
            Observation::Found(r) => match r.holder.as_deref() {
                Some(h) if h == i.identity => Decision::Renew,
                Some(h) => Decision::Lost(Loss::TakenBy(h.to_string())),
                None => Decision::Lost(Loss::Removed),
            },
            // Retry until the deadline, but never sleep past it.
            Observation::Unreachable => Decision::Wait(
                t.retry_period
                    .min(t.renew_deadline.saturating_sub(i.since_renewed)),
            ),
        };
    }
    match i.observation {
        Observation::Missing => Decision::Create,
        Observation::Unreachable => Decision::Wait(t.retry_period),
        Observation::Found(r) => match r.holder.as_deref() {
            None => Decision::Acquire,
            // Ours already (an acquisition whose answer we did not get): take it up again.
            Some(h) if h == i.identity => Decision::Acquire,
            Some(_) => {
                let valid_for = r.lease_duration.unwrap_or(t.lease_duration);
                if i.unchanged_for >= valid_for {
                    Decision::Acquire
                } else {
                    // Wake exactly at expiry when that comes before the next regular look.
                    Decision::Wait(
                        t.retry_period
                            .min(valid_for.saturating_sub(i.unchanged_for)),
                    )
                }
            }
        },
    }
}

/// This process's holder identity: `POD_NAME` (from the downward API) or the host name, plus the
/// process id and a random suffix so that two processes on one host never share it.
pub fn identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    // RandomState is seeded randomly per process; its hash of nothing is a random number.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    identity_from(
        std::env::var("POD_NAME").ok(),
        host,
        std::process::id(),
        random,
    )
}

/// [`identity`] from its inputs (pure).
pub fn identity_from(
    pod_name: Option<String>,
    hostname: Option<String>,
    pid: u32,
    random: u64,
) -> String {
    let base = [pod_name, hostname]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "serin".into());
    format!("{base}_{pid}_{:08x}", random as u32)
}

/// The namespace of the Lease: the flag, else `POD_NAMESPACE`, else the watched namespace, else
/// `kube-system` (Flagger's default).
pub fn namespace_from(
    flag: Option<String>,
    pod_namespace: Option<String>,
    watched: Option<String>,
) -> String {
    [flag, pod_namespace, watched]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "kube-system".into())
}

/// One candidate: reads and writes the Lease and keeps what it last saw.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    identity: String,
    timing: Timing,
    /// The Lease as last read or written, and since when its record has looked the same.
    seen: Option<(Lease, Record, Instant)>,
    leading: bool,
    /// When the last successful renewal (or the acquisition) was sent.
    renewed_at: Instant,
    /// Shut the moment leadership is in doubt or lost.
    fence: Option<super::fence::Fence>,
}

impl Elector {
    /// A candidate for the Lease [`LEASE_NAME`] in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        identity: String,
        timing: Timing,
    ) -> Result<Self, Error> {
        timing.validate()?;
        Ok(Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            identity,
            timing,
            seen: None,
            leading: false,
            renewed_at: Instant::now(),
            fence: None,
        })
    }

    /// Shuts `fence` the moment leadership is lost, or while a conflicting renewal is checked
    /// (reopened if the Lease turns out to be still ours), so no write leaves after the loss
    /// is detected.
    pub fn with_fence(mut self, fence: super::fence::Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this candidate leads.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// Reads the Lease (within `limit`) and remembers when its record last changed.
    async fn observe(&mut self, limit: Duration) -> Result<Option<Record>, ()> {
        let got = tokio::time::timeout(limit, self.api.get_opt(LEASE_NAME)).await;
        match got {
            Ok(Ok(Some(lease))) => {
                self.remember(lease);
                Ok(self.seen.as_ref().map(|(_, r, _)| r.clone()))
            }
            Ok(Ok(None)) => {
                self.seen = None;
                Ok(None)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = LEASE_NAME, namespace = self.namespace, "cannot read the leader election lease");
                Err(())
            }
            Err(_) => {
                tracing::warn!(
                    lease = LEASE_NAME,
                    namespace = self.namespace,
                    "reading the leader election lease timed out"
                );
                Err(())
            }
        }
    }

    fn remember(&mut self, lease: Lease) {
        let record = Record::of(&lease);
        let since = match &self.seen {
            Some((_, old, at)) if *old == record => *at,
            _ => Instant::now(),
        };
        self.seen = Some((lease, record, since));
    }

    fn decide_on(&self, observed: &Result<Option<Record>, ()>) -> Decision {
        let observation = match observed {
            Ok(None) => Observation::Missing,
            Ok(Some(r)) => Observation::Found(r),
            Err(()) => Observation::Unreachable,
        };
        decide(&Input {
            observation,
            identity: &self.identity,
            leading: self.leading,
            unchanged_for: self
                .seen
                .as_ref()
                .map(|(_, _, at)| at.elapsed())
                .unwrap_or_default(),
            since_renewed: self.renewed_at.elapsed(),
            timing: self.timing,
        })
    }

    /// The Lease we would write to hold it now.
    fn held(&self, acquiring: bool) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let (meta, old) = match &self.seen {
            Some((lease, record, _)) => (lease.metadata.clone(), Some(record)),
            None => (
                ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                None,
            ),
        };
        let old_spec = self
            .seen
            .as_ref()
            .and_then(|(l, _, _)| l.spec.clone())
            .unwrap_or_default();
        let transitions = old.map(|r| r.transitions).unwrap_or(0);
        let changes_hands = old.is_some_and(|r| r.holder.as_deref() != Some(&self.identity));
        Lease {
            metadata: meta,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timing.lease_duration_seconds()),
                acquire_time: if acquiring {
                    Some(now.clone())
                } else {
                    old_spec.acquire_time.or(Some(now.clone()))
                },
                renew_time: Some(now),
                lease_transitions: Some(transitions + i32::from(changes_hands)),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Waits until this candidate holds the Lease. Only the acquisition itself writes; while
    /// another holds a valid Lease, the candidate only reads it every retry period.
    pub async fn acquire(&mut self) {
        tracing::info!(
            identity = self.identity,
            lease = LEASE_NAME,
            namespace = self.namespace,
            "waiting to become the leader"
        );
        let mut last_holder: Option<String> = None;
        loop {
            let observed = self.observe(self.timing.retry_period).await;
            if let Ok(Some(r)) = &observed
                && r.holder != last_holder
            {
                if let Some(h) = &r.holder {
                    tracing::info!(holder = h, "the lease is held by another controller");
                }
                last_holder = r.holder.clone();
            }
            let decision = self.decide_on(&observed);
            let sent = Instant::now();
            let written = match decision {
                Decision::Wait(d) => {
                    tokio::time::sleep(d).await;
                    continue;
                }
                Decision::Create => {
                    let lease = self.held(true);
                    self.api.create(&PostParams::default(), &lease).await
                }
                Decision::Acquire => {
                    let lease = self.held(true);
                    self.api
                        .replace(LEASE_NAME, &PostParams::default(), &lease)
                        .await
                }
                Decision::Renew | Decision::Lost(_) => {
                    // Not reachable while standing by; look again.
                    tokio::time::sleep(self.timing.retry_period).await;
                    continue;
                }
            };
            match written {
                Ok(lease) => {
                    self.remember(lease);
                    self.leading = true;
                    self.renewed_at = sent;
                    tracing::info!(
                        identity = self.identity,
                        lease = LEASE_NAME,
                        namespace = self.namespace,
                        "leadership acquired"
                    );
                    return;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Another candidate wrote first; look again.
                    tracing::debug!("lost the race for the lease: {}", s.message);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot acquire the lease");
                    tokio::time::sleep(self.timing.retry_period).await;
                }
            }
        }
    }

    /// Renews the Lease every retry period while leading; returns as soon as leadership is
    /// lost. Each renewal is one conditional update (no read); a conflict means someone else
    /// wrote, and the Lease is read to find out who.
    pub async fn keep_leading(&mut self) -> Loss {
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let mut observed = Ok(self.seen.as_ref().map(|(_, r, _)| r.clone()));
            loop {
                match self.decide_on(&observed) {
                    Decision::Lost(loss) => return self.lose(loss),
                    Decision::Wait(d) => {
                        tokio::time::sleep(d).await;
                        observed = Ok(self.seen.as_ref().map(|(_, r, _)| r.clone()));
                    }
                    Decision::Renew => {
                        let left = self
                            .timing
                            .renew_deadline
                            .saturating_sub(self.renewed_at.elapsed());
                        let lease = self.held(false);
                        let sent = Instant::now();
                        let pp = PostParams::default();
                        let put = self.api.replace(LEASE_NAME, &pp, &lease);
                        match tokio::time::timeout(left, put).await {
                            Ok(Ok(lease)) => {
                                self.remember(lease);
                                self.renewed_at = sent;
                                if let Some(f) = self.fence.as_ref().filter(|f| !f.is_open()) {
                                    tracing::info!("the lease is still ours: writing again");
                                    f.open();
                                }
                                tracing::trace!("lease renewed");
                                break;
                            }
                            Ok(Err(kube::Error::Api(s))) if s.code == 409 || s.code == 404 => {
                                // Someone else wrote the Lease: stop writing until we know.
                                if let Some(f) = &self.fence {
                                    f.shut();
                                }
                                tracing::warn!("renewing the lease: {}", s.message);
                                let left = self
                                    .timing
                                    .renew_deadline
                                    .saturating_sub(self.renewed_at.elapsed());
                                observed = self.observe(left.max(Duration::from_millis(1))).await;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "cannot renew the lease");
                                observed = Err(());
                            }
                            Err(_) => observed = Err(()),
                        }
                    }
                    Decision::Create | Decision::Acquire => {
                        return self.lose(Loss::Removed);
                    }
                }
            }
        }
    }

    fn lose(&mut self, loss: Loss) -> Loss {
        if let Some(f) = &self.fence {
            f.shut();
        }
        self.leading = false;
        tracing::error!(identity = self.identity, reason = %loss, "leadership lost");
        loss
    }

    /// Gives the Lease up at once, as client-go's `ReleaseOnCancel` does: the holder is cleared
    /// and the duration set to 1 s, so a candidate takes over on its next look. Does nothing
    /// unless leading.
    pub async fn release(&mut self) -> Result<(), Error> {
        if !self.leading {
            return Ok(());
        }
        self.leading = false;
        // A renewal abandoned by the shutdown may have landed in between: on a conflict, read
        // the Lease again and release it once more if it is still ours.
        for attempt in 0..2 {
            let Some((lease, record, _)) = &self.seen else {
                return Ok(());
            };
            if record.holder.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let released = Lease {
                metadata: lease.metadata.clone(),
                spec: Some(LeaseSpec {
                    holder_identity: Some(String::new()),
                    lease_duration_seconds: Some(1),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(record.transitions),
                    ..LeaseSpec::default()
                }),
            };
            let pp = PostParams::default();
            let put = self.api.replace(LEASE_NAME, &pp, &released);
            match tokio::time::timeout(self.timing.retry_period, put).await {
                Ok(Ok(_)) => {
                    tracing::info!(identity = self.identity, "leadership released");
                    return Ok(());
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 409 && attempt == 0 => {
                    if self.observe(self.timing.retry_period).await.is_err() {
                        return Err(Error::Release(kube::Error::Api(s)));
                    }
                }
                Ok(Err(e)) => return Err(Error::Release(e)),
                Err(_) => return Err(Error::ReleaseTimeout),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn held_by(h: &str) -> Record {
        Record {
            holder: Some(h.into()),
            lease_duration: Some(secs(10)),
            ..Record::default()
        }
    }

    fn input(
        observation: Observation<'_>,
        leading: bool,
        unchanged_for: u64,
        since_renewed: u64,
    ) -> Input<'_> {
        Input {
            observation,
            identity: ME,
            leading,
            unchanged_for: secs(unchanged_for),
            since_renewed: secs(since_renewed),
            timing: Timing::default(),
        }
    }

    #[test]
    fn a_standby_creates_a_missing_lease_and_takes_a_free_or_expired_one() {
        let other = held_by("other");
        let free = Record {
            holder: None,
            ..held_by("")
        };
        let mine = held_by(ME);
        let short = Record {
            lease_duration: Some(secs(1)),
            ..held_by("other")
        };
        let no_duration = Record {
            lease_duration: None,
            ..held_by("other")
        };
        let table = [
            (Observation::Missing, 0, Decision::Create),
            (Observation::Found(&free), 0, Decision::Acquire),
            (Observation::Found(&mine), 0, Decision::Acquire),
            (Observation::Found(&other), 10, Decision::Acquire),
            (Observation::Found(&other), 11, Decision::Acquire),
            (Observation::Found(&other), 0, Decision::Wait(secs(2))),
            // Wakes exactly at expiry when that is sooner than the retry period.
            (Observation::Found(&other), 9, Decision::Wait(secs(1))),
            // A released lease (duration 1 s) with a holder left in it expires after 1 s.
            (Observation::Found(&short), 1, Decision::Acquire),
            // No duration in the record: our own lease duration applies.
            (Observation::Found(&no_duration), 9, Decision::Wait(secs(1))),
            (Observation::Found(&no_duration), 10, Decision::Acquire),
            (Observation::Unreachable, 30, Decision::Wait(secs(2))),
        ];
        for (obs, unchanged, want) in table {
            assert_eq!(
                decide(&input(obs, false, unchanged, 0)),
                want,
                "{obs:?} unchanged for {unchanged}s"
            );
        }
    }

    #[test]
    fn a_leader_renews_until_the_deadline_and_steps_down_when_the_lease_is_not_its_own() {
        let mine = held_by(ME);
        let other = held_by("other");
        let cleared = Record {
            holder: Some(String::new()),
            ..held_by("")
        };
        let cleared = Record::of(&Lease {
            spec: Some(LeaseSpec {
                holder_identity: cleared.holder,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        });
        let table = [
            (Observation::Found(&mine), 2, Decision::Renew),
            (Observation::Found(&mine), 6, Decision::Renew),
            (
                Observation::Found(&mine),
                7,
                Decision::Lost(Loss::RenewDeadline),
            ),
            (
                Observation::Unreachable,
                8,
                Decision::Lost(Loss::RenewDeadline),
            ),
            (Observation::Unreachable, 2, Decision::Wait(secs(2))),
            // Never sleeps past the deadline.
            (Observation::Unreachable, 6, Decision::Wait(secs(1))),
            (
                Observation::Found(&other),
                1,
                Decision::Lost(Loss::TakenBy("other".into())),
            ),
            (
                Observation::Found(&cleared),
                1,
                Decision::Lost(Loss::Removed),
            ),
            (Observation::Missing, 1, Decision::Lost(Loss::Removed)),
        ];
        for (obs, since, want) in table {
            assert_eq!(
                decide(&input(obs, true, 0, since)),
                want,
                "{obs:?} {since}s after renewal"
            );
        }
    }

    #[test]
    fn the_leader_gives_up_before_any_standby_may_take_over() {
        // Leader: lost at renew_deadline after its last renewal was sent. Standby: takes over
        // at lease_duration after it saw that renewal, which is no earlier than it was sent.
        let t = Timing::default();
        for since in 0..=20u64 {
            let leader = decide(&Input {
                observation: Observation::Unreachable,
                identity: ME,
                leading: true,
                unchanged_for: secs(0),
                since_renewed: secs(since),
                timing: t,
            });
            let other_me = held_by(ME);
            let standby = decide(&Input {
                observation: Observation::Found(&other_me),
                identity: "standby",
                leading: false,
                unchanged_for: secs(since),
                since_renewed: secs(0),
                timing: t,
            });
            if standby == Decision::Acquire {
                assert_eq!(
                    leader,
                    Decision::Lost(Loss::RenewDeadline),
                    "at {since}s both would lead"
                );
            }
        }
    }

    #[test]
    fn timings_must_nest_like_client_go() {
        let ok = Timing::default();
        assert!(ok.validate().is_ok());
        let bad = [
            Timing {
                retry_period: Duration::ZERO,
                ..ok
            },
            Timing {
                renew_deadline: secs(2),
                ..ok
            },
            Timing {
                lease_duration: secs(7),
                ..ok
            },
            Timing {
                lease_duration: Duration::from_millis(10_500),
                ..ok
            },
        ];
        for t in bad {
            assert!(t.validate().is_err(), "{t:?}");
        }
    }

    #[test]
    fn identities_differ_per_process_and_prefer_the_pod_name() {
        let a = identity_from(Some("serin-7d9f".into()), Some("node-1".into()), 42, 0xabc);
        assert_eq!(a, "serin-7d9f_42_00000abc");
        let b = identity_from(None, Some("node-1\n".into()), 42, 0xabd);
        assert_eq!(b, "node-1_42_00000abd");
        assert_ne!(
            identity_from(None, Some("h".into()), 1, 1),
            identity_from(None, Some("h".into()), 2, 1)
        );
        assert_eq!(
            identity_from(Some(String::new()), None, 1, 1),
            "serin_1_00000001"
        );
    }

    #[test]
    fn the_lease_namespace_prefers_the_flag_then_the_pod_then_the_watched_namespace() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(namespace_from(s("a"), s("b"), s("c")), "a");
        assert_eq!(namespace_from(None, s("b"), s("c")), "b");
        assert_eq!(namespace_from(None, None, s("c")), "c");
        assert_eq!(namespace_from(None, None, None), "kube-system");
    }

    #[test]
    fn a_record_treats_an_empty_holder_as_none() {
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(1),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        let r = Record::of(&lease);
        assert_eq!(r.holder, None);
        assert_eq!(r.lease_duration, Some(secs(1)));
        assert_eq!(r.transitions, 3);
    }
}
