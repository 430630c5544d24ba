//! Core `v1` Events and `events.k8s.io/v1` Events as two views of one stored object, converted
//! field by field as kube-apiserver converts both through its internal Event (pure).
//!
//! Objects are stored in the core form (the collection `("", "events")`); a request through
//! `events.k8s.io/v1` is converted to core on the way in and back on the way out, so both APIs
//! share names, uids, resourceVersions and watches. Field selectors of `events.k8s.io` are
//! renamed to the core labels (`regarding.kind` → `involvedObject.kind`, `reportingController` →
//! `reportingComponent`) and evaluated against the core field set, where `source` is
//! `source.component`, falling back to `reportingComponent`.
use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// `events.k8s.io/v1`.
pub const EVENTS_API_VERSION: &str = "events.k8s.io/v1";

/// Core field and its `events.k8s.io/v1` name, for the fields that differ.
const RENAMED: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("count", "deprecatedCount"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("reportingComponent", "reportingController"),
];

/// Whether `rt` is the `events.k8s.io` view of the core Event storage.
pub fn is_events_view(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

/// Whether `rt` is stored in the core Event collection (through either API).
pub fn is_event_storage(rt: &ResourceType) -> bool {
    rt.plural == "events" && (rt.group.is_empty() || rt.group == "events.k8s.io")
}

fn rename(obj: &Value, from_core: bool, api_version: &str) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::with_capacity(m.len() + 2);
    for (k, v) in m {
        let renamed = RENAMED.iter().find_map(|(core, ev)| {
            if from_core {
                (k == core).then_some(*ev)
            } else {
                (k == ev).then_some(*core)
            }
        });
        // A field of the other API that has no counterpart in this one (an events.k8s.io
        // `message`, a core `note`) has nowhere to go, as in the typed conversion.
        let foreign = RENAMED
            .iter()
            .any(|(core, ev)| if from_core { k == ev } else { k == core });
        match renamed {
            Some(name) => {
                out.insert(name.to_string(), v.clone());
            }
            None if foreign => {}
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in the core `v1` form it is stored in.
pub fn to_core(ev: &Value) -> Value {
    rename(ev, false, "v1")
}

/// A stored core Event as `events.k8s.io/v1` serves it.
pub fn from_core(core: &Value) -> Value {
    rename(core, true, EVENTS_API_VERSION)
}

/// The core field label an `events.k8s.io` field selector label stands for
/// (kubernetes `pkg/apis/events/v1` field label conversion).
pub fn core_field_label(label: &str) -> &str {
    match label {
        "regarding.kind" => "involvedObject.kind",
        "regarding.namespace" => "involvedObject.namespace",
        "regarding.name" => "involvedObject.name",
        "regarding.uid" => "involvedObject.uid",
        "regarding.apiVersion" => "involvedObject.apiVersion",
        "regarding.resourceVersion" => "involvedObject.resourceVersion",
        "regarding.fieldPath" => "involvedObject.fieldPath",
        "reportingController" => "reportingComponent",
        other => other,
    }
}

/// The object field selectors of a stored core Event are evaluated against: the object itself,
/// with `source` replaced by the selectable value (the source component, else the reporting
/// controller), as kube-apiserver's Event field set has it.
pub fn selectable(core: &Value) -> Value {
    let mut v = core.clone();
    let component = core["source"]["component"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| core["reportingComponent"].as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(m) = v.as_object_mut() {
        m.insert("source".into(), json!(component));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_style() -> Value {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "test"},
            "eventTime": "2025-01-01T00:00:00.000000Z", "action": "Rollout", "reason": "Synced",
            "type": "Normal", "note": "all good",
            "regarding": {"kind": "Canary", "name": "web", "namespace": "test", "apiVersion": "flagger.app/v1beta1"},
            "related": {"kind": "Deployment", "name": "web-primary"},
            "reportingController": "serin", "reportingInstance": "serin-0",
            "series": {"count": 2, "lastObservedTime": "2025-01-01T00:01:00.000000Z"},
            "deprecatedSource": {"component": "old", "host": "h"}, "deprecatedCount": 3,
            "deprecatedFirstTimestamp": "2025-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2025-01-01T00:02:00Z"})
    }

    #[test]
    fn an_events_k8s_io_event_maps_onto_the_core_fields_and_back() {
        let core = to_core(&new_style());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["message"], "all good");
        assert_eq!(core["involvedObject"]["kind"], "Canary");
        assert_eq!(core["reportingComponent"], "serin");
        assert_eq!(core["reportingInstance"], "serin-0");
        assert_eq!(core["source"]["component"], "old");
        assert_eq!(core["count"], 3);
        assert_eq!(core["firstTimestamp"], "2025-01-01T00:00:00Z");
        assert_eq!(core["lastTimestamp"], "2025-01-01T00:02:00Z");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(core["related"]["name"], "web-primary");
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(from_core(&core), new_style());
    }

    #[test]
    fn events_k8s_io_selector_labels_become_core_labels() {
        assert_eq!(core_field_label("regarding.name"), "involvedObject.name");
        assert_eq!(
            core_field_label("reportingController"),
            "reportingComponent"
        );
        assert_eq!(core_field_label("reason"), "reason");
    }

    #[test]
    fn the_source_selector_falls_back_to_the_reporting_controller() {
        let core = to_core(&json!({"reportingController": "serin"}));
        assert_eq!(selectable(&core)["source"], "serin");
        let old = json!({"source": {"component": "kubelet"}, "reportingComponent": ""});
        assert_eq!(selectable(&old)["source"], "kubelet");
    }
}
