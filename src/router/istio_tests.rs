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

fn dest(host: &str, weight: i32) -> Value {
    json!({"destination": {"host": host}, "weight": weight})
}

#[test]
fn progressive_split_writes_one_http_route_and_the_mesh_gateway() {
    let c = canary(
        "istio",
        json!({"service": {"timeout": "5s", "retries": {"attempts": 3, "perTryTimeout": "1s"}}}),
    );
    let vs = virtual_service(&c, split(70, 30), None);
    assert_eq!(vs["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(vs["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        vs["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
        "disabled"
    );
    assert_eq!(
        vs["spec"],
        json!({"hosts": ["podinfo"], "gateways": ["mesh"], "http": [{
            "timeout": "5s", "retries": {"attempts": 3, "perTryTimeout": "1s"},
            "route": [dest("podinfo-primary", 70), dest("podinfo-canary", 30)]}]})
    );
    assert_eq!(read_routes(&c, &vs).unwrap(), split(70, 30));
}

#[test]
fn destination_rules_carry_the_traffic_policy_and_no_flux_annotations() {
    let c = canary(
        "istio",
        json!({"service": {"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}),
    );
    let dr = destination_rule(&c, "podinfo-canary", None);
    assert_eq!(
        dr["spec"],
        json!({"host": "podinfo-canary", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
    );
    assert!(dr["metadata"].get("annotations").is_none());
    assert_eq!(dr["metadata"]["ownerReferences"][0]["uid"], "uid-1");
}

#[test]
fn a_destination_rule_that_existed_before_the_canary_is_not_adopted() {
    let c = canary("istio", json!({}));
    let live = json!({"metadata": {"name": "podinfo-canary", "ownerReferences": []}});
    let dr = destination_rule(&c, "podinfo-canary", Some(&live));
    assert!(dr["metadata"].get("ownerReferences").is_none());
    let ours = destination_rule(&c, "podinfo-canary", None);
    let dr = destination_rule(&c, "podinfo-canary", Some(&ours));
    assert_eq!(dr["metadata"]["ownerReferences"][0]["uid"], "uid-1");
}

#[test]
fn ab_testing_merges_headers_into_every_service_match() {
    let c = canary(
        "istio",
        json!({
        "service": {"match": [{"uri": {"prefix": "/api"}}], "hosts": ["app.example.com"], "gateways": ["public"]},
        "analysis": {"stepWeight": null, "iterations": 5, "match": [{"headers": {"x-user": {"regex": ".*insider.*"}}}]}}),
    );
    let vs = virtual_service(&c, split(0, 100), None);
    assert_eq!(vs["spec"]["hosts"], json!(["app.example.com", "podinfo"]));
    assert_eq!(vs["spec"]["gateways"], json!(["public"]));
    assert_eq!(
        vs["spec"]["http"],
        json!([
            {"match": [{"uri": {"prefix": "/api"}, "headers": {"x-user": {"regex": ".*insider.*"}}}],
             "route": [dest("podinfo-primary", 0), dest("podinfo-canary", 100)]},
            {"match": [{"uri": {"prefix": "/api"}}], "route": [dest("podinfo-primary", 0)]},
        ])
    );
    assert_eq!(read_routes(&c, &vs).unwrap(), split(0, 100));
}

#[test]
fn mirroring_sets_the_mirror_host_and_percentage() {
    let c = canary(
        "istio",
        json!({"analysis": {"stepWeight": null, "iterations": 2, "mirror": true, "mirrorWeight": 25}}),
    );
    let mirrored = Routes {
        primary: 100,
        canary: 0,
        mirrored: true,
    };
    let vs = virtual_service(&c, mirrored, None);
    assert_eq!(
        vs["spec"]["http"][0]["mirror"],
        json!({"host": "podinfo-canary"})
    );
    assert_eq!(
        vs["spec"]["http"][0]["mirrorPercentage"],
        json!({"value": 25.0})
    );
    assert_eq!(read_routes(&c, &vs).unwrap(), mirrored);
}

#[test]
fn tcp_services_get_a_tcp_route_with_port_matches() {
    let c = canary(
        "istio",
        json!({"service": {"appProtocol": "TCP", "match": [{"port": 9898}]}}),
    );
    let vs = virtual_service(&c, split(90, 10), None);
    assert_eq!(
        vs["spec"]["tcp"],
        json!([{"match": [{"port": 9898}], "route": [dest("podinfo-primary", 90), dest("podinfo-canary", 10)]}])
    );
    assert!(vs["spec"].get("http").is_none());
    assert_eq!(read_routes(&c, &vs).unwrap(), split(90, 10));
}

#[test]
fn delegation_drops_hosts_and_gateways_and_port_discovery_sets_ports() {
    let c = canary(
        "istio",
        json!({"service": {"delegation": true, "portDiscovery": true}}),
    );
    let vs = virtual_service(&c, INITIAL, None);
    assert_eq!(vs["spec"]["hosts"], json!([]));
    assert_eq!(vs["spec"]["gateways"], json!([]));
    assert_eq!(
        vs["spec"]["http"][0]["route"][0]["destination"],
        json!({"host": "podinfo-primary", "port": {"number": 9898}})
    );
}

#[test]
fn session_affinity_routes_cookie_holders_to_the_canary() {
    let c = with_status(
        canary(
            "istio",
            json!({"analysis": {"sessionAffinity": {"cookieName": "flagger-cookie", "secure": true}}}),
        ),
        json!({"sessionAffinityCookie": "flagger-cookie=xyz"}),
    );
    let http = virtual_service(&c, split(90, 10), None)["spec"]["http"].clone();
    assert_eq!(
        http[0]["match"],
        json!([{"headers": {"Cookie": {"regex": ".*flagger-cookie.*xyz.*"}}}])
    );
    assert_eq!(
        http[0]["route"],
        json!([dest("podinfo-primary", 0), dest("podinfo-canary", 100)])
    );
    assert_eq!(
        http[1]["route"][1]["headers"],
        json!({"response": {"add": {"Set-Cookie": "flagger-cookie=xyz; Max-Age=86400; Secure"}}})
    );
    assert_eq!(
        read_routes(&c, &json!({"spec": {"http": http}})).unwrap(),
        split(90, 10)
    );
}

#[test]
fn users_routes_stay_ahead_of_ours_and_a_foreign_virtual_service_is_remembered() {
    let c = canary("istio", json!({}));
    let user = json!({"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "admin"}}]});
    let live =
        json!({"metadata": {"name": "podinfo"}, "spec": {"hosts": ["podinfo"], "http": [user]}});
    let vs = virtual_service(&c, INITIAL, Some(&live));
    assert_eq!(vs["spec"]["http"][0], user);
    assert_eq!(vs["spec"]["http"].as_array().map(Vec::len), Some(2));
    assert!(vs["metadata"].get("ownerReferences").is_none());
    let saved: Value = serde_json::from_str(
        vs["metadata"]["annotations"][ORIGINAL_CONFIG_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(saved, live["spec"]);
}
