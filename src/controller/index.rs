//! An index of the cached Canaries by the names their secondary watches map from (workload,
//! Service, namespace), so that one workload event finds its Canaries without scanning every
//! Canary; fed by the Canary watch next to its reflector. No I/O.
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::api::Canary;

type Refs = HashSet<ObjectRef<Canary>>;
/// `(namespace, name)`.
type Name = (String, String);

/// The names one Canary is found under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Keys {
    namespace: String,
    /// Its target and its autoscaler (their primaries map to them).
    workloads: Vec<String>,
    /// Its Service name (the `-primary` and `-canary` Services map to it).
    service: String,
}

impl Keys {
    fn of(c: &Canary) -> Self {
        let workloads = [
            c.spec.target_ref.as_ref().map(|t| t.name.clone()),
            c.spec.autoscaler_ref.as_ref().map(|a| a.name.clone()),
        ]
        .into_iter()
        .flatten()
        .collect();
        Self {
            namespace: c.namespace().unwrap_or_default(),
            workloads,
            service: c.spec.service_name(),
        }
    }
}

#[derive(Default)]
struct Maps {
    keys: HashMap<ObjectRef<Canary>, Keys>,
    workloads: HashMap<Name, Refs>,
    services: HashMap<Name, Refs>,
    namespaces: HashMap<String, Refs>,
}

fn unlink(map: &mut HashMap<Name, Refs>, key: Name, r: &ObjectRef<Canary>) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(r);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl Maps {
    fn insert(&mut self, c: &Canary) {
        let r = ObjectRef::from_obj(c);
        let keys = Keys::of(c);
        if self.keys.get(&r) == Some(&keys) {
            return;
        }
        self.remove(&r);
        for w in &keys.workloads {
            self.workloads
                .entry((keys.namespace.clone(), w.clone()))
                .or_default()
                .insert(r.clone());
        }
        self.services
            .entry((keys.namespace.clone(), keys.service.clone()))
            .or_default()
            .insert(r.clone());
        self.namespaces
            .entry(keys.namespace.clone())
            .or_default()
            .insert(r.clone());
        self.keys.insert(r, keys);
    }

    fn remove(&mut self, r: &ObjectRef<Canary>) {
        let Some(keys) = self.keys.remove(r) else {
            return;
        };
        for w in keys.workloads {
            unlink(&mut self.workloads, (keys.namespace.clone(), w), r);
        }
        unlink(
            &mut self.services,
            (keys.namespace.clone(), keys.service),
            r,
        );
        if let Some(set) = self.namespaces.get_mut(&keys.namespace) {
            set.remove(r);
            if set.is_empty() {
                self.namespaces.remove(&keys.namespace);
            }
        }
    }
}

/// The Canaries indexed under any of `names` in `ns`, each once.
fn lookup(map: &HashMap<Name, Refs>, ns: &str, names: &[&str]) -> Vec<ObjectRef<Canary>> {
    let mut out = Refs::new();
    for name in names {
        if let Some(set) = map.get(&(ns.to_string(), (*name).to_string())) {
            out.extend(set.iter().cloned());
        }
    }
    out.into_iter().collect()
}

#[derive(Default)]
struct Inner {
    live: Maps,
    /// The Canaries of a relist in progress (between `Init` and `InitDone`); the live maps
    /// keep answering until it is complete, as the reflector's store does.
    relist: Option<Maps>,
}

/// The index, shared by the Canary watch (which writes it) and the mappers (which read it).
#[derive(Clone, Default)]
pub struct CanaryIndex(Arc<RwLock<Inner>>);

impl CanaryIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows one event of the Canary watch.
    pub fn apply(&self, event: &watcher::Event<Canary>) {
        let mut inner = self.write();
        match event {
            watcher::Event::Apply(c) => inner.live.insert(c),
            watcher::Event::Delete(c) => inner.live.remove(&ObjectRef::from_obj(c)),
            watcher::Event::Init => inner.relist = Some(Maps::default()),
            watcher::Event::InitApply(c) => {
                if let Some(relist) = inner.relist.as_mut() {
                    relist.insert(c);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.live = relist;
                }
            }
        }
    }

    /// The Canaries a workload (Deployment, DaemonSet, StatefulSet, HPA, ScaledObject, Knative
    /// Service) named `name` belongs to: as their target or autoscaler, or as its primary.
    pub fn by_workload(&self, ns: Option<&str>, name: &str) -> Vec<ObjectRef<Canary>> {
        let mut names = vec![name];
        names.extend(name.strip_suffix("-primary"));
        let inner = self.read();
        lookup(&inner.live.workloads, ns.unwrap_or_default(), &names)
    }

    /// The Canaries a Service named `name` belongs to: the apex, `-primary` or `-canary`.
    pub fn by_service(&self, ns: Option<&str>, name: &str) -> Vec<ObjectRef<Canary>> {
        let mut names = vec![name];
        names.extend(
            name.strip_suffix("-primary")
                .or_else(|| name.strip_suffix("-canary")),
        );
        let inner = self.read();
        lookup(&inner.live.services, ns.unwrap_or_default(), &names)
    }

    /// Every Canary in a namespace.
    pub fn in_namespace(&self, ns: Option<&str>) -> Vec<ObjectRef<Canary>> {
        let inner = self.read();
        inner
            .live
            .namespaces
            .get(ns.unwrap_or_default())
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(ns: &str, name: &str, target: &str) -> Canary {
        Canary::test()
            .namespace(ns)
            .name(name)
            .target("apps/v1", "Deployment", target)
            .build()
    }

    fn names(refs: Vec<ObjectRef<Canary>>) -> Vec<String> {
        let mut v: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    }

    #[test]
    fn a_workload_and_its_primary_find_their_canary_and_no_other() {
        let idx = CanaryIndex::default();
        idx.apply(&watcher::Event::Apply(canary("a", "c1", "app")));
        idx.apply(&watcher::Event::Apply(canary("a", "c2", "other")));
        idx.apply(&watcher::Event::Apply(canary("b", "c3", "app")));
        assert_eq!(names(idx.by_workload(Some("a"), "app")), ["c1"]);
        assert_eq!(names(idx.by_workload(Some("a"), "app-primary")), ["c1"]);
        assert_eq!(
            names(idx.by_workload(Some("a"), "app-canary")),
            Vec::<String>::new()
        );
        assert_eq!(names(idx.by_service(Some("a"), "app-canary")), ["c1"]);
        assert_eq!(names(idx.by_service(Some("b"), "app")), ["c3"]);
        assert_eq!(names(idx.in_namespace(Some("a"))), ["c1", "c2"]);
    }

    #[test]
    fn a_retargeted_or_deleted_canary_leaves_its_old_names() {
        let idx = CanaryIndex::default();
        idx.apply(&watcher::Event::Apply(canary("a", "c1", "app")));
        idx.apply(&watcher::Event::Apply(canary("a", "c1", "app2")));
        assert!(idx.by_workload(Some("a"), "app").is_empty());
        assert_eq!(names(idx.by_workload(Some("a"), "app2")), ["c1"]);
        idx.apply(&watcher::Event::Delete(canary("a", "c1", "app2")));
        assert!(idx.by_workload(Some("a"), "app2").is_empty());
        assert!(idx.in_namespace(Some("a")).is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_complete() {
        let idx = CanaryIndex::default();
        idx.apply(&watcher::Event::Apply(canary("a", "gone", "old")));
        idx.apply(&watcher::Event::Init);
        idx.apply(&watcher::Event::InitApply(canary("a", "new", "app")));
        assert_eq!(names(idx.by_workload(Some("a"), "old")), ["gone"]);
        idx.apply(&watcher::Event::InitDone);
        assert!(idx.by_workload(Some("a"), "old").is_empty());
        assert_eq!(names(idx.by_workload(Some("a"), "app")), ["new"]);
    }
}
