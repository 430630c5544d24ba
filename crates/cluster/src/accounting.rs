//! Request accounting: every request counted by verb, resource, namespace, name and User-Agent,
//! plus a timestamped log of write requests, so tests can see how many API calls a client makes
//! and who wrote what when (no I/O).
use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// What a request was about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestKey {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection
    /// (discovery and other non-resource paths count as `get`).
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// Plural resource, with `/subresource` when there is one; empty for non-resource paths.
    pub resource: String,
    /// Namespace, empty when none.
    pub namespace: String,
    /// Object name, or the path for non-resource requests.
    pub name: String,
    /// The client's User-Agent header.
    pub user_agent: String,
}

/// One row of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCount {
    /// What the requests were about.
    #[serde(flatten)]
    pub key: RequestKey,
    /// How many there were.
    pub count: u64,
}

/// One write request (create, update, patch, delete, deletecollection) as answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRecord {
    /// Order of answering, from 0 since start (not reset), so that ties in `at` are ordered.
    pub seq: u64,
    /// When the answer was ready (the write is applied by then, or refused).
    pub at: chrono::DateTime<chrono::Utc>,
    /// What the request was about; `user_agent` tells which client wrote.
    #[serde(flatten)]
    pub key: RequestKey,
    /// The HTTP status code of the answer (2xx: the write happened).
    pub code: u16,
}

impl WriteRecord {
    /// True when the server applied the write.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Whether a verb writes.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// How many write records are kept; older ones are dropped first.
pub const WRITE_LOG_CAPACITY: usize = 100_000;

/// Counters of requests since start or the last reset, and the write log.
#[derive(Debug, Default)]
pub struct Requests {
    counts: Mutex<BTreeMap<RequestKey, u64>>,
    writes: Mutex<(u64, std::collections::VecDeque<WriteRecord>)>,
}

impl Requests {
    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<RequestKey, u64>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one request.
    pub fn record(&self, key: RequestKey) {
        *self.counts().entry(key).or_insert(0) += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Vec<RequestCount> {
        self.counts()
            .iter()
            .map(|(k, c)| RequestCount {
                key: k.clone(),
                count: *c,
            })
            .collect()
    }

    /// Total number of requests so far.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    fn write_log(
        &self,
    ) -> std::sync::MutexGuard<'_, (u64, std::collections::VecDeque<WriteRecord>)> {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs one answered write request with its status code.
    pub fn record_write(&self, key: RequestKey, code: u16) {
        let mut log = self.write_log();
        let seq = log.0;
        log.0 += 1;
        if log.1.len() >= WRITE_LOG_CAPACITY {
            log.1.pop_front();
        }
        log.1.push_back(WriteRecord {
            seq,
            at: chrono::Utc::now(),
            key,
            code,
        });
    }

    /// The write log, oldest first.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.write_log().1.iter().cloned().collect()
    }

    /// Forgets all counts and the write log.
    pub fn reset(&self) {
        self.counts().clear();
        self.write_log().1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verb: &str, ua: &str) -> RequestKey {
        RequestKey {
            verb: verb.into(),
            group: "coordination.k8s.io".into(),
            resource: "leases".into(),
            namespace: "kube-system".into(),
            name: "serin-leader-election".into(),
            user_agent: ua.into(),
        }
    }

    #[test]
    fn the_write_log_keeps_writes_in_answer_order_with_their_codes() {
        let r = Requests::default();
        r.record_write(key("create", "a"), 201);
        r.record_write(key("update", "b"), 409);
        let w = r.writes();
        assert_eq!(w.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![0, 1]);
        assert!(w[0].succeeded() && !w[1].succeeded());
        assert!(w[0].at <= w[1].at);
        assert_eq!(w[1].key.user_agent, "b");
        r.reset();
        assert!(r.writes().is_empty());
        r.record_write(key("patch", "a"), 200);
        assert_eq!(r.writes()[0].seq, 2, "sequence numbers survive a reset");
    }

    #[test]
    fn only_mutating_verbs_are_writes() {
        for v in ["create", "update", "patch", "delete", "deletecollection"] {
            assert!(is_write(v), "{v}");
        }
        for v in ["get", "list", "watch"] {
            assert!(!is_write(v), "{v}");
        }
    }
}
