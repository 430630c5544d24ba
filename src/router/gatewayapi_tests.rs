use super::*;
use crate::router::INITIAL;
use crate::router::testing::{canary, with_status};

fn split(primary: i32, canary: i32) -> Routes {
    Routes {
        primary,
        canary,
        mirrored: false,
    }
}

fn gw() -> Value {
    json!({"service": {"gatewayRefs": [{"name": "gateway", "namespace": "istio-ingress"}]}})
}

fn backend(name: &str, weight: i32) -> Value {
    json!({"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight})
}

#[test]
fn progressive_split_writes_one_weighted_rule_with_the_default_path_match() {
    let c = canary("gatewayapi:v1", gw());
    let route = desired(&c, Version::V1, split(90, 10), None).unwrap();
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["metadata"]["name"], "podinfo");
    assert_eq!(route["metadata"]["ownerReferences"][0]["kind"], "Canary");
    assert_eq!(
        route["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
        "disabled"
    );
    assert_eq!(
        route["metadata"]["annotations"]["helm.toolkit.fluxcd.io/driftDetection"],
        "disabled"
    );
    assert_eq!(
        route["spec"]["parentRefs"],
        json!([{"name": "gateway", "namespace": "istio-ingress"}])
    );
    assert_eq!(
        route["spec"]["rules"],
        json!([{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [backend("podinfo-primary", 90), backend("podinfo-canary", 10)],
        }])
    );
    assert_eq!(read_routes(&c, &route).unwrap(), split(90, 10));
}

#[test]
fn gamma_parent_refs_to_a_service_are_copied_as_given() {
    let c = canary(
        "gatewayapi:v1beta1",
        json!({"service": {"gatewayRefs": [{"group": "core", "kind": "Service", "name": "podinfo", "port": 9898}]}}),
    );
    let route = desired(&c, Version::V1beta1, INITIAL, None).unwrap();
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    assert_eq!(
        route["spec"]["parentRefs"],
        json!([{"group": "core", "kind": "Service", "name": "podinfo", "port": 9898}])
    );
}

#[test]
fn ab_testing_merges_analysis_matches_and_adds_a_primary_rule() {
    let c = canary(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "gw"}],
                           "match": [{"uri": {"prefix": "/api"}}], "timeout": "30s"},
               "analysis": {"stepWeight": null, "iterations": 10, "match": [
                   {"headers": {"x-canary": {"exact": "insider"}}},
                   {"queryParams": {"beta": {"regex": "^y.*"}}}]}}),
    );
    let route = desired(&c, Version::V1, split(0, 100), None).unwrap();
    let api = json!({"type": "PathPrefix", "value": "/api"});
    assert_eq!(
        route["spec"]["rules"],
        json!([
            {"matches": [
                {"path": api, "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]},
                {"path": api, "queryParams": [{"type": "RegularExpression", "name": "beta", "value": "^y.*"}]}],
             "backendRefs": [backend("podinfo-primary", 0), backend("podinfo-canary", 100)],
             "timeouts": {"request": "30s"}},
            {"matches": [{"path": api}],
             "backendRefs": [backend("podinfo-primary", 100)],
             "timeouts": {"request": "30s"}},
        ])
    );
    assert_eq!(read_routes(&c, &route).unwrap(), split(0, 100));
}

#[test]
fn prefix_header_matches_are_refused_rather_than_dropped() {
    let c = canary(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "gw"}]},
               "analysis": {"iterations": 2, "match": [{"headers": {"user": {"prefix": "a"}}}]}}),
    );
    assert!(matches!(
        desired(&c, Version::V1, INITIAL, None),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn mirroring_adds_a_request_mirror_filter_only_with_iterations() {
    let mirrored = Routes {
        primary: 100,
        canary: 0,
        mirrored: true,
    };
    let bg = canary(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "gw"}]},
        "analysis": {"stepWeight": null, "iterations": 3, "mirror": true}}),
    );
    let route = desired(&bg, Version::V1, mirrored, None).unwrap();
    assert_eq!(
        route["spec"]["rules"][0]["filters"],
        json!([{"type": "RequestMirror", "requestMirror": {"backendRef":
            {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}}}])
    );
    assert_eq!(read_routes(&bg, &route).unwrap(), mirrored);
    let progressive = canary("gatewayapi:v1", gw());
    let route = desired(&progressive, Version::V1, mirrored, None).unwrap();
    assert!(route["spec"]["rules"][0].get("filters").is_none());
}

#[test]
fn service_headers_rewrite_cors_and_timeouts_become_filters_in_v1_only() {
    let extra = json!({"service": {"gatewayRefs": [{"name": "gw"}],
        "timeout": "10s", "backendTimeout": "5s",
        "headers": {"request": {"set": {"b": "2", "a": "1"}, "remove": ["x"]}, "response": {"add": {"c": "3"}}},
        "rewrite": {"uri": "/v2", "type": "ReplacePrefixMatch", "authority": "example.com"},
        "corsPolicy": {"allowOrigin": ["https://a.example"], "allowMethods": ["GET"], "maxAge": "24h", "allowCredentials": true}}});
    let c = canary("gatewayapi:v1", extra.clone());
    let rule = &desired(&c, Version::V1, INITIAL, None).unwrap()["spec"]["rules"][0];
    assert_eq!(
        rule["timeouts"],
        json!({"request": "10s", "backendRequest": "5s"})
    );
    assert_eq!(
        rule["filters"],
        json!([
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}], "remove": ["x"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "c", "value": "3"}]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "example.com",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
            {"type": "CORS", "cors": {"allowOrigins": ["https://a.example"], "allowMethods": ["GET"],
                "allowCredentials": true, "maxAge": 86400}},
        ])
    );
    let rule = &desired(&c, Version::V1beta1, INITIAL, None).unwrap()["spec"]["rules"][0];
    assert!(rule.get("timeouts").is_none());
    assert_eq!(rule["filters"].as_array().map(Vec::len), Some(3));
}

fn sticky_canary(status: Value) -> Canary {
    with_status(
        canary(
            "gatewayapi:v1",
            json!({"service": {"gatewayRefs": [{"name": "gw"}]},
            "analysis": {"sessionAffinity": {"cookieName": "canary-c", "primaryCookieName": "primary-c", "maxAge": 60}}}),
        ),
        status,
    )
}

#[test]
fn session_affinity_pins_cookie_holders_and_hands_out_cookies_while_the_canary_has_weight() {
    let c = sticky_canary(
        json!({"sessionAffinityCookie": "canary-c=abc", "primarySessionAffinityCookie": "primary-c=def"}),
    );
    let rules = desired(&c, Version::V1, split(80, 20), None).unwrap()["spec"]["rules"].clone();
    let cookie = |re: &str| json!([{"headers": [{"type": "RegularExpression", "name": "Cookie", "value": re}]}]);
    let set = |v: &str| json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": v}]}}]);
    assert_eq!(rules[0]["matches"], cookie(".*canary-c.*abc.*"));
    assert_eq!(
        rules[0]["backendRefs"],
        json!([
            backend("podinfo-primary", 0),
            backend("podinfo-canary", 100)
        ])
    );
    assert_eq!(rules[1]["matches"], cookie(".*primary-c.*def.*"));
    assert_eq!(
        rules[1]["backendRefs"],
        json!([
            backend("podinfo-primary", 100),
            backend("podinfo-canary", 0)
        ])
    );
    let mut primary = backend("podinfo-primary", 80);
    primary["filters"] = set("primary-c=def; Max-Age=15");
    let mut canary_b = backend("podinfo-canary", 20);
    canary_b["filters"] = set("canary-c=abc; Max-Age=60");
    assert_eq!(rules[2]["backendRefs"], json!([primary, canary_b]));
    let live = json!({"spec": {"rules": rules}});
    assert_eq!(read_routes(&c, &live).unwrap(), split(80, 20));
}

#[test]
fn session_affinity_expires_the_previous_cookie_once_the_canary_is_back_to_zero() {
    let c = sticky_canary(json!({"previousSessionAffinityCookie": "canary-c=old"}));
    let rules = desired(&c, Version::V1, INITIAL, None).unwrap()["spec"]["rules"].clone();
    assert_eq!(
        rules[0]["matches"][0]["headers"][0]["value"],
        ".*canary-c.*old.*"
    );
    assert_eq!(
        rules[0]["filters"][0]["responseHeaderModifier"]["add"][0]["value"],
        "canary-c=old; Max-Age=-1"
    );
    assert_eq!(rules.as_array().map(Vec::len), Some(2));
}

#[test]
fn users_rules_are_kept_after_ours() {
    let c = canary("gatewayapi:v1", gw());
    let user_rule = json!({"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
        "backendRefs": [{"name": "admin", "port": 80}]});
    let live = json!({"metadata": {"ownerReferences": [{"uid": "uid-1"}]}, "spec": {"rules": [
        {"backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)]}, user_rule]}});
    let route = desired(&c, Version::V1, split(50, 50), Some(&live)).unwrap();
    assert_eq!(route["spec"]["rules"].as_array().map(Vec::len), Some(2));
    assert_eq!(route["spec"]["rules"][1], user_rule);
    assert_eq!(read_routes(&c, &route).unwrap(), split(50, 50));
}

#[test]
fn a_route_that_existed_before_the_canary_is_not_adopted() {
    let c = canary("gatewayapi:v1", gw());
    let live = json!({"metadata": {"name": "podinfo"}, "spec": {"rules": []}});
    let route = desired(&c, Version::V1, INITIAL, Some(&live)).unwrap();
    assert!(route["metadata"].get("ownerReferences").is_none());
}

#[test]
fn readiness_needs_every_parent_to_accept_the_current_generation() {
    let route = |status: &str, observed: i64| {
        json!({"metadata": {"name": "podinfo", "namespace": "test", "generation": 3},
               "spec": {"parentRefs": [{"name": "gw"}, {"group": "core", "kind": "Service", "name": "podinfo"}]},
               "status": {"parents": [
                   {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "test"},
                    "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 3}]},
                   {"parentRef": {"group": "", "kind": "Service", "name": "podinfo"},
                    "conditions": [{"type": "Accepted", "status": status, "observedGeneration": observed}]}]}})
    };
    assert!(check_accepted(&route("True", 3)).is_ok());
    let stale = check_accepted(&route("True", 2)).unwrap_err().to_string();
    assert!(
        stale.contains("observed generation: 2, current generation: 3"),
        "{stale}"
    );
    assert!(check_accepted(&route("False", 3)).is_err());
    // The parent's own reason and message say why it refused.
    let mut refused = route("False", 3);
    refused["status"]["parents"][1]["conditions"][0]["reason"] = json!("NotAllowedByListeners");
    refused["status"]["parents"][1]["conditions"][0]["message"] = json!("namespace not allowed");
    let why = check_accepted(&refused).unwrap_err().to_string();
    assert!(
        why.contains("status: False")
            && why.ends_with("reason: NotAllowedByListeners, message: namespace not allowed)"),
        "{why}"
    );
    let mut no_condition = route("True", 3);
    no_condition["status"]["parents"][1]["conditions"] = json!([]);
    let why = check_accepted(&no_condition).unwrap_err().to_string();
    assert!(why.contains("no Accepted condition"), "{why}");
    let mut missing = route("True", 3);
    missing["status"]["parents"] = json!([]);
    assert!(
        check_accepted(&missing)
            .unwrap_err()
            .to_string()
            .contains("not been accepted by parent gw")
    );
}
