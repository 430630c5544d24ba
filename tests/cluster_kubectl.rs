//! The real kubectl against `serin cluster`: apply a CRD and a Deployment, get them back, discover.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {kind: Gadget, plural: gadgets, singular: gadget, shortNames: [gd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: "nginx:1.25"}
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch_dir() -> PathBuf {
    scratch_dir_named("main")
}

fn scratch_dir_named(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serin-kubectl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The client minor version of the kubectl on PATH (0 if it cannot be told).
fn kubectl_minor() -> u32 {
    let out = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .unwrap_or(0)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl 1.24 or newer must be on PATH (.ci/run checks it)")
}

/// `kubectl apply` of `crds/` (which must create the Canary CRD) and then of
/// `deploy/install.yaml`; the second output.
fn apply_crds_and_bundle(root: &Path, kubeconfig: &Path) -> String {
    let crds = root.join("crds");
    let out = ok(kubectl(
        kubeconfig,
        &["apply", "-f", crds.to_str().unwrap_or_default()],
    ));
    assert!(out.contains("canaries.flagger.app created"), "{out}");
    let bundle = root.join("deploy/install.yaml");
    ok(kubectl(
        kubeconfig,
        &["apply", "-f", bundle.to_str().unwrap_or_default()],
    ))
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn kubectl_applies_and_gets_against_serin_cluster() {
    let dir = scratch_dir();
    let (server, kubeconfig) = start_cluster(&dir);
    std::fs::create_dir_all(dir.join("crds")).expect("crds dir");
    std::fs::write(dir.join("crds/gadget.yaml"), CRD).expect("crd file");
    std::fs::write(dir.join("deploy.yaml"), DEPLOYMENT).expect("deployment file");
    std::fs::write(
        dir.join("gadget.yaml"),
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {}\n",
    )
    .expect("gadget");

    let crds = dir.join("crds");
    let out = ok(kubectl(
        &kubeconfig,
        &["apply", "-f", crds.to_str().unwrap_or_default()],
    ));
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created"),
        "{out}"
    );
    let deploy = dir.join("deploy.yaml");
    let out = ok(kubectl(
        &kubeconfig,
        &["apply", "-f", deploy.to_str().unwrap_or_default()],
    ));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = ok(kubectl(
        &kubeconfig,
        &["apply", "-f", deploy.to_str().unwrap_or_default()],
    ));
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");

    let out = ok(kubectl(&kubeconfig, &["get", "deploy"]));
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(out.lines().any(|l| l.starts_with("web ")), "{out}");

    let gadget = dir.join("gadget.yaml");
    ok(kubectl(
        &kubeconfig,
        &["apply", "-f", gadget.to_str().unwrap_or_default()],
    ));
    let out = ok(kubectl(
        &kubeconfig,
        &["get", "gd", "g1", "-o", "jsonpath={.spec.size}"],
    ));
    assert_eq!(out, "3");
    std::fs::write(
        dir.join("junk.yaml"),
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g2}\nspec: {junk: 1}\n",
    )
    .expect("junk");
    let junk = dir.join("junk.yaml");
    let out = kubectl(
        &kubeconfig,
        &["apply", "-f", junk.to_str().unwrap_or_default()],
    );
    if kubectl_minor() >= 25 {
        // kubectl asks for server-side strict field validation: the server rejects the field.
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("unknown field \"spec.junk\""),
            "{out:?}"
        );
    } else {
        // Older kubectl (Debian's 1.20) does not ask for it: the server prunes the field.
        assert!(out.status.success(), "{out:?}");
        let spec = ok(kubectl(
            &kubeconfig,
            &["get", "gadget", "g2", "-o", "jsonpath={.spec}"],
        ));
        assert!(!spec.contains("junk"), "pruned: {spec}");
    }
    let out = ok(kubectl(&kubeconfig, &["get", "gadgets"]));
    assert!(
        out.starts_with("NAME") && out.contains("SIZE") && out.contains("g1"),
        "{out}"
    );

    let out = ok(kubectl(&kubeconfig, &["get", "--raw", "/apis"]));
    let apis: serde_json::Value = serde_json::from_str(&out).expect("APIGroupList json");
    assert_eq!(apis["kind"], "APIGroupList");
    assert!(
        apis["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["name"] == "example.com"))
    );

    ok(kubectl(
        &kubeconfig,
        &["scale", "deploy", "web", "--replicas=4"],
    ));
    let out = ok(kubectl(
        &kubeconfig,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
    ));
    assert_eq!(out, "4");
    let out = ok(kubectl(
        &kubeconfig,
        &["delete", "-f", deploy.to_str().unwrap_or_default()],
    ));
    assert!(out.contains("deleted"), "{out}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `serin cluster` writing its kubeconfig into `dir`.
fn start_cluster(dir: &Path) -> (Server, PathBuf) {
    start_cluster_with(dir, &[])
}

/// Starts `serin cluster` with extra arguments, writing its kubeconfig into `dir`.
fn start_cluster_with(dir: &Path, extra: &[&str]) -> (Server, PathBuf) {
    let kubeconfig = dir.join("kubeconfig");
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["cluster", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
            .spawn()
            .expect("serin cluster starts"),
    );
    let start = Instant::now();
    while !kubeconfig.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kubeconfig never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, kubeconfig)
}

#[test]
fn kubectl_installs_the_crds_and_the_deploy_bundle_with_validation_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("serin-kubectl-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (server, kubeconfig) = start_cluster(&dir);
    let out = apply_crds_and_bundle(root, &kubeconfig);
    for line in [
        "namespace/serin-system created",
        "customresourcedefinition.apiextensions.k8s.io/canaries.flagger.app ",
        "serviceaccount/serin created",
        "clusterrole.rbac.authorization.k8s.io/serin created",
        "clusterrolebinding.rbac.authorization.k8s.io/serin created",
        "role.rbac.authorization.k8s.io/serin-leader-election created",
        "rolebinding.rbac.authorization.k8s.io/serin-leader-election created",
        "service/serin created",
        "deployment.apps/serin created",
        "poddisruptionbudget.policy/serin created",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Applying again changes nothing. (kubectl's strategic merge patch always resends a
    // PodDisruptionBudget's selector, whose patch strategy is `replace`: it reports
    // "configured" with nothing changed.)
    let bundle = root.join("deploy/install.yaml");
    let out = ok(kubectl(
        &kubeconfig,
        &["apply", "-f", bundle.to_str().unwrap_or_default()],
    ));
    assert!(
        out.lines()
            .all(|l| l.ends_with(" unchanged") || l.starts_with("poddisruptionbudget.policy/")),
        "second apply:\n{out}"
    );
    let out = ok(kubectl(
        &kubeconfig,
        &[
            "get",
            "clusterrole",
            "serin",
            "-o",
            "jsonpath={.rules[0].resources}",
        ],
    ));
    assert!(out.contains("canaries"), "{out}");
    let out = ok(kubectl(
        &kubeconfig,
        &[
            "-n",
            "serin-system",
            "get",
            "pdb",
            "serin",
            "-o",
            "jsonpath={.spec.minAvailable}",
        ],
    ));
    assert_eq!(out, "1");
    let loadtester = root.join("deploy/loadtester");
    let ns = dir.join("ns.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: test}\n",
    )
    .expect("ns");
    ok(kubectl(
        &kubeconfig,
        &["apply", "-f", ns.to_str().unwrap_or_default()],
    ));
    let out = ok(kubectl(
        &kubeconfig,
        &[
            "apply",
            "-n",
            "test",
            "-k",
            loadtester.to_str().unwrap_or_default(),
        ],
    ));
    assert!(out.contains("deployment.apps/loadtester created"), "{out}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

const CANARY: &str = r#"apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5, stepWeight: 10}
"#;

#[test]
fn kubectl_installs_serins_crds_explains_them_and_refuses_bad_canaries() {
    let dir = scratch_dir_named("crds");
    let (server, kubeconfig) = start_cluster(&dir);
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let out = ok(kubectl(
        &kubeconfig,
        &[
            "apply",
            "--validate=strict",
            "-f",
            crds.to_str().unwrap_or_default(),
        ],
    ));
    for name in ["canaries", "metrictemplates", "alertproviders"] {
        assert!(
            out.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name}.flagger.app created"
            )),
            "{out}"
        );
    }
    // kubectl explain reads the OpenAPI v3 document of the group version: the CRD's schema and
    // a built-in kind's real schema are both there.
    let out = ok(kubectl(
        &kubeconfig,
        &["explain", "canary.spec.analysis.stepWeight"],
    ));
    assert!(out.contains("FIELD: stepWeight <integer>"), "{out}");
    let out = ok(kubectl(&kubeconfig, &["explain", "canary.status.phase"]));
    assert!(out.contains("ENUM:") && out.contains("Promoting"), "{out}");
    assert!(!out.contains("null"), "{out}");
    let out = ok(kubectl(
        &kubeconfig,
        &["explain", "deployment.spec.replicas"],
    ));
    assert!(out.contains("FIELD: replicas <integer>"), "{out}");

    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().unwrap_or_default().to_string()
    };
    let good = write("good.yaml", CANARY);
    ok(kubectl(
        &kubeconfig,
        &["apply", "--validate=strict", "-f", &good],
    ));
    let unknown = write(
        "unknown.yaml",
        &CANARY
            .replace("podinfo}", "unknown}")
            .replace("{port: 9898}", "{port: 9898, portt: 1}"),
    );
    let out = kubectl(&kubeconfig, &["apply", "--validate=strict", "-f", &unknown]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown field \"spec.service.portt\""),
        "{err}"
    );
    let ill_typed = write(
        "ill-typed.yaml",
        &CANARY
            .replace("podinfo}", "ill-typed}")
            .replace("stepWeight: 10", "stepWeight: ten"),
    );
    let out = kubectl(
        &kubeconfig,
        &["apply", "--validate=strict", "-f", &ill_typed],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("spec.analysis.stepWeight in body must be of type integer"),
        "{err}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubectl_get_events_shows_an_event_written_through_events_k8s_io() {
    let dir = scratch_dir_named("events");
    let (server, kubeconfig) = start_cluster(&dir);
    let event = dir.join("event.yaml");
    // The shape kube-runtime's Recorder writes: no lastTimestamp, only eventTime.
    std::fs::write(
        &event,
        r#"apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: podinfo.17f0a1, namespace: default}
eventTime: "2025-01-01T00:00:00.000000Z"
action: Promote
reason: Synced
type: Warning
note: "Canary analysis failed, rolling back"
regarding: {apiVersion: flagger.app/v1beta1, kind: Canary, name: podinfo, namespace: default}
reportingController: serin
reportingInstance: serin-0
"#,
    )
    .expect("event file");
    ok(kubectl(
        &kubeconfig,
        &["create", "-f", event.to_str().unwrap_or_default()],
    ));
    let out = ok(kubectl(&kubeconfig, &["get", "events", "-n", "default"]));
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{out}"
    );
    let row = lines.next().unwrap_or_default();
    for cell in [
        "Warning",
        "Synced",
        "canary/podinfo",
        "Canary analysis failed, rolling back",
    ] {
        assert!(row.contains(cell), "missing {cell:?} in:\n{out}");
    }
    assert!(
        !row.contains("<unknown>"),
        "LAST SEEN falls back to eventTime:\n{out}"
    );
    let out = ok(kubectl(
        &kubeconfig,
        &[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            "involvedObject.kind=Canary",
            "-o",
            "jsonpath={.items[0].message}",
        ],
    ));
    assert_eq!(out, "Canary analysis failed, rolling back");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubectl_against_a_1_24_cluster_validates_client_side_and_refuses_a_null_in_a_crd_enum() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch_dir_named("k124");
    let (server, kubeconfig) = start_cluster_with(&dir, &["--kube-version", "1.24", "--no-sim"]);
    let out = ok(kubectl(&kubeconfig, &["version", "-o", "json"]));
    assert!(out.contains("\"minor\": \"24\""), "{out}");

    // The CRD as it was before the fix: `null` at the end of the status.phase enum.
    let crd = std::fs::read_to_string(root.join("crds/flagger.yaml")).expect("crds/flagger.yaml");
    let marker = "\n                - Terminated\n";
    assert_eq!(crd.matches(marker).count(), 1, "the phase enum moved");
    let with_null = crd.replacen(
        marker,
        "\n                - Terminated\n                - null\n",
        1,
    );
    let old = dir.join("old-crd.yaml");
    std::fs::write(&old, with_null).expect("old crd");
    let out = kubectl(
        &kubeconfig,
        &["apply", "-f", old.to_str().unwrap_or_default()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "unknown object type \"nil\" in CustomResourceDefinition.spec.versions[0].schema.openAPIV3Schema.properties.status.properties.phase.enum[12]"
            ),
        "{err}"
    );

    // Today's CRDs and the install bundle pass the same client-side validation.
    let out = apply_crds_and_bundle(root, &kubeconfig);
    assert!(out.contains("deployment.apps/serin created"), "{out}");

    // A Canary with an unknown field is refused by kubectl itself, from the CRD's v2 schema.
    let unknown = dir.join("unknown.yaml");
    std::fs::write(
        &unknown,
        CANARY
            .replace("podinfo}", "unknown}")
            .replace("{port: 9898}", "{port: 9898, portt: 1}"),
    )
    .expect("canary");
    let out = kubectl(
        &kubeconfig,
        &[
            "apply",
            "--validate=strict",
            "-f",
            unknown.to_str().unwrap_or_default(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("error validating")
            && err.contains("unknown field \"portt\" in app.flagger.v1beta1.Canary.spec.service"),
        "{err}"
    );
    // Without client-side validation the 1.24 server ignores `fieldValidation` and prunes.
    ok(kubectl(
        &kubeconfig,
        &[
            "apply",
            "--validate=false",
            "-f",
            unknown.to_str().unwrap_or_default(),
        ],
    ));
    let out = ok(kubectl(
        &kubeconfig,
        &["get", "canary", "unknown", "-o", "jsonpath={.spec.service}"],
    ));
    assert_eq!(out, r#"{"port":9898}"#);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubectl_against_the_default_cluster_leaves_validation_to_the_server() {
    let dir = scratch_dir_named("k134");
    let (server, kubeconfig) = start_cluster_with(&dir, &["--no-sim"]);
    let crd =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/flagger.yaml"))
            .expect("crds/flagger.yaml");
    let old = dir.join("old-crd.yaml");
    std::fs::write(
        &old,
        crd.replacen(
            "\n                - Terminated\n",
            "\n                - Terminated\n                - null\n",
            1,
        ),
    )
    .expect("old crd");
    // A 1.25+ server accepts `null` in an enum, and kubectl does not validate client-side.
    let out = ok(kubectl(
        &kubeconfig,
        &["apply", "-f", old.to_str().unwrap_or_default()],
    ));
    assert!(out.contains("canaries.flagger.app created"), "{out}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
