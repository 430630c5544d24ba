//! Server-side printing: `meta.k8s.io/v1` Tables for kubectl, with the columns the real server
//! prints for the common kinds and a CRD's `additionalPrinterColumns` (pure).
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::ResourceType;

/// Whether the Accept header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Ages as kubectl prints them (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    // `3m` or `3m20s`: the smaller unit only when it is not zero.
    let two = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        two(m, "m", secs % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        two(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        two(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(ts: &Value) -> Value {
    match ts
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => json!(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
        )),
        None => json!("<unknown>"),
    }
}

/// Evaluates a printer column's JSONPath (`.a.b`, `.a[0].b`, `.a[*].b`,
/// `.a[?(@.type=="Ready")].status`); like the API server's table convertor, a path with several
/// results shows the first.
fn json_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    use jsonpath_rust::JsonPath;
    static NULL: Value = Value::Null;
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let full = format!("${path}");
    obj.query(&full)
        .ok()
        .and_then(|r| r.into_iter().next())
        .unwrap_or(&NULL)
}

fn col(name: &str, ty: &str, priority: i64) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

/// String columns as the built-in printers declare them: `shown` at priority 0, then `wide`
/// (only with `kubectl -o wide`) at priority 1.
fn string_cols(shown: &[&str], wide: &[&str]) -> Vec<Value> {
    let shown = shown.iter().map(|name| col(name, "string", 0));
    shown
        .chain(wide.iter().map(|name| col(name, "string", 1)))
        .collect()
}

fn ports(svc: &Value) -> String {
    let ps: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    if ps.is_empty() {
        "<none>".into()
    } else {
        ps.join(",")
    }
}

fn columns_and_cells(rt: &ResourceType, o: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = o["metadata"]["name"].clone();
    let created = age(&o["metadata"]["creationTimestamp"]);
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    if rt.custom {
        let mut cols = vec![col("Name", "string", 0)];
        let mut cells = vec![name];
        for c in &rt.printer_columns {
            let ty = c["type"].as_str().unwrap_or("string");
            cols.push(json!({"name": c["name"], "type": ty, "format": c["format"].as_str().unwrap_or(""),
                "description": c["description"].as_str().unwrap_or(""), "priority": c["priority"].as_i64().unwrap_or(0)}));
            let v = json_path(o, c["jsonPath"].as_str().unwrap_or_default());
            cells.push(match (ty, v) {
                (_, Value::Null) => Value::Null,
                ("date", v) => age(v),
                (_, v) => v.clone(),
            });
        }
        if rt.printer_columns.is_empty() {
            cols.push(col("Age", "date", 0));
            cells.push(created);
        }
        return (cols, cells);
    }
    match rt.plural.as_str() {
        "deployments" => {
            let (s, st) = (&o["spec"], &o["status"]);
            let containers = s["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let names: Vec<&str> = containers
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let images: Vec<&str> = containers
                .iter()
                .filter_map(|c| c["image"].as_str())
                .collect();
            let sel: Vec<String> = s["selector"]["matchLabels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            (
                string_cols(
                    &["Name", "Ready", "Up-to-date", "Available", "Age"],
                    &["Containers", "Images", "Selector"],
                ),
                vec![
                    name,
                    json!(format!("{}/{}", n(&st["readyReplicas"]), n(&s["replicas"]))),
                    json!(n(&st["updatedReplicas"])),
                    json!(n(&st["availableReplicas"])),
                    created,
                    json!(names.join(",")),
                    json!(images.join(",")),
                    json!(sel.join(",")),
                ],
            )
        }
        "pods" => {
            let statuses = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| n(&c["restartCount"])).sum();
            let phase = if o["metadata"]["deletionTimestamp"].is_string() {
                json!("Terminating")
            } else {
                o["status"]["phase"].clone()
            };
            (
                string_cols(
                    &["Name", "Ready", "Status", "Restarts", "Age"],
                    &["IP", "Node"],
                ),
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    phase,
                    json!(restarts),
                    created,
                    json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                    json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                ],
            )
        }
        "services" => (
            string_cols(
                &[
                    "Name",
                    "Type",
                    "Cluster-IP",
                    "External-IP",
                    "Port(s)",
                    "Age",
                ],
                &[],
            ),
            vec![
                name,
                o["spec"]["type"].clone(),
                o["spec"]["clusterIP"].clone(),
                json!("<none>"),
                json!(ports(o)),
                created,
            ],
        ),
        "events" => event_row(o),
        "namespaces" => (
            string_cols(&["Name", "Status", "Age"], &[]),
            vec![name, o["status"]["phase"].clone(), created],
        ),
        "customresourcedefinitions" => (
            vec![col("Name", "string", 0), col("Created At", "date", 0)],
            vec![name, o["metadata"]["creationTimestamp"].clone()],
        ),
        _ => (string_cols(&["Name", "Age"], &[]), vec![name, created]),
    }
}

/// A time cell as kube-apiserver's printers write one: an age, `<unknown>` when unset.
fn since(ts: &Value) -> Value {
    match ts.as_str().filter(|s| !s.is_empty()) {
        Some(_) => age(ts),
        None => json!("<unknown>"),
    }
}

fn non_empty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// The Event columns of kube-apiserver's printer (`printEvent`), for a stored core Event or an
/// `events.k8s.io` one: without `firstTimestamp` the event time counts, without `lastTimestamp`
/// the first time does, and a series' last observation wins.
fn event_row(o: &Value) -> (Vec<Value>, Vec<Value>) {
    let converted;
    let o = if o["apiVersion"] == super::events::EVENTS_API_VERSION {
        converted = super::events::to_core(o);
        &converted
    } else {
        o
    };
    let first = match non_empty(&o["firstTimestamp"]) {
        Some(_) => since(&o["firstTimestamp"]),
        None => since(&o["eventTime"]),
    };
    let mut last = match non_empty(&o["lastTimestamp"]) {
        Some(_) => since(&o["lastTimestamp"]),
        None => first.clone(),
    };
    let mut count = o["count"].as_i64().unwrap_or(0);
    if o["series"].is_object() {
        last = since(&o["series"]["lastObservedTime"]);
        count = o["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let involved = &o["involvedObject"];
    let kind = involved["kind"].as_str().unwrap_or_default().to_lowercase();
    let target = match non_empty(&involved["name"]) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let component = non_empty(&o["source"]["component"])
        .or_else(|| non_empty(&o["reportingComponent"]))
        .unwrap_or_default();
    let instance = non_empty(&o["source"]["host"])
        .or_else(|| non_empty(&o["reportingInstance"]))
        .unwrap_or_default();
    let source = match (component, instance) {
        (c, "") => c.to_string(),
        (c, i) => format!("{c}, {i}"),
    };
    (
        vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Subobject", "string", 1),
            col("Source", "string", 1),
            col("Message", "string", 0),
            col("First Seen", "string", 1),
            col("Count", "integer", 1),
            col("Name", "string", 1),
        ],
        vec![
            last,
            o["type"].clone(),
            o["reason"].clone(),
            json!(target),
            json!(involved["fieldPath"].as_str().unwrap_or_default()),
            json!(source),
            json!(o["message"].as_str().unwrap_or_default().trim()),
            first,
            json!(count),
            o["metadata"]["name"].clone(),
        ],
    )
}

/// The Table of some objects; `includeObject` decides what each row carries.
pub fn table(
    rt: &ResourceType,
    items: &[Arc<Value>],
    rv: &str,
    q: &HashMap<String, String>,
) -> Value {
    let include = q
        .get("includeObject")
        .map(String::as_str)
        .unwrap_or("Metadata");
    let mut columns = None;
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let (cols, cells) = columns_and_cells(rt, o);
            columns.get_or_insert(cols);
            let object = match include {
                "None" => Value::Null,
                "Object" if super::events::is_events_view(rt) => {
                    super::events::from_core(o)
                }
                "Object" => (**o).clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let columns = columns.unwrap_or_else(|| columns_and_cells(rt, &json!({"metadata": {}})).0);
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
           "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(1200), "20m");
        assert_eq!(human_duration(3 * 3600 + 60 * 5), "3h5m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 7200), "3d2h");
    }

    #[test]
    fn printer_column_paths_follow_fields_and_indexes() {
        let o = json!({"status": {"conditions": [{"type": "Ready"}], "phase": "Succeeded"}});
        assert_eq!(json_path(&o, ".status.phase"), "Succeeded");
        assert_eq!(json_path(&o, ".status.conditions[0].type"), "Ready");
        assert!(json_path(&o, ".spec.x").is_null());
        let gw = json!({"status": {"addresses": [{"value": "10.0.0.1"}, {"value": "10.0.0.2"}],
            "conditions": [{"type": "Accepted", "status": "True"}, {"type": "Programmed", "status": "False"}]}});
        assert_eq!(json_path(&gw, ".status.addresses[*].value"), "10.0.0.1");
        assert_eq!(
            json_path(&gw, r#".status.conditions[?(@.type=="Programmed")].status"#),
            "False"
        );
    }
}
