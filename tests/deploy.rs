//! The install bundle in deploy/ and charts/serin/: generated files match the code, kustomize
//! renders the same objects as deploy/install.yaml, and every overlay sets its provider.
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

#[path = "support/manifests.rs"]
mod manifests;
use manifests::root;

/// Objects of a multi-document YAML stream, keyed by apiVersion/kind/namespace/name.
fn objects(text: &str) -> BTreeMap<String, Value> {
    manifests::objects(text, |v| {
        use manifests::field;
        format!(
            "{}/{}/{}/{}",
            field(v, "/apiVersion"),
            field(v, "/kind"),
            field(v, "/metadata/namespace"),
            field(v, "/metadata/name")
        )
    })
}

/// Numbers as values (kustomize writes `65535.0` where serde writes `65535`).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        _ => v.clone(),
    }
}

/// The JSON pointer of the first difference between two values, if any.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{at}/{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| difference(p, q, &format!("{at}/{i}"))),
        _ => (normalize(a) != normalize(b)).then(|| format!("{at}: {a} != {b}")),
    }
}

fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(root())
        .output()
        .expect(
            "kubectl (with its built-in kustomize) must be installed to test deploy/: \
             install kubectl 1.24 or newer (.ci/run checks for it)",
        );
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn every_generated_file_matches_the_code() {
    let mut stale = Vec::new();
    for (path, want) in serin::install::files().expect("render the bundle") {
        let have = std::fs::read_to_string(root().join(&path)).unwrap_or_default();
        if have != want {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `{}`",
        serin::install::REGENERATE
    );
}

#[test]
fn the_bundle_carries_the_committed_crds() {
    let crds = std::fs::read_to_string(root().join("crds/flagger.yaml")).expect("crds");
    let bundle = objects(
        &std::fs::read_to_string(root().join("deploy/install.yaml")).expect("install.yaml"),
    );
    for (key, crd) in objects(&crds) {
        assert_eq!(
            bundle.get(&key),
            Some(&crd),
            "{key} differs from crds/flagger.yaml"
        );
    }
}

#[test]
fn kustomize_renders_the_same_objects_as_install_yaml() {
    let bundle = objects(
        &std::fs::read_to_string(root().join("deploy/install.yaml")).expect("install.yaml"),
    );
    let rendered = objects(&kustomize("deploy"));
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        bundle.keys().collect::<Vec<_>>()
    );
    for (key, obj) in &bundle {
        let diff = difference(&rendered[key], obj, "");
        assert!(diff.is_none(), "{key} differs at {diff:?}");
    }
}

fn args_of(objs: &BTreeMap<String, Value>) -> Vec<String> {
    let d = objs
        .get("apps/v1/Deployment/serin-system/serin")
        .expect("the controller Deployment");
    serde_json::from_value(d["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .expect("args")
}

#[test]
fn every_overlay_sets_its_provider_and_prometheus() {
    let base = objects(&kustomize("deploy"));
    for p in serin::install::PROFILES {
        let rendered = objects(&kustomize(&format!("deploy/overlays/{}", p.overlay)));
        let args = args_of(&rendered);
        assert!(
            args.contains(&format!("--mesh-provider={}", p.mesh_provider)),
            "{}: {args:?}",
            p.overlay
        );
        assert!(
            args.contains(&format!("--metrics-server={}", p.metrics_server)),
            "{}: {args:?}",
            p.overlay
        );
        assert!(args.contains(&"--enable-leader-election".to_string()));
        // Only the args differ from the base.
        assert_eq!(
            rendered.keys().collect::<Vec<_>>(),
            base.keys().collect::<Vec<_>>()
        );
        for (key, obj) in &base {
            if !key.ends_with("/Deployment/serin-system/serin") {
                let diff = difference(&rendered[key], obj, "");
                assert!(diff.is_none(), "{}: {key} differs at {diff:?}", p.overlay);
            }
        }
    }
}

#[test]
fn the_load_tester_kustomization_renders_its_deployment_and_service() {
    let rendered = objects(&kustomize("deploy/loadtester"));
    let keys: Vec<&String> = rendered.keys().collect();
    assert_eq!(
        keys,
        ["apps/v1/Deployment//loadtester", "v1/Service//loadtester"]
    );
}

/// The container args of every Deployment in a rendered bundle.
fn container_args(objs: &BTreeMap<String, Value>) -> Vec<(String, Vec<String>)> {
    objs.iter()
        .filter(|(_, v)| v["kind"] == "Deployment")
        .flat_map(|(key, v)| {
            v["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |c| {
                    let args = c["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect();
                    (key.clone(), args)
                })
        })
        .collect()
}

#[test]
fn the_shipped_deployments_args_parse_with_the_real_command_line() {
    // The image's entrypoint is `serin`; the Deployment's args name the subcommand and its flags,
    // so a flag the binary does not know would crash-loop every Pod.
    use clap::Parser;
    let mut rendered = objects(&kustomize("deploy"));
    rendered.extend(objects(&kustomize("deploy/loadtester")));
    for overlay in ["kubernetes", "gatewayapi", "istio", "linkerd", "nginx"] {
        rendered.extend(
            objects(&kustomize(&format!("deploy/overlays/{overlay}")))
                .into_iter()
                .map(|(k, v)| (format!("{overlay}:{k}"), v)),
        );
    }
    let all = container_args(&rendered);
    assert!(all.len() >= 7, "{all:?}");
    for (key, args) in all {
        let argv = std::iter::once("serin".to_string()).chain(args.iter().cloned());
        let argv = serin::cli::controller::normalize_flagger_flags(argv);
        if let Err(e) = serin::cli::Cli::try_parse_from(argv) {
            panic!("{key}: args {args:?} do not parse: {e}");
        }
    }
}
