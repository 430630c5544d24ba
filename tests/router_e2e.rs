//! End to end: whole canary runs through each traffic router on the embedded cluster, with the
//! provider CRDs of `tests/fixtures/crds/`, 1-second intervals, and the routing object checked
//! after every step.
//!
//! The controller runs in-process (`controller::run_with`) so that a test can inject a metrics
//! checker that fails at a chosen weight, the way Flagger's e2e suites use a failing load test.
mod common;

use common::inprocess::{Env, FailAt, GW_V1, NS, ar, httproute_weights, passing, seen, weights};
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::metrics::MetricsChecker;
use std::sync::{Arc, Mutex};
use std::time::Duration;

impl Env {
    /// Deploys podinfo and its Canary and waits for initialisation.
    async fn init(&self, provider: &str, extra: Value) -> anyhow::Result<()> {
        self.apply(podinfo("1.0")).await?;
        self.apply(canary(provider, extra)).await?;
        self.wait_phase(CanaryPhase::Initialized, 30).await?;
        Ok(())
    }

    /// Starts the cluster with the provider CRDs of `crd_files` and a controller of `provider`
    /// whose checks answer with `metrics`, deploys podinfo and its Canary (`extra` merged into
    /// its spec) and waits for initialisation.
    async fn ready(
        crd_files: &[&str],
        provider: &str,
        metrics: Arc<dyn MetricsChecker>,
        extra: Value,
    ) -> anyhow::Result<Env> {
        let mut env = Env::start_two_nodes(crd_files).await?;
        env.start_controller(provider, metrics, Default::default());
        env.init(provider, extra).await?;
        Ok(env)
    }

    /// Runs a canary to `end` while recording what `read` sees on the routing object `name` of
    /// `kind`: the values in the order they appeared, and the finished Canary.
    async fn recorded_run(
        &mut self,
        (api_version, kind, name): (&str, &str, &str),
        read: fn(&Value) -> Option<Value>,
        end: CanaryPhase,
    ) -> anyhow::Result<(Vec<Value>, Canary)> {
        let rec = self.record(api_version, kind, name, read);
        let c = self.run(end).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok((seen(&rec), c))
    }

    /// [`Env::recorded_run`] of a run that promotes: what `read` saw, in order.
    async fn promoted_run(
        &mut self,
        object: (&str, &str, &str),
        read: fn(&Value) -> Option<Value>,
    ) -> anyhow::Result<Vec<Value>> {
        let (seen, _) = self
            .recorded_run(object, read, CanaryPhase::Succeeded)
            .await?;
        Ok(seen)
    }

    /// [`Env::recorded_run`] of a run that fails: the Canary ends with no weight on the canary.
    async fn rolled_back_run(
        &mut self,
        object: (&str, &str, &str),
        read: fn(&Value) -> Option<Value>,
    ) -> anyhow::Result<Vec<Value>> {
        let (seen, c) = self.recorded_run(object, read, CanaryPhase::Failed).await?;
        assert_eq!(c.status.unwrap_or_default().canary_weight, 0);
        Ok(seen)
    }

    /// Starts a run by changing the image, and waits for its end.
    async fn run(&self, end: CanaryPhase) -> anyhow::Result<Canary> {
        self.apply(podinfo("2.0")).await?;
        self.wait_phase(CanaryPhase::Progressing, 20).await?;
        self.wait_phase(end, 60).await
    }
}

/// `(primary, canary)` weights of a run that promotes: steps of 20 up to 60, then all back on
/// the (promoted) primary.
const PROMOTED: &[(i32, i32)] = &[(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)];

/// `(primary, canary)` weights of a run whose checks fail at 40%: back on the primary.
const ROLLED_BACK_AT_40: &[(i32, i32)] = &[(100, 0), (80, 20), (60, 40), (100, 0)];

fn podinfo(version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {"containers": [{"name": "podinfod", "image": format!("ghcr.io/stefanprodan/podinfo:{version}"),
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        }
    })
}

/// The podinfo Canary with a fast analysis, `extra` merged into its spec (one level deep for
/// `service` and `analysis`).
fn canary(provider: &str, extra: Value) -> Value {
    Canary::test()
        .namespace(NS)
        .provider(provider)
        .spec(json!({"progressDeadlineSeconds": 60,
            "analysis": {"interval": "1s", "threshold": 1, "stepWeight": 20, "maxWeight": 60}}))
        .spec(extra)
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_v1_shifts_weights_step_by_step_promotes_and_keeps_user_additions()
-> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gateway-api.yaml"]).await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", passing(), Default::default());
    env.init(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "public", "namespace": "gateways"}]}}),
    )
    .await?;
    let route = env.get(GW_V1, "HTTPRoute", "podinfo").await?;
    assert_eq!(route["metadata"]["ownerReferences"][0]["kind"], "Canary");
    assert_eq!(
        route["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
        "disabled"
    );
    // A user adds a rule and an annotation with plain updates, as kubectl edit would.
    let user_rule = json!({"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
        "backendRefs": [{"name": "admin", "port": 80}]});
    env.json_patch(
        GW_V1,
        "HTTPRoute",
        "podinfo",
        json!([
        {"op": "add", "path": "/spec/rules/-", "value": user_rule},
        {"op": "add", "path": "/metadata/annotations/example.com~1team", "value": "web"}]),
    )
    .await?;
    let seen = env
        .promoted_run((GW_V1, "HTTPRoute", "podinfo"), httproute_weights)
        .await?;
    assert_eq!(seen, weights(PROMOTED));
    let route = env.get(GW_V1, "HTTPRoute", "podinfo").await?;
    let b = |name: &str, w: i32| json!({"group": "", "kind": "Service", "name": name, "port": 9898, "weight": w});
    assert_eq!(
        route["spec"]["rules"],
        json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [b("podinfo-primary", 100), b("podinfo-canary", 0)]},
        user_rule])
    );
    assert_eq!(route["metadata"]["annotations"]["example.com/team"], "web");
    // The Canary schema defaults the parent's group and kind, as Flagger's does.
    assert_eq!(
        route["spec"]["parentRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways"}])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_v1_waits_for_the_gateway_to_accept_the_route_before_shifting()
-> anyhow::Result<()> {
    let mut env = Env::ready(
        &["gateway-api.yaml"],
        "gatewayapi:v1",
        passing(),
        json!({"service": {"gatewayRefs": [{"name": "public"}]}}),
    )
    .await?;
    env.apply(podinfo("2.0")).await?;
    env.wait_phase(CanaryPhase::Progressing, 20).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = env.wait_phase(CanaryPhase::Progressing, 1).await?;
    let status = c.status.unwrap_or_default();
    assert_eq!(
        (status.canary_weight, status.failed_checks),
        (0, 0),
        "no traffic shifted while the route is not accepted"
    );
    env.start_gateway();
    env.wait_phase(CanaryPhase::Succeeded, 60).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_v1_rolls_back_to_the_primary_at_the_failing_step() -> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gateway-api.yaml"]).await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", Arc::new(FailAt(40)), Default::default());
    env.init(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "public"}]}}),
    )
    .await?;
    let seen = env
        .rolled_back_run((GW_V1, "HTTPRoute", "podinfo"), httproute_weights)
        .await?;
    assert_eq!(seen, weights(ROLLED_BACK_AT_40));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_v1beta1_ab_testing_through_a_gamma_service_parent() -> anyhow::Result<()> {
    const V: &str = "gateway.networking.k8s.io/v1beta1";
    let mut env = Env::ready(&["gateway-api.yaml"], "gatewayapi:v1beta1", passing(), json!({
        "service": {"gatewayRefs": [{"group": "core", "kind": "Service", "name": "podinfo", "port": 9898}]},
        "analysis": {"stepWeight": null, "maxWeight": null, "iterations": 2,
                     "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}})).await?;
    let rules = |v: &Value| Some(v["spec"]["rules"].clone());
    let seen = env.promoted_run((V, "HTTPRoute", "podinfo"), rules).await?;
    let b = |name: &str, w: i32| json!({"group": "", "kind": "Service", "name": name, "port": 9898, "weight": w});
    let rule = |p: i32, c: i32| {
        json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]}],
         "backendRefs": [b("podinfo-primary", p), b("podinfo-canary", c)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [b("podinfo-primary", 100)]}])
    };
    assert_eq!(seen, vec![rule(100, 0), rule(0, 100), rule(100, 0)]);
    let route = env.get(V, "HTTPRoute", "podinfo").await?;
    assert_eq!(route["apiVersion"], V);
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Service");
    Ok(())
}

const ISTIO: &str = "networking.istio.io/v1beta1";

fn vs_weights(v: &Value) -> Option<Value> {
    let http = v["spec"]["http"].as_array()?;
    let r = http
        .iter()
        .rev()
        .find(|r| r["route"].as_array().is_some_and(|d| d.len() == 2))?;
    Some(json!([r["route"][0]["weight"], r["route"][1]["weight"]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_shifts_virtual_service_weights_and_keeps_user_routes() -> anyhow::Result<()> {
    let mut env = Env::ready(
        &["istio.yaml"],
        "istio",
        passing(),
        json!({"service": {"timeout": "15s", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}),
    )
    .await?;
    for name in ["podinfo-primary", "podinfo-canary"] {
        let dr = env.get(ISTIO, "DestinationRule", name).await?;
        assert_eq!(
            dr["spec"],
            json!({"host": name, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})
        );
    }
    let user = json!({"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "admin"}}]});
    env.json_patch(
        ISTIO,
        "VirtualService",
        "podinfo",
        json!([{"op": "add", "path": "/spec/http/0", "value": user}]),
    )
    .await?;
    let seen = env
        .promoted_run((ISTIO, "VirtualService", "podinfo"), vs_weights)
        .await?;
    assert_eq!(seen, weights(PROMOTED));
    let vs = env.get(ISTIO, "VirtualService", "podinfo").await?;
    let d = |h: &str, w: i32| json!({"destination": {"host": h}, "weight": w});
    assert_eq!(
        vs["spec"],
        json!({"hosts": ["podinfo"], "gateways": ["mesh"], "http": [
        user, {"timeout": "15s", "route": [d("podinfo-primary", 100), d("podinfo-canary", 0)]}]})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_steers_the_canary_ingress_by_annotations_with_a_custom_prefix() -> anyhow::Result<()>
{
    let mut env = Env::start_two_nodes(&[]).await?;
    let routers = serin::router::RouterConfig {
        ingress_annotations_prefix: Some("custom.nginx.io".into()),
        ..Default::default()
    };
    env.start_controller("nginx", passing(), routers);
    let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": NS, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}}]}}]}});
    env.apply(ingress.clone()).await?;
    env.init("nginx", json!({"ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}})).await?;
    const ING: &str = "networking.k8s.io/v1";
    env.json_patch(
        ING,
        "Ingress",
        "podinfo-canary",
        json!([
        {"op": "add", "path": "/metadata/annotations/example.com~1team", "value": "web"}]),
    )
    .await?;
    let read =
        |v: &Value| Some(v["metadata"]["annotations"]["custom.nginx.io/canary-weight"].clone());
    let seen = env
        .promoted_run((ING, "Ingress", "podinfo-canary"), read)
        .await?;
    assert_eq!(
        seen,
        vec![
            json!("0"),
            json!("20"),
            json!("40"),
            json!("60"),
            json!("0")
        ]
    );
    let canary_ing = env.get(ING, "Ingress", "podinfo-canary").await?;
    assert_eq!(
        canary_ing["metadata"]["annotations"]["custom.nginx.io/canary"],
        "true"
    );
    assert_eq!(
        canary_ing["metadata"]["annotations"]["example.com/team"],
        "web"
    );
    assert_eq!(
        canary_ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "podinfo-canary"
    );
    let original = env.get(ING, "Ingress", "podinfo").await?;
    assert_eq!(original["spec"], ingress["spec"]);
    assert!(
        original["metadata"]["annotations"]
            .get("custom.nginx.io/canary")
            .is_none()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_shifts_traffic_split_weights() -> anyhow::Result<()> {
    const SMI: &str = "split.smi-spec.io/v1alpha1";
    let mut env = Env::ready(&["smi.yaml"], "linkerd", passing(), json!({})).await?;
    let read = |v: &Value| {
        Some(json!([
            v["spec"]["backends"][1]["weight"],
            v["spec"]["backends"][0]["weight"]
        ]))
    };
    let seen = env
        .promoted_run((SMI, "TrafficSplit", "podinfo"), read)
        .await?;
    let q = |pairs: &[(i32, i32)]| {
        pairs
            .iter()
            .map(|(p, c)| json!([p.to_string(), c.to_string()]))
            .collect::<Vec<_>>()
    };
    assert_eq!(seen, q(PROMOTED));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contour_shifts_http_proxy_weights_with_the_ingress_class() -> anyhow::Result<()> {
    const C: &str = "projectcontour.io/v1";
    let mut env = Env::start_two_nodes(&["contour.yaml"]).await?;
    let routers = serin::router::RouterConfig {
        ingress_class: Some("contour-external".into()),
        ..Default::default()
    };
    env.start_controller("contour", passing(), routers);
    env.init("contour", json!({})).await?;
    let read = |v: &Value| {
        Some(json!([
            v["spec"]["routes"][0]["services"][0]["weight"],
            v["spec"]["routes"][0]["services"][1]["weight"]
        ]))
    };
    let seen = env.promoted_run((C, "HTTPProxy", "podinfo"), read).await?;
    // Contour omits zero weights.
    let expected: Vec<Value> = [
        (100, None),
        (80, Some(20)),
        (60, Some(40)),
        (40, Some(60)),
        (100, None),
    ]
    .iter()
    .map(|(p, c)| json!([p, c]))
    .collect();
    assert_eq!(seen, expected);
    let proxy = env.get(C, "HTTPProxy", "podinfo").await?;
    assert_eq!(proxy["spec"]["ingressClassName"], "contour-external");
    assert_eq!(
        proxy["spec"]["routes"][0]["services"][1]["requestHeadersPolicy"]["set"][0]["value"],
        "podinfo-canary.test.svc.cluster.local:9898"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_lists_the_canary_service_only_while_it_has_weight() -> anyhow::Result<()> {
    const T: &str = "traefik.io/v1alpha1";
    let mut env = Env::ready(&["traefik.yaml"], "traefik", passing(), json!({})).await?;
    let read = |v: &Value| {
        Some(
            v["spec"]["weighted"]["services"]
                .as_array()?
                .iter()
                .map(|s| s["weight"].clone())
                .collect::<Vec<_>>()
                .into(),
        )
    };
    let seen = env
        .promoted_run((T, "TraefikService", "podinfo"), read)
        .await?;
    assert_eq!(
        seen,
        vec![
            json!([100]),
            json!([80, 20]),
            json!([60, 40]),
            json!([40, 60]),
            json!([100])
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_shifts_the_cluster_scoped_traffic_route() -> anyhow::Result<()> {
    let mut env = Env::ready(&["kuma.yaml"], "kuma", passing(), json!({})).await?;
    let api: Api<DynamicObject> =
        Api::all_with(env.client.clone(), &ar("kuma.io/v1alpha1", "TrafficRoute"));
    let seen_weights = Arc::new(Mutex::new(Vec::<Value>::new()));
    let out = seen_weights.clone();
    env.tasks.push(tokio::spawn(async move {
        loop {
            if let Ok(Some(o)) = api.get_opt("podinfo").await {
                let v = serde_json::to_value(&o).unwrap_or_default();
                let w = json!([
                    v["spec"]["conf"]["split"][0]["weight"],
                    v["spec"]["conf"]["split"][1]["weight"]
                ]);
                if let Ok(mut s) = out.lock()
                    && s.last() != Some(&w)
                {
                    s.push(w);
                }
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }));
    env.run(CanaryPhase::Succeeded).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen(&seen_weights), weights(PROMOTED));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipper_weights_both_backends_and_disables_the_canary_route_at_zero() -> anyhow::Result<()>
{
    const ING: &str = "networking.k8s.io/v1";
    let mut env = Env::start_two_nodes(&[]).await?;
    env.start_controller("skipper", passing(), Default::default());
    env.apply(json!({"apiVersion": ING, "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": NS, "annotations": {"zalando.org/skipper-predicate": "Host(/^app/)"}},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}}]}}]}})).await?;
    env.init(
        "skipper",
        json!({"ingressRef": {"apiVersion": ING, "kind": "Ingress", "name": "podinfo"}}),
    )
    .await?;
    let read = |v: &Value| {
        let a = &v["metadata"]["annotations"];
        Some(json!([
            a["zalando.org/backend-weights"],
            a["zalando.org/skipper-predicate"]
        ]))
    };
    let seen = env
        .promoted_run((ING, "Ingress", "podinfo-canary"), read)
        .await?;
    let step = |p: i32, c: i32| {
        let pred = if c == 0 {
            "False() && Host(/^app/)"
        } else {
            "Weight(100) && Host(/^app/)"
        };
        json!([
            format!(r#"{{"podinfo-canary":{c},"podinfo-primary":{p}}}"#),
            pred
        ])
    };
    assert_eq!(
        seen,
        vec![
            step(100, 0),
            step(80, 20),
            step(60, 40),
            step(40, 60),
            step(100, 0)
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_v1_blue_green_mirrors_traffic_before_switching() -> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gateway-api.yaml"]).await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", passing(), Default::default());
    env.init(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "public"}]},
        "analysis": {"stepWeight": null, "maxWeight": null, "iterations": 2, "mirror": true}}),
    )
    .await?;
    let read = |v: &Value| {
        let rule = &v["spec"]["rules"][0];
        let mirrored = rule["filters"].as_array().is_some_and(|f| {
            f.iter().any(|f| {
                f["type"] == "RequestMirror"
                    && f["requestMirror"]["backendRef"]["name"] == "podinfo-canary"
            })
        });
        Some(json!([
            rule["backendRefs"][0]["weight"],
            rule["backendRefs"][1]["weight"],
            mirrored
        ]))
    };
    let seen = env
        .promoted_run((GW_V1, "HTTPRoute", "podinfo"), read)
        .await?;
    assert_eq!(
        seen,
        vec![
            json!([100, 0, false]),
            json!([100, 0, true]),
            json!([0, 100, false]),
            json!([100, 0, false])
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apisix_weights_the_cloned_canary_route() -> anyhow::Result<()> {
    const A: &str = "apisix.apache.org/v2";
    let mut env = Env::start_two_nodes(&["apisix.yaml"]).await?;
    env.start_controller("apisix", passing(), Default::default());
    env.apply(
        json!({"apiVersion": A, "kind": "ApisixRoute", "metadata": {"name": "app", "namespace": NS},
        "spec": {"http": [{"name": "method", "match": {"paths": ["/*"]},
            "backends": [{"serviceName": "podinfo", "servicePort": 9898}]}]}}),
    )
    .await?;
    env.init(
        "apisix",
        json!({"routeRef": {"apiVersion": A, "kind": "ApisixRoute", "name": "app"}}),
    )
    .await?;
    let read = |v: &Value| {
        Some(json!([
            v["spec"]["http"][0]["backends"][0]["weight"],
            v["spec"]["http"][0]["backends"][1]["weight"]
        ]))
    };
    let seen = env
        .promoted_run((A, "ApisixRoute", "app-podinfo-canary"), read)
        .await?;
    assert_eq!(seen, weights(PROMOTED));
    let original = env.get(A, "ApisixRoute", "app").await?;
    assert_eq!(
        original["spec"]["http"][0]["backends"],
        json!([{"serviceName": "podinfo", "servicePort": 9898}])
    );
    Ok(())
}

const GLOO_GW: &str = "gateway.solo.io/v1";
const GLOO: &str = "gloo.solo.io/v1";

/// `[primary, canary]` weights of the RouteTable route sending to both Upstreams (Gloo leaves
/// zero weights out, read as null).
fn route_table_weights(v: &Value) -> Option<Value> {
    let r = v["spec"]["routes"].as_array()?.iter().find(|r| {
        r["routeAction"]["multi"]["destinations"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    })?;
    let d = &r["routeAction"]["multi"]["destinations"];
    Some(json!([d[0]["weight"], d[1]["weight"]]))
}

fn gloo_dest(name: &str, weight: Option<i32>) -> Value {
    let mut d = json!({"destination": {"upstream": {"name": format!("test-podinfo-{name}upstream-9898"), "namespace": NS}}});
    if let Some(w) = weight {
        d["weight"] = json!(w);
    }
    d
}

fn omitted_zero(pairs: &[(i32, i32)]) -> Vec<Value> {
    let w = |x: i32| if x == 0 { Value::Null } else { json!(x) };
    pairs.iter().map(|(p, c)| json!([w(*p), w(*c)])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gloo_shifts_route_table_weights_through_generated_upstreams_and_keeps_user_routes()
-> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gloo.yaml"]).await?;
    env.start_controller("gloo", passing(), Default::default());
    // The upstreamRef Upstream only carries settings for the generated Upstreams.
    let tuning = json!({"connectTimeout": "2s", "maxRequestsPerConnection": 51});
    env.apply(json!({"apiVersion": GLOO, "kind": "Upstream",
        "metadata": {"name": "config-upstream", "namespace": NS},
        "spec": {"static": {"hosts": [{"addr": "example.com", "port": 80}]}, "connectionConfig": tuning}}))
    .await?;
    env.init(
        "gloo",
        json!({"upstreamRef": {"apiVersion": GLOO, "kind": "Upstream", "name": "config-upstream", "namespace": NS}}),
    )
    .await?;
    // Each Upstream selects the pods of its Service: `app: podinfo-primary` / `app: podinfo`.
    for (role, selector_value) in [("primary", "podinfo-primary"), ("canary", "podinfo")] {
        let name = format!("test-podinfo-{role}upstream-9898");
        let up = env.get(GLOO, "Upstream", &name).await?;
        assert_eq!(
            up["spec"],
            json!({"kube": {"serviceName": format!("podinfo-{role}"), "serviceNamespace": NS, "servicePort": 9898,
                "selector": {"app": selector_value}}, "connectionConfig": tuning}),
            "{name}"
        );
        assert_eq!(up["metadata"]["ownerReferences"][0]["kind"], "Canary");
    }
    let rt = env.get(GLOO_GW, "RouteTable", "podinfo").await?;
    assert_eq!(rt["metadata"]["ownerReferences"][0]["kind"], "Canary");
    let user = json!({"matchers": [{"prefix": "/admin"}],
        "routeAction": {"single": {"upstream": {"name": "admin", "namespace": NS}}}});
    env.json_patch(
        GLOO_GW,
        "RouteTable",
        "podinfo",
        json!([
        {"op": "add", "path": "/spec/routes/0", "value": user},
        {"op": "add", "path": "/metadata/annotations/example.com~1team", "value": "web"}]),
    )
    .await?;
    let seen = env
        .promoted_run((GLOO_GW, "RouteTable", "podinfo"), route_table_weights)
        .await?;
    assert_eq!(seen, omitted_zero(PROMOTED));
    let rt = env.get(GLOO_GW, "RouteTable", "podinfo").await?;
    assert_eq!(
        rt["spec"],
        json!({"routes": [user, {"routeAction": {"multi": {"destinations": [
            gloo_dest("primary", Some(100)), gloo_dest("canary", None)]}},
            "inheritablePathMatchers": true}]})
    );
    assert_eq!(rt["metadata"]["annotations"]["example.com/team"], "web");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gloo_rolls_back_to_the_primary_at_the_failing_step() -> anyhow::Result<()> {
    let mut env = Env::ready(&["gloo.yaml"], "gloo", Arc::new(FailAt(40)), json!({})).await?;
    let seen = env
        .rolled_back_run((GLOO_GW, "RouteTable", "podinfo"), route_table_weights)
        .await?;
    assert_eq!(seen, omitted_zero(ROLLED_BACK_AT_40));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gloo_ab_testing_matches_headers_and_keeps_everyone_else_on_the_primary()
-> anyhow::Result<()> {
    let mut env = Env::ready(
        &["gloo.yaml"],
        "gloo",
        passing(),
        json!({"analysis": {"stepWeight": null, "maxWeight": null, "iterations": 2,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}, "method": {"exact": "GET"}}]}}),
    )
    .await?;
    let seen = env
        .promoted_run((GLOO_GW, "RouteTable", "podinfo"), |v| {
            Some(v["spec"]["routes"].clone())
        })
        .await?;
    let w = |x: i32| (x != 0).then_some(x);
    let routes = |p: i32, c: i32| {
        json!([
            {"matchers": [{"headers": [{"name": "x-canary", "value": "insider"}], "methods": ["GET"]}],
             "routeAction": {"multi": {"destinations": [gloo_dest("primary", w(p)), gloo_dest("canary", w(c))]}},
             "inheritablePathMatchers": true},
            {"routeAction": {"multi": {"destinations": [gloo_dest("primary", Some(100))]}},
             "inheritablePathMatchers": true}])
    };
    assert_eq!(seen, vec![routes(100, 0), routes(0, 100), routes(100, 0)]);
    Ok(())
}

const MESH_V2: &str = "appmesh.k8s.aws/v1beta2";
const MESH_V1: &str = "appmesh.k8s.aws/v1beta1";

/// `[primary, canary]` weights of the apex VirtualRouter's weighted route (canary listed first).
fn virtual_router_weights(v: &Value) -> Option<Value> {
    let t = &v["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"];
    Some(json!([t[1]["weight"], t[0]["weight"]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_mesh_v1beta2_shifts_virtual_router_weights_and_keeps_the_mesh_controllers_fields()
-> anyhow::Result<()> {
    let mut env = Env::ready(&["appmesh.yaml"], "appmesh:v1beta2", passing(), json!({"service": {"timeout": "15s", "backends": ["backend1"], "hosts": ["app.example.com"]}})).await?;
    for (name, selector) in [
        ("podinfo-primary", "podinfo-primary"),
        ("podinfo-canary", "podinfo"),
    ] {
        let vn = env.get(MESH_V2, "VirtualNode", name).await?;
        assert_eq!(vn["metadata"]["ownerReferences"][0]["kind"], "Canary");
        assert_eq!(
            vn["spec"],
            json!({"podSelector": {"matchLabels": {"app": selector}},
                "listeners": [{"portMapping": {"port": 9898, "protocol": "http"},
                    "timeout": {"http": {"perRequest": {"unit": "ms", "value": 15000}}}}],
                "serviceDiscovery": {"dns": {"hostname": format!("{name}.test.svc.cluster.local.")}},
                "backends": [{"virtualService": {"virtualServiceRef": {"name": "backend1"}}}]})
        );
    }
    let vs = env.get(MESH_V2, "VirtualService", "podinfo").await?;
    assert_eq!(
        vs["spec"],
        json!({"provider": {"virtualRouter": {"virtualRouterRef": {"name": "podinfo"}}}})
    );
    assert_eq!(
        vs["metadata"]["annotations"]["gateway.appmesh.k8s.aws/domain"],
        "app.example.com,"
    );
    let canary_vr = env.get(MESH_V2, "VirtualRouter", "podinfo-canary").await?;
    assert_eq!(
        canary_vr["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"],
        json!([{"virtualNodeRef": {"name": "podinfo-canary"}, "weight": 100},
               {"virtualNodeRef": {"name": "podinfo-primary"}, "weight": 0}])
    );
    // The App Mesh controller's webhook fills in meshRef; a user adds a route of their own.
    let mesh_ref = json!({"name": "global", "uid": "mesh-uid"});
    let user = json!({"name": "admin", "priority": 1, "httpRoute": {"match": {"prefix": "/admin"},
        "action": {"weightedTargets": [{"virtualNodeRef": {"name": "admin"}, "weight": 1}]}}});
    env.json_patch(
        MESH_V2,
        "VirtualRouter",
        "podinfo",
        json!([
        {"op": "add", "path": "/spec/meshRef", "value": mesh_ref},
        {"op": "add", "path": "/spec/routes/-", "value": user}]),
    )
    .await?;
    let seen = env
        .promoted_run(
            (MESH_V2, "VirtualRouter", "podinfo"),
            virtual_router_weights,
        )
        .await?;
    assert_eq!(seen, weights(PROMOTED));
    let vr = env.get(MESH_V2, "VirtualRouter", "podinfo").await?;
    assert_eq!(vr["spec"]["meshRef"], mesh_ref);
    assert_eq!(vr["spec"]["routes"][1], user);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_mesh_v1beta2_rolls_back_to_the_primary_at_the_failing_step() -> anyhow::Result<()> {
    let mut env = Env::ready(
        &["appmesh.yaml"],
        "appmesh:v1beta2",
        Arc::new(FailAt(40)),
        json!({}),
    )
    .await?;
    let seen = env
        .rolled_back_run(
            (MESH_V2, "VirtualRouter", "podinfo"),
            virtual_router_weights,
        )
        .await?;
    assert_eq!(seen, weights(ROLLED_BACK_AT_40));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_mesh_v1beta2_ab_testing_routes_matching_headers_by_priority() -> anyhow::Result<()> {
    let mut env = Env::ready(
        &["appmesh.yaml"],
        "appmesh:v1beta2",
        passing(),
        json!({"analysis": {"stepWeight": null, "maxWeight": null, "iterations": 2,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
    )
    .await?;
    let seen = env
        .promoted_run((MESH_V2, "VirtualRouter", "podinfo"), |v| {
            Some(v["spec"]["routes"].clone())
        })
        .await?;
    let t = |n: &str, w: i32| json!({"virtualNodeRef": {"name": n}, "weight": w});
    let routes = |p: i32, c: i32| {
        json!([
            {"name": "podinfo-a", "priority": 10, "httpRoute": {
                "match": {"prefix": "/", "headers": [{"name": "x-canary", "match": {"exact": "insider"}}]},
                "action": {"weightedTargets": [t("podinfo-canary", c), t("podinfo-primary", p)]}}},
            {"name": "podinfo-b", "priority": 20, "httpRoute": {"match": {"prefix": "/"},
                "action": {"weightedTargets": [t("podinfo-primary", 100)]}}}])
    };
    assert_eq!(seen, vec![routes(100, 0), routes(0, 100), routes(100, 0)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_mesh_v1beta1_shifts_the_weights_inside_the_virtual_service() -> anyhow::Result<()> {
    let mut env = Env::ready(
        &["appmesh.yaml"],
        "appmesh",
        passing(),
        json!({"service": {"meshName": "global"}}),
    )
    .await?;
    for (name, host) in [
        ("podinfo", "podinfo-primary.test"),
        ("podinfo-primary", "podinfo-primary.test"),
        ("podinfo-canary", "podinfo-canary.test"),
    ] {
        let vn = env.get(MESH_V1, "VirtualNode", name).await?;
        assert_eq!(vn["spec"]["meshName"], "global");
        assert_eq!(vn["spec"]["serviceDiscovery"]["dns"]["hostName"], host);
    }
    let canary_vs = env
        .get(MESH_V1, "VirtualService", "podinfo-canary.test")
        .await?;
    assert_eq!(canary_vs["spec"]["virtualRouter"]["name"], "podinfo-canary");
    let read = |v: &Value| {
        let t = &v["spec"]["routes"][0]["http"]["action"]["weightedTargets"];
        Some(json!([t[1]["weight"], t[0]["weight"]]))
    };
    let seen = env
        .promoted_run((MESH_V1, "VirtualService", "podinfo.test"), read)
        .await?;
    assert_eq!(seen, weights(PROMOTED));
    Ok(())
}
