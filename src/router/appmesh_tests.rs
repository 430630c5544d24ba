use super::*;
use crate::router::testing::canary;
use crate::router::testing::split;

const SPLIT: Routes = split(70, 30);

fn t2(node: &str, w: i32) -> Value {
    json!({"virtualNodeRef": {"name": node}, "weight": w})
}

#[test]
fn v1beta2_apex_router_carries_the_split_canary_first_with_timeout_and_retries() {
    let c = canary(
        "appmesh:v1beta2",
        json!({"service": {"portName": "http", "targetPort": 8080, "timeout": "15s",
            "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "gateway-error,client-error"},
            "match": [{"uri": {"prefix": "/api"}}]}}),
    );
    let vr = virtual_router(&c, SPLIT, false, None);
    assert_eq!(vr["apiVersion"], "appmesh.k8s.aws/v1beta2");
    assert_eq!(vr["metadata"]["name"], "podinfo");
    assert_eq!(vr["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert!(vr["metadata"].get("annotations").is_none());
    assert_eq!(
        vr["spec"],
        json!({
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "routes": [{"name": "podinfo", "httpRoute": {
                "match": {"prefix": "/api"},
                "timeout": {"perRequest": {"unit": "ms", "value": 15000}},
                "retryPolicy": {"perRetryTimeout": {"unit": "ms", "value": 5000}, "maxRetries": 3,
                                "httpRetryEvents": ["gateway-error", "client-error"]},
                "action": {"weightedTargets": [t2("podinfo-canary", 30), t2("podinfo-primary", 70)]}}}]})
    );
    assert_eq!(read_routes(&c, Version::V1beta2, &vr).unwrap(), SPLIT);
}

#[test]
fn v1beta2_canary_router_sends_everything_to_the_canary() {
    let c = canary(
        "appmesh:v1beta2",
        json!({"service": {"portName": "grpc"}, "analysis": {"stepWeight": null, "iterations": 2,
            "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
    );
    let vr = virtual_router(&c, SPLIT, true, None);
    assert_eq!(vr["metadata"]["name"], "podinfo-canary");
    assert_eq!(
        vr["spec"],
        json!({
            "listeners": [{"portMapping": {"port": 9898, "protocol": "grpc"}}],
            "routes": [{"name": "podinfo-canary", "httpRoute": {"match": {"prefix": "/"},
                "action": {"weightedTargets": [t2("podinfo-canary", 100), t2("podinfo-primary", 0)]}}}]})
    );
}

#[test]
fn v1beta2_ab_testing_uses_a_header_route_and_a_lower_priority_primary_route() {
    let c = canary(
        "appmesh:v1beta2",
        json!({"analysis": {"stepWeight": null, "iterations": 2, "match": [
            {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"regex": ".*Firefox.*"}}}]}}),
    );
    let all = split(0, 100);
    let vr = virtual_router(&c, all, false, None);
    assert_eq!(
        vr["spec"]["routes"],
        json!([
            {"name": "podinfo-a", "priority": 10, "httpRoute": {
                "match": {"prefix": "/", "headers": [
                    {"name": "user-agent", "match": {"regex": ".*Firefox.*"}},
                    {"name": "x-canary", "match": {"exact": "insider"}}]},
                "action": {"weightedTargets": [t2("podinfo-canary", 100), t2("podinfo-primary", 0)]}}},
            {"name": "podinfo-b", "priority": 20, "httpRoute": {"match": {"prefix": "/"},
                "action": {"weightedTargets": [t2("podinfo-primary", 100)]}}}])
    );
    assert_eq!(read_routes(&c, Version::V1beta2, &vr).unwrap(), all);
}

#[test]
fn v1beta2_users_routes_survive_and_are_not_read_as_ours() {
    let c = canary("appmesh:v1beta2", json!({}));
    let user = json!({"name": "admin", "priority": 1, "httpRoute": {"match": {"prefix": "/admin"},
        "action": {"weightedTargets": [{"virtualNodeRef": {"name": "admin"}, "weight": 1}]}}});
    let mut live = virtual_router(&c, SPLIT, false, None);
    live["spec"]["routes"]
        .as_array_mut()
        .unwrap()
        .insert(0, user.clone());
    let vr = virtual_router(&c, INITIAL, false, Some(&live));
    assert_eq!(vr["spec"]["routes"][1], user);
    assert_eq!(read_routes(&c, Version::V1beta2, &live).unwrap(), SPLIT);
}

#[test]
fn v1beta2_virtual_nodes_select_the_services_pods_and_list_backends() {
    let mut c = canary(
        "appmesh:v1beta2",
        json!({"service": {"timeout": "2s", "backends": ["backend1", "arn:aws:appmesh:eu-west-1:1:mesh/m/virtualService/b2"],
            "apex": {"annotations": {"team": "web"}}}}),
    );
    c.metadata.annotations =
        Some([(ACCESS_LOG_ANNOTATION.to_string(), "enabled".to_string())].into());
    let vn = virtual_node(
        &c,
        Version::V1beta2,
        "podinfo-primary",
        "podinfo-primary.test.svc.cluster.local.",
        Some(&json!({"app": "podinfo-primary"})),
        None,
    );
    assert_eq!(vn["metadata"]["annotations"]["team"], "web");
    assert_eq!(
        vn["metadata"]["annotations"]["helm.toolkit.fluxcd.io/driftDetection"],
        "disabled"
    );
    assert_eq!(
        vn["spec"],
        json!({
            "podSelector": {"matchLabels": {"app": "podinfo-primary"}},
            "listeners": [{"portMapping": {"port": 9898, "protocol": "http"},
                           "timeout": {"http": {"perRequest": {"unit": "ms", "value": 2000}}}}],
            "serviceDiscovery": {"dns": {"hostname": "podinfo-primary.test.svc.cluster.local."}},
            "backends": [{"virtualService": {"virtualServiceRef": {"name": "backend1"}}},
                         {"virtualService": {"virtualServiceARN": "arn:aws:appmesh:eu-west-1:1:mesh/m/virtualService/b2"}}],
            "logging": {"accessLog": {"file": {"path": "/dev/stdout"}}}})
    );
}

#[test]
fn v1beta2_apex_virtual_service_exposes_the_hosts_to_the_gateway() {
    let c = canary(
        "appmesh:v1beta2",
        json!({"service": {"hosts": ["app.example.com"], "timeout": "30s", "retries": {"attempts": 2}}}),
    );
    let vs = virtual_service(&c, Version::V1beta2, INITIAL, false, None);
    assert_eq!(
        vs["spec"],
        json!({"provider": {"virtualRouter": {"virtualRouterRef": {"name": "podinfo"}}}})
    );
    assert_eq!(
        vs["metadata"]["annotations"],
        json!({"gateway.appmesh.k8s.aws/expose": "true",
               "gateway.appmesh.k8s.aws/domain": "app.example.com,",
               "gateway.appmesh.k8s.aws/timeout": "30s",
               "gateway.appmesh.k8s.aws/retries": "2"})
    );
    let vs = virtual_service(&c, Version::V1beta2, INITIAL, true, None);
    assert_eq!(vs["metadata"]["name"], "podinfo-canary");
    assert!(vs["metadata"].get("annotations").is_none());
}

#[test]
fn v1beta1_virtual_service_embeds_the_router_and_routes_by_node_name() {
    let c = canary(
        "appmesh",
        json!({"service": {"meshName": "global", "retries": {"attempts": 0}}}),
    );
    let vs = virtual_service(&c, Version::V1beta1, SPLIT, false, None);
    assert_eq!(vs["apiVersion"], "appmesh.k8s.aws/v1beta1");
    assert_eq!(vs["metadata"]["name"], "podinfo.test");
    assert_eq!(
        vs["spec"],
        json!({
            "meshName": "global",
            "virtualRouter": {"name": "podinfo", "listeners": [{"portMapping": {"port": 9898, "protocol": "http"}}]},
            "routes": [{"name": "podinfo", "http": {"match": {"prefix": "/"},
                "retryPolicy": {"perRetryTimeoutMillis": 250, "maxRetries": 1, "httpRetryEvents": ["gateway-error"]},
                "action": {"weightedTargets": [
                    {"virtualNodeName": "podinfo-canary", "weight": 30},
                    {"virtualNodeName": "podinfo-primary", "weight": 70}]}}}]})
    );
    assert_eq!(read_routes(&c, Version::V1beta1, &vs).unwrap(), SPLIT);
    let canary_vs = virtual_service(&c, Version::V1beta1, SPLIT, true, None);
    assert_eq!(canary_vs["metadata"]["name"], "podinfo-canary.test");
    assert_eq!(canary_vs["spec"]["virtualRouter"]["name"], "podinfo-canary");
    assert_eq!(
        canary_vs["spec"]["routes"][0]["http"]["action"]["weightedTargets"][0],
        json!({"virtualNodeName": "podinfo-canary", "weight": 100})
    );
}

#[test]
fn v1beta1_virtual_nodes_name_the_mesh_and_resolve_by_short_dns() {
    let c = canary(
        "appmesh",
        json!({"service": {"meshName": "global", "backends": ["backend.test"]}}),
    );
    let vn = virtual_node(
        &c,
        Version::V1beta1,
        "podinfo",
        "podinfo-primary.test",
        None,
        None,
    );
    assert_eq!(
        vn["spec"],
        json!({"meshName": "global",
            "listeners": [{"portMapping": {"port": 9898, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostName": "podinfo-primary.test"}},
            "backends": [{"virtualService": {"virtualServiceName": "backend.test"}}]})
    );
}

#[test]
fn a_router_without_both_targets_cannot_be_read() {
    let c = canary("appmesh:v1beta2", json!({}));
    let live = json!({"spec": {"routes": [{"name": "podinfo", "httpRoute": {
        "action": {"weightedTargets": [t2("podinfo-primary", 100)]}}}]}});
    assert!(read_routes(&c, Version::V1beta2, &live).is_err());
}
