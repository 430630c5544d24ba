//! Request accounting: every request counted by verb, resource, namespace, name and User-Agent,
//! so tests can see how many API calls a client makes (no I/O).
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

/// Counters of requests since start or the last reset.
#[derive(Debug, Default)]
pub struct Requests {
    counts: Mutex<BTreeMap<RequestKey, u64>>,
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

    /// Forgets all counts.
    pub fn reset(&self) {
        self.counts().clear();
    }
}
