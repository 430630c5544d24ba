//! Packaging: the Helm chart (rendered and linted by helm-python-sdk through
//! tests/packaging/helm_render.py) agrees with deploy/install.yaml, and the Dockerfile agrees with
//! both on image, user and entrypoint.
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

#[path = "support/manifests.rs"]
mod manifests;
use manifests::root;

/// Objects of multi-document YAML, keyed by kind/name.
fn objects(text: &str) -> BTreeMap<String, Value> {
    manifests::objects(text, |v| {
        format!(
            "{}/{}",
            manifests::field(v, "/kind"),
            manifests::field(v, "/metadata/name")
        )
    })
}

struct Rendered {
    sdk: String,
    /// Case name → objects of every template.
    renders: BTreeMap<String, BTreeMap<String, Value>>,
    /// Case name → lint report.
    lint: BTreeMap<String, Value>,
}

/// Renders the chart once per value set, as release `serin` in `serin-system`.
fn render(cases: Value) -> Rendered {
    let mut child = Command::new("python3")
        .arg(root().join("tests/packaging/helm_render.py"))
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to test the Helm chart (apt-get install -y python3)");
    let req = json!({"chart": "charts/serin", "release": "serin", "namespace": "serin-system", "cases": cases});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success(),
        "tests/packaging/helm_render.py failed (the Helm chart tests need `pip install \
         helm-python-sdk==0.2.2`; .ci/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from helm_render.py");
    let mut renders = BTreeMap::new();
    for (case, templates) in v["renders"].as_object().expect("renders") {
        let mut objs = BTreeMap::new();
        for (path, text) in templates.as_object().expect("templates") {
            if path.ends_with(".yaml") {
                objs.extend(objects(text.as_str().unwrap_or_default()));
            }
        }
        renders.insert(case.clone(), objs);
    }
    Rendered {
        sdk: v["sdk"].as_str().unwrap_or_default().to_string(),
        renders,
        lint: v["lint"]
            .as_object()
            .expect("lint")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn install_yaml() -> BTreeMap<String, Value> {
    objects(&std::fs::read_to_string(root().join("deploy/install.yaml")).expect("install.yaml"))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_chart_lints_and_renders_with_each_value_set() {
    let r = render(json!({
        "defaults": {},
        "no-crds-no-rbac": {"crd": {"create": false}, "rbac": {"create": false}, "serviceAccount": {"create": false, "name": "existing"}},
        "service-monitor": {"serviceMonitor": {"enabled": true, "interval": "30s", "labels": {"release": "prom"}}},
        "single-replica": {"replicaCount": 1, "leaderElection": {"enabled": false}, "podDisruptionBudget": {"enabled": false}},
        "istio": {"meshProvider": "istio", "metricsServer": "http://prometheus.istio-system:9090",
                  "extraArgs": ["--cluster-name=prod"], "env": [{"name": "SLACK_URL", "value": "https://hooks.example/x"}],
                  "image": {"tag": "dev"}, "logFormat": "text"},
    }));
    assert!(r.sdk.starts_with("v4."), "Helm SDK {}", r.sdk);
    for (case, report) in &r.lint {
        let bad: Vec<&Value> = report["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["severity"].as_i64().unwrap_or(0) >= 2)
            .collect();
        assert!(bad.is_empty(), "{case}: lint {bad:?}");
        assert_eq!(report["errors"], json!([]), "{case}: lint errors");
    }
    let d = &r.renders["defaults"];
    assert!(d.contains_key("CustomResourceDefinition/canaries.flagger.app"));
    assert!(!d.contains_key("ServiceMonitor/serin"));
    let none = &r.renders["no-crds-no-rbac"];
    assert!(
        none.keys()
            .all(|k| !k.starts_with("CustomResourceDefinition/")
                && !k.starts_with("ClusterRole")
                && !k.starts_with("Role")
                && !k.starts_with("ServiceAccount/")),
        "{:?}",
        none.keys()
    );
    assert_eq!(
        none["Deployment/serin"]["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
    let sm = &r.renders["service-monitor"]["ServiceMonitor/serin"];
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "30s");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    let single = &r.renders["single-replica"];
    assert_eq!(single["Deployment/serin"]["spec"]["replicas"], 1);
    assert!(!single.contains_key("PodDisruptionBudget/serin"));
    assert!(!single.contains_key("Role/serin-leader-election"));
    let args = &container(&single["Deployment/serin"])["args"];
    assert!(!args.to_string().contains("leader-election"), "{args}");
    let istio = container(&r.renders["istio"]["Deployment/serin"]);
    let args = istio["args"].to_string();
    for want in [
        "--mesh-provider=istio",
        "--metrics-server=http://prometheus.istio-system:9090",
        "--cluster-name=prod",
        "--log-format=text",
    ] {
        assert!(args.contains(want), "{want} not in {args}");
    }
    assert_eq!(istio["image"], "ghcr.io/serin-dev/serin:dev");
    assert!(istio["env"].to_string().contains("SLACK_URL"));
}

#[test]
fn the_default_chart_and_install_yaml_agree_on_rbac_crds_and_the_controller() {
    let r = render(json!({"defaults": {}}));
    let chart = &r.renders["defaults"];
    let bundle = install_yaml();
    for key in ["ClusterRole/serin", "Role/serin-leader-election"] {
        assert_eq!(chart[key]["rules"], bundle[key]["rules"], "{key} rules");
    }
    assert_eq!(
        chart["Role/serin-leader-election"]["metadata"]["namespace"],
        bundle["Role/serin-leader-election"]["metadata"]["namespace"]
    );
    for key in [
        "ClusterRoleBinding/serin",
        "RoleBinding/serin-leader-election",
    ] {
        assert_eq!(chart[key]["roleRef"], bundle[key]["roleRef"], "{key}");
        assert_eq!(chart[key]["subjects"], bundle[key]["subjects"], "{key}");
    }
    for (key, obj) in bundle
        .iter()
        .filter(|(k, _)| k.starts_with("CustomResourceDefinition/"))
    {
        assert_eq!(chart.get(key), Some(obj), "{key}");
    }
    let (cd, bd) = (&chart["Deployment/serin"], &bundle["Deployment/serin"]);
    assert_eq!(cd["spec"]["replicas"], bd["spec"]["replicas"]);
    let (cp, bp) = (
        &cd["spec"]["template"]["spec"],
        &bd["spec"]["template"]["spec"],
    );
    assert_eq!(
        cp["securityContext"], bp["securityContext"],
        "pod securityContext"
    );
    assert_eq!(cp["serviceAccountName"], bp["serviceAccountName"]);
    let (cc, bc) = (container(cd), container(bd));
    for field in [
        "name",
        "image",
        "imagePullPolicy",
        "args",
        "env",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ] {
        assert_eq!(cc[field], bc[field], "container {field}");
    }
    assert_eq!(
        chart["Service/serin"]["spec"]["ports"],
        bundle["Service/serin"]["spec"]["ports"]
    );
    assert_eq!(
        chart["PodDisruptionBudget/serin"]["spec"]["minAvailable"],
        bundle["PodDisruptionBudget/serin"]["spec"]["minAvailable"]
    );
}

fn chart_yaml() -> Value {
    serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("charts/serin/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses")
}

#[test]
fn the_chart_version_is_the_cargo_version() {
    let c = chart_yaml();
    assert_eq!(c["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(c["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_dockerfile_deploy_and_the_chart_agree_on_image_user_and_entrypoint() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let instr = |name: &str| -> Vec<String> {
        dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_string)
            .collect()
    };
    let cargo: Value = {
        let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
        let rv = text
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = "))
            .expect("rust-version");
        json!(rv.trim_matches('"'))
    };
    let from = instr("FROM");
    assert_eq!(
        from.first().map(String::as_str),
        Some(
            format!(
                "rust:{}-bookworm AS build",
                cargo.as_str().unwrap_or_default()
            )
            .as_str()
        ),
        "the builder image follows Cargo.toml's rust-version"
    );
    assert_eq!(
        from.last().map(String::as_str),
        Some("gcr.io/distroless/cc-debian12:nonroot")
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    let uid = serin::install::RUN_AS_USER.to_string();
    assert_eq!(instr("USER"), [format!("{uid}:{uid}")]);
    assert_eq!(instr("ENTRYPOINT"), [r#"["/serin"]"#]);
    assert_eq!(instr("CMD"), [r#"["controller"]"#]);

    // deploy/: the image is the Cargo version, args start with the subcommand the image's
    // default CMD runs, and the Pod runs as the image's user.
    let bundle = install_yaml();
    let c = container(&bundle["Deployment/serin"]);
    assert_eq!(
        c["image"],
        format!("ghcr.io/serin-dev/serin:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c["args"][0], "controller");
    assert!(
        c["command"].is_null(),
        "the Deployment keeps the image's ENTRYPOINT"
    );
    assert_eq!(c["securityContext"]["runAsUser"].to_string(), uid);
    let lt = objects(
        &std::fs::read_to_string(root().join("deploy/loadtester/deployment.yaml"))
            .expect("loadtester"),
    );
    let ltc = container(&lt["Deployment/loadtester"]);
    assert_eq!(ltc["image"], c["image"]);
    assert_eq!(ltc["args"][0], "loadtester");
    assert_eq!(ltc["securityContext"]["runAsUser"].to_string(), uid);

    // The chart: repository in values.yaml, tag defaulting to appVersion.
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("charts/serin/values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    assert_eq!(
        values["image"]["repository"],
        serin::install::IMAGE_REPOSITORY
    );
    assert_eq!(values["securityContext"]["runAsUser"].to_string(), uid);
    assert_eq!(chart_yaml()["appVersion"], serin::install::IMAGE_TAG);
}

#[test]
fn the_dockerfile_copies_every_workspace_member_and_what_the_code_embeds() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let copied: Vec<String> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| p.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let manifest: toml_like::Manifest = toml_like::read(&root().join("Cargo.toml"));
    let mut needed = manifest.members;
    // include_str! of the demo's manifests.
    needed.extend([
        "src".to_string(),
        "examples".to_string(),
        "benches".to_string(),
    ]);
    for path in needed {
        let top = path.split('/').next().unwrap_or_default().to_string();
        assert!(
            copied.contains(&path) || copied.contains(&top),
            "the Dockerfile does not COPY {path} (copies {copied:?})"
        );
    }
}

/// Just enough of Cargo.toml: the workspace members.
mod toml_like {
    pub struct Manifest {
        pub members: Vec<String>,
    }

    pub fn read(path: &std::path::Path) -> Manifest {
        let text = std::fs::read_to_string(path).expect("Cargo.toml");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("members"))
            .expect("Cargo.toml has [workspace] members");
        let members = line
            .split('[')
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(']')
            .split(',')
            .map(|m| m.trim().trim_matches('"').to_string())
            .filter(|m| !m.is_empty())
            .collect();
        Manifest { members }
    }
}
