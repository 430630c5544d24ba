//! Pure Gateway API request routing for the demo's data plane: which HTTPRoute rule a request
//! matches, and a smooth weighted round-robin over its backends. No I/O.
use serde_json::Value;
use std::collections::HashMap;

/// The parts of a request that HTTPRoute matches look at.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    /// Host header without the port.
    pub host: String,
    /// Path without the query.
    pub path: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Query parameters.
    pub query: Vec<(String, String)>,
}

/// A backend a rule sends traffic to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendRef {
    /// Service name.
    pub service: String,
    /// Service namespace.
    pub namespace: String,
    /// Relative weight (0 receives nothing).
    pub weight: u32,
}

/// The rule a request matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// `<namespace>/<route>#<rule index>`: the key of the rule's round-robin state.
    pub key: String,
    /// The HTTPRoute's name.
    pub route: String,
    /// The rule's backends, in order.
    pub backends: Vec<BackendRef>,
}

/// Whether `route` is attached to the Gateway `gateway` in `gateway_ns`.
pub fn attached(route: &Value, gateway_ns: &str, gateway: &str) -> bool {
    let ns = route["metadata"]["namespace"].as_str().unwrap_or_default();
    route["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| parent_is(p, ns, gateway_ns, gateway))
}

/// Whether a parentRef of a route in `route_ns` names the Gateway `gateway_ns/gateway`.
pub fn parent_is(parent: &Value, route_ns: &str, gateway_ns: &str, gateway: &str) -> bool {
    parent["name"].as_str() == Some(gateway)
        && parent["namespace"].as_str().unwrap_or(route_ns) == gateway_ns
        && parent["kind"].as_str().unwrap_or("Gateway") == "Gateway"
        && parent["group"]
            .as_str()
            .unwrap_or("gateway.networking.k8s.io")
            == "gateway.networking.k8s.io"
}

fn host_matches(hostnames: &[Value], host: &str) -> bool {
    if hostnames.is_empty() {
        return true;
    }
    hostnames
        .iter()
        .filter_map(Value::as_str)
        .any(|h| match h.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => h.eq_ignore_ascii_case(host),
        })
}

fn regex_matches(pattern: &str, value: &str) -> bool {
    // Gateway API regexes match the whole value.
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(value))
}

fn string_matches(m: &Value, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return false;
    };
    let want = m["value"].as_str().unwrap_or_default();
    match m["type"].as_str().unwrap_or("Exact") {
        "RegularExpression" => regex_matches(want, value),
        _ => want == value,
    }
}

/// How specific a match is, for Gateway API's precedence among rules that match a request:
/// exact path, then longer path, then method, then more headers, then more query params.
type Precedence = (u8, usize, u8, usize, usize);

fn match_request(m: &Value, req: &RequestInfo) -> Option<Precedence> {
    let path = &m["path"];
    let ptype = path["type"].as_str().unwrap_or("PathPrefix");
    let pvalue = path["value"].as_str().unwrap_or("/");
    let path_ok = match ptype {
        "Exact" => req.path == pvalue,
        "RegularExpression" => regex_matches(pvalue, &req.path),
        _ => {
            let prefix = pvalue.trim_end_matches('/');
            prefix.is_empty()
                || req.path == prefix
                || req
                    .path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    };
    if !path_ok {
        return None;
    }
    if let Some(method) = m["method"].as_str()
        && !method.eq_ignore_ascii_case(&req.method)
    {
        return None;
    }
    let headers = m["headers"].as_array().cloned().unwrap_or_default();
    for h in &headers {
        let name = h["name"].as_str().unwrap_or_default().to_ascii_lowercase();
        let value = req
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str());
        if !string_matches(h, value) {
            return None;
        }
    }
    let params = m["queryParams"].as_array().cloned().unwrap_or_default();
    for q in &params {
        let name = q["name"].as_str().unwrap_or_default();
        let value = req
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        if !string_matches(q, value) {
            return None;
        }
    }
    Some((
        u8::from(ptype == "Exact"),
        pvalue.len(),
        u8::from(m["method"].is_string()),
        headers.len(),
        params.len(),
    ))
}

/// A matching rule with what ranks it.
type Candidate = (
    Precedence,
    std::cmp::Reverse<(String, String, usize)>,
    Selected,
);

/// The rule of `routes` (all attached to the Gateway) that serves `req`, by Gateway API's
/// precedence; ties go to the older route, then to the rule listed first.
pub fn select(routes: &[Value], req: &RequestInfo) -> Option<Selected> {
    let mut best: Option<Candidate> = None;
    for route in routes {
        let hostnames = route["spec"]["hostnames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !host_matches(&hostnames, &req.host) {
            continue;
        }
        let ns = route["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = route["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let created = route["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for (i, rule) in route["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let default_match = [serde_json::json!({})];
            let matches: Vec<Value> = rule["matches"]
                .as_array()
                .filter(|m| !m.is_empty())
                .cloned()
                .unwrap_or_else(|| default_match.to_vec());
            let Some(prec) = matches.iter().filter_map(|m| match_request(m, req)).max() else {
                continue;
            };
            let tie = std::cmp::Reverse((created.clone(), format!("{ns}/{name}"), i));
            if best
                .as_ref()
                .is_some_and(|(p, t, _)| (p, t) >= (&prec, &tie))
            {
                continue;
            }
            let backends = rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["kind"].as_str().unwrap_or("Service") == "Service")
                .map(|b| BackendRef {
                    service: b["name"].as_str().unwrap_or_default().to_string(),
                    namespace: b["namespace"].as_str().unwrap_or(&ns).to_string(),
                    weight: b["weight"]
                        .as_u64()
                        .map_or(1, |w| u32::try_from(w).unwrap_or(u32::MAX)),
                })
                .collect();
            best = Some((
                prec,
                tie,
                Selected {
                    key: format!("{ns}/{name}#{i}"),
                    route: name.clone(),
                    backends,
                },
            ));
        }
    }
    best.map(|(_, _, s)| s)
}

/// Smooth weighted round-robin (as in NGINX): over any window of `sum(weights)` picks each
/// backend is chosen exactly `weight` times, evenly interleaved.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    current: HashMap<String, (Vec<u32>, Vec<i64>)>,
}

impl WeightedRoundRobin {
    /// The index of the backend to use next for the rule `key`; `None` when every weight is 0.
    pub fn pick(&mut self, key: &str, weights: &[u32]) -> Option<usize> {
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let entry = self
            .current
            .entry(key.to_string())
            .or_insert_with(|| (weights.to_vec(), vec![0; weights.len()]));
        if entry.0 != weights {
            // New weights: start over so the new split applies at once.
            *entry = (weights.to_vec(), vec![0; weights.len()]);
        }
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            entry.1[i] += i64::from(*w);
            if entry.1[i] > entry.1[best] {
                best = i;
            }
        }
        entry.1[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestInfo {
        RequestInfo {
            host: "podinfo.demo.example".into(),
            path: path.into(),
            method: "GET".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query: vec![],
        }
    }

    fn route() -> Value {
        json!({
            "metadata": {"name": "podinfo", "namespace": "demo", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "parentRefs": [{"name": "demo-gateway", "namespace": "demo"}],
                "hostnames": ["podinfo.demo.example"],
                "rules": [
                    {"matches": [{"headers": [{"name": "X-Canary", "type": "Exact", "value": "insider"}]}],
                     "backendRefs": [{"name": "podinfo-canary", "port": 9898}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "backendRefs": [{"name": "podinfo-primary", "port": 9898, "weight": 80},
                                     {"name": "podinfo-canary", "port": 9898, "weight": 20}]}
                ]
            }
        })
    }

    #[test]
    fn a_route_is_attached_through_its_parent_refs() {
        assert!(attached(&route(), "demo", "demo-gateway"));
        assert!(!attached(&route(), "demo", "other"));
        assert!(!attached(&route(), "prod", "demo-gateway"));
    }

    #[test]
    fn header_matches_take_precedence_over_the_catch_all_rule() {
        let r = [route()];
        let ab = select(&r, &req("/", &[("x-canary", "insider")])).unwrap();
        assert_eq!(ab.key, "demo/podinfo#0");
        assert_eq!(ab.backends[0].service, "podinfo-canary");
        let plain = select(&r, &req("/api/info", &[])).unwrap();
        assert_eq!(plain.key, "demo/podinfo#1");
        assert_eq!(plain.backends[1].weight, 20);
    }

    #[test]
    fn other_hosts_and_regex_headers_are_honoured() {
        let mut r = route();
        r["spec"]["rules"][0]["matches"][0]["headers"][0] =
            json!({"name": "cookie", "type": "RegularExpression", "value": ".*canary=always.*"});
        let r = [r];
        assert_eq!(
            select(&r, &req("/", &[("cookie", "a=1; canary=always")]))
                .unwrap()
                .key,
            "demo/podinfo#0"
        );
        let mut other = req("/", &[]);
        other.host = "elsewhere.example".into();
        assert!(select(&r, &other).is_none());
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        let mut r = route();
        r["spec"]["rules"][1]["matches"][0]["path"]["value"] = json!("/api");
        let r = [r];
        assert!(select(&r, &req("/api/info", &[])).is_some());
        assert!(select(&r, &req("/api", &[])).is_some());
        assert!(select(&r, &req("/apis", &[])).is_none());
    }

    #[test]
    fn weighted_round_robin_is_exact_and_interleaved() {
        let mut wrr = WeightedRoundRobin::default();
        let picks: Vec<usize> = (0..10).map(|_| wrr.pick("k", &[80, 20]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|p| **p == 1).count(), 2);
        // Never more than four primary picks in a row at 80/20.
        assert!(picks.windows(5).all(|w| w.contains(&1)));
        assert_eq!(wrr.pick("k", &[0, 0]), None);
        let zero_canary: Vec<usize> = (0..5).map(|_| wrr.pick("k", &[100, 0]).unwrap()).collect();
        assert_eq!(zero_canary, vec![0; 5]);
    }
}
