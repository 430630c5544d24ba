use super::*;
use crate::router::INITIAL;
use crate::router::testing::canary;

fn original() -> Value {
    json!({"metadata": {"name": "podinfo", "labels": {"app": "podinfo"}, "annotations": {
        "kubernetes.io/ingress.class": "nginx",
        "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
      "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}}]}}]}})
}

fn nginx(extra: Value) -> Canary {
    let mut c = canary("nginx", extra);
    c.spec.ingress_ref = Some(crate::api::canary::TargetRef {
        api_version: "networking.k8s.io/v1".into(),
        kind: "Ingress".into(),
        name: "podinfo".into(),
    });
    c
}

fn split(primary: i32, canary: i32) -> Routes {
    Routes {
        primary,
        canary,
        mirrored: false,
    }
}

#[test]
fn the_canary_ingress_clones_the_original_with_the_canary_backend_and_weight() {
    let c = nginx(json!({}));
    let ing = canary_ingress(&c, DEFAULT_PREFIX, &original(), split(80, 20), None).unwrap();
    assert_eq!(ing["metadata"]["name"], "podinfo-canary");
    assert_eq!(ing["metadata"]["labels"], json!({"app": "podinfo"}));
    assert_eq!(ing["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        ing["metadata"]["annotations"],
        json!({"kubernetes.io/ingress.class": "nginx",
               "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
               "helm.toolkit.fluxcd.io/driftDetection": "disabled",
               "nginx.ingress.kubernetes.io/canary": "true",
               "nginx.ingress.kubernetes.io/canary-weight": "20"})
    );
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "podinfo-canary"
    );
    assert_eq!(
        read_routes(&c, DEFAULT_PREFIX, &ing).unwrap(),
        split(80, 20)
    );
}

#[test]
fn ab_testing_uses_header_and_cookie_annotations_until_the_weight_is_reset() {
    let c = nginx(
        json!({"analysis": {"stepWeight": null, "iterations": 3, "match": [
        {"headers": {"x-canary": {"exact": "always"}}}, {"headers": {"cookie": {"exact": "canary"}}}]}}),
    );
    let on = canary_ingress(&c, "custom.ingress", &original(), split(0, 100), None).unwrap();
    let a = &on["metadata"]["annotations"];
    assert_eq!(a["custom.ingress/canary-by-header"], "x-canary");
    assert_eq!(a["custom.ingress/canary-by-header-value"], "always");
    assert_eq!(a["custom.ingress/canary-by-cookie"], "canary");
    assert_eq!(a["custom.ingress/canary-weight"], "0");
    assert_eq!(
        read_routes(&c, "custom.ingress", &on).unwrap(),
        split(0, 100)
    );
    let off = canary_ingress(&c, "custom.ingress", &original(), split(100, 0), None).unwrap();
    assert!(
        off["metadata"]["annotations"]
            .get("custom.ingress/canary-by-header")
            .is_none()
    );
    assert_eq!(
        read_routes(&c, "custom.ingress", &off).unwrap(),
        split(100, 0)
    );
}

#[test]
fn an_ingress_without_the_apex_backend_is_refused() {
    let c = nginx(json!({"service": {"name": "other"}}));
    assert!(matches!(
        canary_ingress(&c, DEFAULT_PREFIX, &original(), INITIAL, None),
        Err(Error::Invalid(m)) if m.contains("backend other not found")
    ));
}
