//! In-memory object storage: one monotonic resourceVersion, a ring buffer of watch events and a
//! broadcast channel to watchers. Callers hold the lock around whole read-modify-write steps (no I/O).
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::resources::{GroupResource, Registry};
use super::status::ApiError;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventKind {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One committed change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct Event {
    /// The resourceVersion the change got.
    pub rv: u64,
    /// Which collection changed.
    pub gr: GroupResource,
    /// What happened.
    pub kind: EventKind,
    /// The object after the change (for deletes, the last state).
    pub object: Arc<Value>,
    /// The object before the change, so selector watches can turn updates into ADDED/DELETED.
    pub prev: Option<Arc<Value>>,
}

/// The retained events after a resourceVersion, and a receiver for the ones that follow.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Namespace and name of a stored object (namespace empty when cluster-scoped).
pub type Key = (String, String);

/// Settings the storage and the write semantics read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many events the watch history keeps.
    pub history: usize,
    /// Whether pods become Running with IPs and conditions right after creation.
    pub kubelet: bool,
}

/// The whole server state, behind one lock.
pub struct State {
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// Objects per collection.
    pub objects: HashMap<GroupResource, BTreeMap<Key, Arc<Value>>>,
    /// Recent events, oldest first.
    pub history: VecDeque<Arc<Event>>,
    /// Highest resourceVersion dropped from the history; watches from before it get 410.
    pub compacted: u64,
    /// Served kinds.
    pub registry: Registry,
    /// Storage and semantics settings.
    pub settings: Settings,
    /// Counters for cluster IPs, pod IPs and node ports.
    pub next_ip: u32,
    /// Set when a delete may leave garbage to collect.
    pub gc_wanted: bool,
    tx: broadcast::Sender<Arc<Event>>,
}

/// Metadata field of an object as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// The storage key of an object.
pub fn key_of(obj: &Value) -> Key {
    (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    )
}

impl State {
    /// Empty state with the built-in kinds.
    pub fn new(settings: Settings) -> Self {
        let (tx, _) = broadcast::channel(settings.history.clamp(1024, 1 << 16));
        State {
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            compacted: 1,
            registry: Registry::with_builtins(),
            settings,
            next_ip: 10,
            gc_wanted: false,
            tx,
        }
    }

    /// The stored object, if any.
    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a collection, in one namespace or (with `None`) all.
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(c) = self.objects.get(gr) else {
            return vec![];
        };
        match ns {
            Some(ns) => c
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => c.values().cloned().collect(),
        }
    }

    /// Stores a change under a new resourceVersion and tells watchers.
    pub fn commit(&mut self, gr: &GroupResource, mut obj: Value, kind: EventKind) -> Arc<Value> {
        self.rv += 1;
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        let key = key_of(&obj);
        let obj = Arc::new(obj);
        let coll = self.objects.entry(gr.clone()).or_default();
        let prev = match kind {
            EventKind::Deleted => coll.remove(&key),
            _ => coll.insert(key, obj.clone()),
        };
        let ev = Arc::new(Event {
            rv: self.rv,
            gr: gr.clone(),
            kind,
            object: obj.clone(),
            prev,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.settings.history.max(1) {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // Nobody listening is fine.
        let _ = self.tx.send(ev);
        obj
    }

    /// Starts a watch of `gr` after resourceVersion `from`: the retained events after it, plus a
    /// receiver for what follows. Taken under the lock, so nothing falls between the two.
    pub fn watch_from(&self, gr: &GroupResource, from: u64) -> Result<WatchStart, ApiError> {
        if from < self.compacted {
            return Err(ApiError::gone(from, self.compacted));
        }
        let backlog = self
            .history
            .iter()
            .filter(|e| e.rv > from && &e.gr == gr)
            .cloned()
            .collect();
        Ok((backlog, self.tx.subscribe()))
    }

    /// A receiver for events after the current resourceVersion.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(history: usize) -> State {
        State::new(Settings {
            history,
            kubelet: false,
        })
    }

    fn gr() -> GroupResource {
        ("".into(), "configmaps".into())
    }

    #[test]
    fn every_commit_gets_the_next_resource_version() {
        let mut s = state(10);
        let a = s.commit(
            &gr(),
            json!({"metadata": {"name": "a", "namespace": "d"}}),
            EventKind::Added,
        );
        let b = s.commit(
            &gr(),
            json!({"metadata": {"name": "b", "namespace": "d"}}),
            EventKind::Added,
        );
        let a_rv: u64 = meta_str(&a, "resourceVersion").parse().expect("number");
        let b_rv: u64 = meta_str(&b, "resourceVersion").parse().expect("number");
        assert_eq!(b_rv, a_rv + 1);
        assert_eq!(s.list(&gr(), Some("d")).len(), 2);
        assert!(s.list(&gr(), Some("e")).is_empty());
    }

    #[test]
    fn watching_from_before_the_history_is_gone() {
        let mut s = state(2);
        for n in ["a", "b", "c", "d"] {
            s.commit(
                &gr(),
                json!({"metadata": {"name": n, "namespace": "d"}}),
                EventKind::Added,
            );
        }
        assert_eq!(
            s.watch_from(&gr(), 1)
                .map(|_| ())
                .expect_err("compacted")
                .code,
            410
        );
        let (backlog, _) = s.watch_from(&gr(), s.rv - 1).expect("retained");
        assert_eq!(backlog.len(), 1);
    }
}
