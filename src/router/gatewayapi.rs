//! Gateway API routers (`gatewayapi:v1`, `gatewayapi:v1beta1`): the HTTPRoute `<svc>`.
//!
//! Pure builders compute the HTTPRoute Flagger writes (parentRefs from `service.gatewayRefs`,
//! including GAMMA parents of kind Service; one weighted rule, plus the A/B and sticky-session
//! rules); the async [`routing_object`] applies it and reads it back (API I/O).
use serde_json::{Value, json};

use super::affinity::{self, COOKIE_HEADER, Cookies, SET_COOKIE_HEADER};
use super::routing::RoutingObject;
use super::{Error, object};
use crate::api::Canary;
use crate::api::canary::{HttpMatchRequest, ParentReference};
use crate::core::Routes;

/// Which HTTPRoute API version to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `gateway.networking.k8s.io/v1`: timeouts, CORS, the primary cookie and parent readiness.
    V1,
    /// `gateway.networking.k8s.io/v1beta1`.
    V1beta1,
}

impl Version {
    /// The apiVersion string.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "gateway.networking.k8s.io/v1",
            Self::V1beta1 => "gateway.networking.k8s.io/v1beta1",
        }
    }
}

/// Converts Istio-style matches into HTTPRouteMatches (Flagger's `mapRouteMatches`).
pub fn route_matches(list: &[HttpMatchRequest]) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for m in list {
        let mut r = serde_json::Map::new();
        if let Some(uri) = &m.uri {
            let (kind, value) = if let Some(v) = &uri.regex {
                ("RegularExpression", v)
            } else if let Some(v) = &uri.exact {
                ("Exact", v)
            } else if let Some(v) = &uri.prefix {
                ("PathPrefix", v)
            } else {
                return Err(Error::Invalid(
                    "Gateway API matches paths by exact, prefix or regex only".into(),
                ));
            };
            r.insert("path".into(), json!({"type": kind, "value": value}));
        }
        if let Some(method) = &m.method {
            match &method.exact {
                Some(v) => {
                    r.insert("method".into(), json!(v));
                }
                None => {
                    return Err(Error::Invalid(
                        "Gateway API matches methods exactly only".into(),
                    ));
                }
            }
        }
        let mut pairs =
            |field: &str,
             map: &Option<std::collections::BTreeMap<String, crate::api::canary::StringMatch>>|
             -> Result<(), Error> {
                let mut items = Vec::new();
                for (name, sm) in map.iter().flatten() {
                    let (kind, value) = if let Some(v) = &sm.exact {
                        ("Exact", v)
                    } else if let Some(v) = &sm.regex {
                        ("RegularExpression", v)
                    } else {
                        return Err(Error::Invalid(format!(
                            "Gateway API matches {field} {name:?} by exact value or regex only"
                        )));
                    };
                    items.push(json!({"type": kind, "name": name, "value": value}));
                }
                if !items.is_empty() {
                    r.insert(field.into(), Value::Array(items));
                }
                Ok(())
            };
        pairs("headers", &m.headers)?;
        pairs("queryParams", &m.query_params)?;
        if !r.is_empty() {
            out.push(Value::Object(r));
        }
    }
    Ok(out)
}

/// Flagger's `mergeMatchConditions`: every analysis match combined with every service match,
/// the analysis headers and query params replacing the service ones.
pub fn merge_matches(analysis: &[Value], service: &[Value]) -> Vec<Value> {
    if analysis.is_empty() {
        return service.to_vec();
    }
    if service.is_empty() {
        return analysis.to_vec();
    }
    let mut out = Vec::new();
    for a in analysis {
        for s in service {
            let mut m = s.clone();
            for key in ["headers", "queryParams"] {
                if let Some(v) = a.get(key)
                    && let Some(o) = m.as_object_mut()
                {
                    o.insert(key.into(), v.clone());
                }
            }
            out.push(m);
        }
    }
    out
}

fn header_list(map: &Option<std::collections::BTreeMap<String, String>>) -> Value {
    let items: Vec<Value> = map
        .iter()
        .flatten()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if items.is_empty() {
        Value::Null
    } else {
        Value::Array(items)
    }
}

fn header_filter(kind: &str, ops: &crate::api::canary::HeaderOperations) -> Value {
    let key = if kind == "RequestHeaderModifier" {
        "requestHeaderModifier"
    } else {
        "responseHeaderModifier"
    };
    let remove = ops
        .remove
        .as_ref()
        .filter(|r| !r.is_empty())
        .map(|r| json!(r))
        .unwrap_or(Value::Null);
    json!({
        "type": kind,
        key: object([
            ("add", header_list(&ops.add)),
            ("set", header_list(&ops.set)),
            ("remove", remove),
        ]),
    })
}

/// The rule filters `service` asks for (Flagger's `makeFilters`).
pub fn filters(canary: &Canary, version: Version) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(svc) = canary.spec.service.as_ref() else {
        return out;
    };
    if let Some(h) = &svc.headers {
        if let Some(r) = &h.request {
            out.push(header_filter("RequestHeaderModifier", r));
        }
        if let Some(r) = &h.response {
            out.push(header_filter("ResponseHeaderModifier", r));
        }
    }
    if let Some(rw) = &svc.rewrite {
        let hostname = rw
            .authority
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| json!(a))
            .unwrap_or(Value::Null);
        let path = match rw.uri.as_deref().filter(|u| !u.is_empty()) {
            Some(uri) if rw.type_.as_deref() == Some("ReplacePrefixMatch") => {
                json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": uri})
            }
            Some(uri) => json!({"type": "ReplaceFullPath", "replaceFullPath": uri}),
            None => Value::Null,
        };
        out.push(json!({"type": "URLRewrite", "urlRewrite": object([("hostname", hostname), ("path", path)])}));
    }
    for m in svc.mirror.iter().flatten() {
        out.push(json!({"type": "RequestMirror", "requestMirror": {"backendRef": m.backend_ref}}));
    }
    if version == Version::V1
        && let Some(c) = &svc.cors_policy
    {
        let list = |v: &Option<Vec<String>>| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| json!(v))
                .unwrap_or(Value::Null)
        };
        let max_age = c
            .max_age
            .as_deref()
            .and_then(|m| crate::api::duration::parse_duration(m).ok())
            .map(|d| json!(d.as_secs()))
            .unwrap_or(Value::Null);
        let creds = if c.allow_credentials.unwrap_or(false) {
            json!(true)
        } else {
            Value::Null
        };
        out.push(json!({"type": "CORS", "cors": object([
            ("allowOrigins", list(&c.allow_origin)),
            ("allowMethods", list(&c.allow_methods)),
            ("allowHeaders", list(&c.allow_headers)),
            ("exposeHeaders", list(&c.expose_headers)),
            ("allowCredentials", creds),
            ("maxAge", max_age),
        ])}));
    }
    out
}

fn backend_ref(name: &str, weight: i32, port: i32) -> Value {
    json!({"group": "", "kind": "Service", "name": name, "port": port, "weight": weight})
}

fn parent_refs(refs: &[ParentReference]) -> Value {
    json!(refs)
}

fn timeouts(canary: &Canary, version: Version) -> Value {
    let svc = canary.spec.service.as_ref();
    let request = svc
        .and_then(|s| s.timeout.clone())
        .filter(|t| !t.is_empty());
    let backend = svc
        .and_then(|s| s.backend_timeout.clone())
        .filter(|t| !t.is_empty());
    if version != Version::V1 || (request.is_none() && backend.is_none()) {
        return Value::Null;
    }
    object([
        ("request", request.map(Value::from).unwrap_or(Value::Null)),
        (
            "backendRequest",
            backend.map(Value::from).unwrap_or(Value::Null),
        ),
    ])
}

fn rule(matches: &[Value], filters: &[Value], backends: Vec<Value>, timeouts: &Value) -> Value {
    object([
        ("matches", json!(matches)),
        ("filters", super::list_or_null(filters)),
        ("backendRefs", Value::Array(backends)),
        ("timeouts", timeouts.clone()),
    ])
}

fn push_filter(target: &mut Value, filter: Value) {
    if let Some(o) = target.as_object_mut() {
        let list = o.entry("filters").or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(filter);
        }
    }
}

fn set_cookie_filter(value: String) -> Value {
    json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": SET_COOKIE_HEADER, "value": value}]}})
}

fn cookie_match(cookie: &str) -> Value {
    json!({"headers": [{"type": "RegularExpression", "name": COOKIE_HEADER, "value": affinity::cookie_regex(cookie)}]})
}

/// Our rules for a split: the weighted rule, sticky-session rules and the A/B rules.
pub fn rules(canary: &Canary, version: Version, routes: Routes) -> Result<Vec<Value>, Error> {
    let (_, primary, canary_svc) = super::service_names(canary);
    let port = super::service_port(canary);
    let svc_match = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.match_.clone())
        .unwrap_or_default();
    let service_matches = route_matches(&svc_match)?;
    let matches = if service_matches.is_empty() {
        vec![json!({"path": {"type": "PathPrefix", "value": "/"}})]
    } else {
        service_matches.clone()
    };
    let filters = filters(canary, version);
    let timeouts = timeouts(canary, version);
    let analysis = canary.spec.analysis.clone().unwrap_or_default();

    let mut weighted = rule(
        &matches,
        &filters,
        vec![
            backend_ref(&primary, routes.primary, port),
            backend_ref(&canary_svc, routes.canary, port),
        ],
        &timeouts,
    );
    if routes.mirrored && analysis.iterations.unwrap_or(0) > 0 {
        push_filter(
            &mut weighted,
            json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": canary_svc, "port": port}}}),
        );
    }
    let mut out = vec![weighted.clone()];
    if let Some(c) = affinity::cookies(canary) {
        out = sticky_rules(
            &c,
            version,
            routes,
            weighted,
            &service_matches,
            (&primary, &canary_svc, port),
        );
    }
    let ab = analysis.match_.clone().unwrap_or_default();
    if !ab.is_empty() {
        let ab_matches = route_matches(&ab)?;
        if let Some(first) = out.first_mut().and_then(Value::as_object_mut) {
            first.insert(
                "matches".into(),
                json!(merge_matches(&ab_matches, &matches)),
            );
        }
        out.push(rule(
            &matches,
            &filters,
            vec![backend_ref(&primary, 100, port)],
            &timeouts,
        ));
    }
    Ok(out)
}

fn sticky_rules(
    c: &Cookies,
    version: Version,
    routes: Routes,
    mut weighted: Value,
    service_matches: &[Value],
    (primary, canary_svc, port): (&str, &str, i32),
) -> Vec<Value> {
    let mut sticky = weighted.clone();
    if routes.canary != 0 {
        let canary_cookie = set_cookie_filter(affinity::set_cookie(
            &c.spec,
            &c.canary,
            affinity::max_age(&c.spec),
        ));
        let primary_cookie = c
            .primary
            .as_ref()
            .filter(|_| version == Version::V1)
            .map(|p| set_cookie_filter(affinity::set_cookie(&c.spec, p, c.interval_secs as i64)));
        if let Some(backends) = weighted
            .get_mut("backendRefs")
            .and_then(Value::as_array_mut)
        {
            for b in backends {
                let name = b["name"].as_str().unwrap_or_default().to_string();
                if name == canary_svc {
                    push_filter(b, canary_cookie.clone());
                } else if name == primary
                    && let Some(f) = &primary_cookie
                {
                    push_filter(b, f.clone());
                }
            }
        }
        sticky["matches"] = json!(merge_matches(&[cookie_match(&c.canary)], service_matches));
        sticky["backendRefs"] = json!([
            backend_ref(primary, 0, port),
            backend_ref(canary_svc, 100, port)
        ]);
        if let Some(p) = c.primary.as_ref().filter(|_| version == Version::V1) {
            let mut sticky_primary = sticky.clone();
            sticky_primary["matches"] = json!(merge_matches(&[cookie_match(p)], service_matches));
            sticky_primary["backendRefs"] = json!([
                backend_ref(primary, 100, port),
                backend_ref(canary_svc, 0, port)
            ]);
            return vec![sticky, sticky_primary, weighted];
        }
        return vec![sticky, weighted];
    }
    if let Some(prev) = &c.expire {
        sticky["matches"] = json!(merge_matches(&[cookie_match(prev)], service_matches));
        push_filter(
            &mut sticky,
            set_cookie_filter(format!("{prev}; Max-Age=-1")),
        );
    }
    vec![sticky, weighted]
}

/// Whether a rule is one of ours: it routes to the canary's primary or canary Service.
pub fn is_ours(canary: &Canary, rule: &Value) -> bool {
    let (_, primary, canary_svc) = super::service_names(canary);
    rule["backendRefs"].as_array().is_some_and(|refs| {
        refs.iter()
            .any(|r| r["name"] == json!(primary) || r["name"] == json!(canary_svc))
    })
}

/// The HTTPRoute to apply: our rules first, then the live rules that are not ours.
pub fn desired(
    canary: &Canary,
    version: Version,
    routes: Routes,
    live: Option<&Value>,
) -> Result<Value, Error> {
    let (apex, _, _) = super::service_names(canary);
    let svc = canary.spec.service.clone().unwrap_or_default();
    let mut all = rules(canary, version, routes)?;
    all.extend(super::foreign_items(live, "/spec/rules", |r| {
        is_ours(canary, r)
    }));
    let hostnames = svc
        .hosts
        .as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| json!(h))
        .unwrap_or(Value::Null);
    Ok(json!({
        "apiVersion": version.api_version(),
        "kind": "HTTPRoute",
        "metadata": super::owned_metadata(canary, &apex, super::Meta::Apex, super::owned_by(canary, live)),
        "spec": object([
            ("parentRefs", parent_refs(svc.gateway_refs.as_deref().unwrap_or_default())),
            ("hostnames", hostnames),
            ("rules", Value::Array(all)),
        ]),
    }))
}

/// Reads the split back: the last of our rules that routes to both Services.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let mut routes = Routes::split(0, 0);
    for r in live["spec"]["rules"].as_array().into_iter().flatten() {
        let refs = r["backendRefs"].as_array().cloned().unwrap_or_default();
        let weight = |name: &str| {
            refs.iter()
                .find(|b| b["name"] == json!(name))
                // Gateway API's default weight is 1.
                .map(|b| b.get("weight").map_or(1, |w| super::weight_of(Some(w))))
        };
        if let (Some(p), Some(c)) = (weight(&primary), weight(&canary_svc)) {
            routes.primary = p;
            routes.canary = c;
        }
        for f in r["filters"].as_array().into_iter().flatten() {
            if f["type"] == "RequestMirror"
                && f["requestMirror"]["backendRef"]["name"] == json!(canary_svc)
            {
                routes.mirrored = true;
            }
        }
    }
    super::non_zero(routes, &format!("HTTPRoute {apex}"))
}

fn same_parent(spec: &Value, status: &Value, ns: &str) -> bool {
    let field = |v: &Value, k: &str, default: &str| -> String {
        let s = v[k].as_str().unwrap_or(default).to_string();
        // `core` is how Linkerd's docs spell the core group of a GAMMA Service parent.
        if k == "group" && s == "core" {
            String::new()
        } else {
            s
        }
    };
    field(spec, "name", "") == field(status, "name", "")
        && field(spec, "namespace", ns) == field(status, "namespace", ns)
        && field(spec, "kind", "Gateway") == field(status, "kind", "Gateway")
        && field(spec, "group", "gateway.networking.k8s.io")
            == field(status, "group", "gateway.networking.k8s.io")
        && spec.get("sectionName") == status.get("sectionName")
        && spec.get("port") == status.get("port")
}

/// `Err` while a parent has not accepted the current generation of the route (Gateway API v1).
pub fn check_accepted(live: &Value) -> Result<(), Error> {
    let name = live["metadata"]["name"].as_str().unwrap_or_default();
    let ns = live["metadata"]["namespace"].as_str().unwrap_or_default();
    let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
    let parents = live["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in live["spec"]["parentRefs"].as_array().into_iter().flatten() {
        let pname = p["name"].as_str().unwrap_or_default();
        let Some(st) = parents.iter().find(|s| same_parent(p, &s["parentRef"], ns)) else {
            return Err(Error::NotReady(format!(
                "HTTPRoute {name}.{ns} has not been accepted by parent {pname} yet"
            )));
        };
        let accepted = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Accepted");
        let status = accepted
            .and_then(|c| c["status"].as_str())
            .unwrap_or("Unknown");
        let observed = accepted
            .and_then(|c| c["observedGeneration"].as_i64())
            .unwrap_or(0);
        if status != "True" || observed < generation {
            // The parent's own words (reason, message) say why, e.g. NotAllowedByListeners.
            let why = accepted
                .map(|c| {
                    let reason = c["reason"].as_str().unwrap_or_default();
                    let message = c["message"].as_str().unwrap_or_default();
                    match (reason.is_empty(), message.is_empty()) {
                        (true, true) => String::new(),
                        (false, true) => format!(", reason: {reason}"),
                        (true, false) => format!(", message: {message}"),
                        (false, false) => format!(", reason: {reason}, message: {message}"),
                    }
                })
                .unwrap_or_else(|| ", no Accepted condition".into());
            return Err(Error::NotReady(format!(
                "HTTPRoute {name}.{ns} parent {pname} is not ready (status: {status}, observed generation: {observed}, current generation: {generation}{why})"
            )));
        }
    }
    Ok(())
}

/// The Gateway API's routing object: the HTTPRoute `<svc>` of a [`Version`]; a v1 route must
/// have been accepted by its Gateways before its split is read back.
pub fn routing_object(version: Version) -> RoutingObject {
    let build = move |c: &Canary, routes, live: Option<&Value>, _: &Value| {
        desired(c, version, routes, live)
    };
    let object = RoutingObject::new(
        super::resource(version.api_version(), "HTTPRoute"),
        read_routes,
        build,
    );
    match version {
        Version::V1 => object.ready_when(check_accepted),
        Version::V1beta1 => object,
    }
}

#[cfg(test)]
#[path = "gatewayapi_tests.rs"]
mod tests;
