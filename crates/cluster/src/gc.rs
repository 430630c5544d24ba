//! Garbage collection through ownerReferences (background, foreground, orphan) and the namespace
//! controller that empties terminating namespaces. Runs under the state lock; no I/O.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::ops::{self, Ctx, DeleteOpts, Sub};
use super::resources::GroupResource;
use super::store::{State, meta_str};

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect()
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

fn deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// Runs collection passes until nothing changes (bounded); returns whether anything changed.
pub fn collect(st: &mut State, now: &str) -> bool {
    let ctx = Ctx {
        manager: "kube-controller-manager".into(),
        dry_run: false,
        now: now.to_string(),
        strict: false,
    };
    let mut any = false;
    for _ in 0..32 {
        if !pass(st, &ctx) {
            break;
        }
        any = true;
    }
    any
}

fn all_objects(st: &State) -> Vec<(GroupResource, Arc<Value>)> {
    st.objects
        .iter()
        .flat_map(|(gr, c)| c.values().map(move |o| (gr.clone(), o.clone())))
        .collect()
}

fn pass(st: &mut State, ctx: &Ctx) -> bool {
    let objects = all_objects(st);
    let by_uid: HashMap<String, Arc<Value>> = objects
        .iter()
        .map(|(_, o)| (meta_str(o, "uid").to_string(), o.clone()))
        .collect();
    let mut changed = false;
    let mut has_dependents: HashSet<String> = HashSet::new();

    for (gr, obj) in &objects {
        let owners = owner_uids(obj);
        if owners.is_empty() {
            continue;
        }
        let Some(rt) = st.registry.preferred(gr) else {
            continue;
        };
        let (ns, name) = (
            meta_str(obj, "namespace").to_string(),
            meta_str(obj, "name").to_string(),
        );
        let live: Vec<&Arc<Value>> = owners.iter().filter_map(|u| by_uid.get(u)).collect();
        let orphaning: Vec<String> = live
            .iter()
            .filter(|o| deleting(o) && has_finalizer(o, "orphan"))
            .map(|o| meta_str(o, "uid").to_string())
            .collect();
        if !orphaning.is_empty() {
            let mut new = (**obj).clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| !orphaning.iter().any(|u| r["uid"] == json!(u)));
            }
            if ops::system_update(st, &rt, obj, new, Sub::Main, ctx).is_ok() {
                changed = true;
            }
            continue;
        }
        for o in &live {
            has_dependents.insert(meta_str(o, "uid").to_string());
        }
        let foreground = live
            .iter()
            .any(|o| deleting(o) && has_finalizer(o, "foregroundDeletion"));
        if (live.is_empty() || foreground) && !deleting(obj) {
            let opts = DeleteOpts {
                propagation: Some(
                    if foreground {
                        "Foreground"
                    } else {
                        "Background"
                    }
                    .into(),
                ),
                ..Default::default()
            };
            if ops::delete(st, &rt, &ns, &name, &opts, ctx).is_ok() {
                changed = true;
            }
        }
    }

    for (gr, obj) in &objects {
        if !deleting(obj) {
            continue;
        }
        let Some(rt) = st.registry.preferred(gr) else {
            continue;
        };
        let Some(cur) = st.get(gr, meta_str(obj, "namespace"), meta_str(obj, "name")) else {
            continue;
        };
        let uid = meta_str(&cur, "uid").to_string();
        for f in ["orphan", "foregroundDeletion"] {
            let blocked = f == "foregroundDeletion" && has_dependents.contains(&uid);
            if has_finalizer(&cur, f) && !blocked {
                let Some(cur) = st.get(gr, meta_str(obj, "namespace"), meta_str(obj, "name"))
                else {
                    break;
                };
                if ops::remove_finalizer(st, &rt, &cur, f, ctx).is_ok() {
                    changed = true;
                }
            }
        }
    }

    let ns_gr: GroupResource = ("".into(), "namespaces".into());
    let terminating: Vec<Arc<Value>> = st
        .list(&ns_gr, None)
        .into_iter()
        .filter(|n| deleting(n))
        .collect();
    for ns_obj in terminating {
        let ns = meta_str(&ns_obj, "name").to_string();
        let mut remaining = 0;
        let grs: Vec<GroupResource> = st.objects.keys().cloned().collect();
        for gr in grs {
            let Some(rt) = st.registry.preferred(&gr) else {
                continue;
            };
            if !rt.namespaced {
                continue;
            }
            for obj in st.list(&gr, Some(&ns)) {
                remaining += 1;
                if !deleting(&obj)
                    && ops::delete(
                        st,
                        &rt,
                        &ns,
                        meta_str(&obj, "name"),
                        &DeleteOpts::default(),
                        ctx,
                    )
                    .is_ok()
                {
                    changed = true;
                }
            }
        }
        if remaining == 0
            && let Some(rt) = st.registry.get("", "v1", "namespaces")
        {
            let mut new = (*ns_obj).clone();
            // Emptied rather than removed: defaulting would put `kubernetes` back.
            new["spec"]["finalizers"] = json!([]);
            if ops::system_update(st, &rt, &ns_obj, new, Sub::Main, ctx).is_ok() {
                changed = true;
            }
        }
    }
    changed
}
