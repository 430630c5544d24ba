//! Built-in defaulting as the real API server's `SetDefaults_*` functions and admission plugins do it,
//! so that clients comparing what they wrote with what they read see the same fields (pure).
use serde_json::{Value, json};

fn default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        let slot = m.entry(key.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = v;
        }
    }
}

fn each(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        items.iter_mut().for_each(&mut f);
    }
}

/// `imagePullPolicy` by the tag rule: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    default(p, "timeoutSeconds", json!(1));
    default(p, "periodSeconds", json!(10));
    default(p, "successThreshold", json!(1));
    default(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet") {
        default(h, "scheme", json!("HTTP"));
    }
}

fn container(c: &mut Value) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    let policy = pull_policy(c["image"].as_str().unwrap_or_default());
    default(c, "imagePullPolicy", json!(policy));
    default(c, "resources", json!({}));
    each(c, "ports", |p| default(p, "protocol", json!("TCP")));
    each(c, "env", |e| {
        if let Some(fr) = e.get_mut("valueFrom").and_then(|v| v.get_mut("fieldRef")) {
            default(fr, "apiVersion", json!("v1"));
        }
    });
    for p in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(pr) = c.get_mut(p) {
            probe(pr);
        }
    }
}

/// Defaults a PodSpec (also inside templates).
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        each(spec, list, container);
    }
    each(spec, "volumes", |v| {
        for (src, mode) in [
            ("configMap", "defaultMode"),
            ("secret", "defaultMode"),
            ("downwardAPI", "defaultMode"),
            ("projected", "defaultMode"),
        ] {
            if let Some(s) = v.get_mut(src) {
                default(s, mode, json!(420));
            }
        }
    });
}

fn template(obj: &mut Value) {
    if let Some(spec) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
    {
        pod_spec(spec);
    }
}

fn hpa_rules(rules: &mut Value, up: bool) {
    if up {
        default(rules, "stabilizationWindowSeconds", json!(0));
        default(
            rules,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                                          {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    } else {
        default(rules, "stabilizationWindowSeconds", json!(300));
        default(
            rules,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
    default(rules, "selectPolicy", json!("Max"));
}

/// Applies the built-in defaults of `plural` to an object being written.
pub fn apply(plural: &str, obj: &mut Value) {
    if matches!(
        plural,
        "deployments"
            | "replicasets"
            | "daemonsets"
            | "statefulsets"
            | "persistentvolumeclaims"
            | "pods"
            | "services"
            | "horizontalpodautoscalers"
    ) {
        default(obj, "spec", json!({}));
    }
    match plural {
        "deployments" => {
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "strategy", json!({}));
            let strategy = &mut spec["strategy"];
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                default(strategy, "rollingUpdate", json!({}));
                default(
                    &mut strategy["rollingUpdate"],
                    "maxUnavailable",
                    json!("25%"),
                );
                default(&mut strategy["rollingUpdate"], "maxSurge", json!("25%"));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            template(obj);
        }
        "replicasets" => {
            default(&mut obj["spec"], "replicas", json!(1));
            template(obj);
        }
        "daemonsets" => {
            let spec = &mut obj["spec"];
            default(spec, "updateStrategy", json!({}));
            let us = &mut spec["updateStrategy"];
            default(us, "type", json!("RollingUpdate"));
            if us["type"] == "RollingUpdate" {
                default(us, "rollingUpdate", json!({}));
                default(&mut us["rollingUpdate"], "maxUnavailable", json!(1));
                default(&mut us["rollingUpdate"], "maxSurge", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            template(obj);
        }
        "statefulsets" => {
            // 1.24's defaults: persistentVolumeClaimRetentionPolicy is alpha there (gate off), so
            // it is left as written, not defaulted to Retain/Retain as 1.27+ does.
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "updateStrategy", json!({}));
            let us = &mut spec["updateStrategy"];
            default(us, "type", json!("RollingUpdate"));
            if us["type"] == "RollingUpdate" {
                default(us, "rollingUpdate", json!({}));
                default(&mut us["rollingUpdate"], "partition", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            each(spec, "volumeClaimTemplates", |c| {
                default(c, "spec", json!({}));
                default(&mut c["spec"], "volumeMode", json!("Filesystem"));
                default(c, "status", json!({"phase": "Pending"}));
            });
            template(obj);
        }
        "persistentvolumeclaims" => {
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
        }
        "pods" => {
            let spec = &mut obj["spec"];
            pod_spec(spec);
            // The ServiceAccount, Priority and DefaultTolerationSeconds admission plugins.
            default(spec, "serviceAccountName", json!("default"));
            let sa = spec["serviceAccountName"].clone();
            default(spec, "serviceAccount", sa);
            default(spec, "enableServiceLinks", json!(true));
            default(spec, "priority", json!(0));
            default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
            default(
                spec,
                "tolerations",
                json!([
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]),
            );
        }
        "services" => {
            let spec = &mut obj["spec"];
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            each(spec, "ports", |p| {
                default(p, "protocol", json!("TCP"));
                let port = p["port"].clone();
                default(p, "targetPort", port);
            });
            if spec["type"] != "ExternalName" {
                default(spec, "ipFamilyPolicy", json!("SingleStack"));
                default(spec, "ipFamilies", json!(["IPv4"]));
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if spec["type"] == "NodePort" || spec["type"] == "LoadBalancer" {
                default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if spec["type"] == "LoadBalancer" {
                default(spec, "allocateLoadBalancerNodePorts", json!(true));
            }
        }
        "endpoints" => each(obj, "subsets", |s| {
            each(s, "ports", |p| default(p, "protocol", json!("TCP")))
        }),
        "horizontalpodautoscalers" => {
            let spec = &mut obj["spec"];
            default(spec, "minReplicas", json!(1));
            if spec["metrics"].as_array().is_none_or(Vec::is_empty) {
                spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]);
            }
            if let Some(b) = spec.get_mut("behavior").filter(|b| b.is_object()) {
                default(b, "scaleUp", json!({}));
                hpa_rules(&mut b["scaleUp"], true);
                default(b, "scaleDown", json!({}));
                hpa_rules(&mut b["scaleDown"], false);
            }
        }
        "secrets" => {
            default(obj, "type", json!("Opaque"));
        }
        "namespaces" => {
            default(obj, "spec", json!({}));
            default(&mut obj["spec"], "finalizers", json!(["kubernetes"]));
        }
        "customresourcedefinitions" => {
            default(&mut obj["spec"], "conversion", json!({"strategy": "None"}));
        }
        "ingresses" => {
            for rule in obj["spec"]["rules"].as_array_mut().into_iter().flatten() {
                for p in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
                    default(p, "pathType", json!("ImplementationSpecific"));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_follows_the_tag_rule() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/app"), "Always");
        assert_eq!(pull_policy("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn deployments_get_the_real_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]}]}}}});
        apply("deployments", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["securityContext"], json!({}));
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["containers"][0]["terminationMessagePolicy"], "File");
    }

    #[test]
    fn recreate_deployments_get_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply("deployments", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn service_ports_default_protocol_and_target_port() {
        let mut s = json!({"spec": {"ports": [{"port": 80}, {"port": 90, "targetPort": "http"}]}});
        apply("services", &mut s);
        assert_eq!(
            s["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80},
                                               {"port": 90, "protocol": "TCP", "targetPort": "http"}])
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["internalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn hpa_behavior_is_filled_only_when_given() {
        let mut h = json!({"spec": {"maxReplicas": 3}});
        apply("horizontalpodautoscalers", &mut h);
        assert!(h["spec"].get("behavior").is_none());
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let mut h =
            json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        apply("horizontalpodautoscalers", &mut h);
        assert_eq!(
            h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(h["spec"]["behavior"]["scaleUp"]["selectPolicy"], "Max");
    }
}
