//! Foundation tests: examples validate and round-trip, broken fixtures fail precisely, CRDs match.
use serde_json::Value;
use serin::api::validation::{Severity, ValidationContext};
use serin::cli::validate::{Summary, lint_paths};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn serin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_serin"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn lint(path: &Path) -> Summary {
    lint_paths(&[path.display().to_string()], &ValidationContext::default())
}

#[test]
fn every_example_validates_without_errors() {
    let summary = lint(&root().join("examples"));
    let errors: Vec<String> = summary
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.line())
        .collect();
    assert!(
        errors.is_empty(),
        "examples have errors:\n{}",
        errors.join("\n")
    );
    assert!(
        summary.objects.len() >= 40,
        "expected the full example set, got {}",
        summary.objects.len()
    );
}

#[test]
fn the_binary_accepts_the_examples_and_exits_zero() {
    let out = serin()
        .arg("validate")
        .arg(root().join("examples"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_document_round_trips_without_loss() {
    let mut checked = 0;
    for file in yaml_files(&root().join("examples")) {
        let text = std::fs::read_to_string(&file).expect("readable");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let original: Value = serde::Deserialize::deserialize(doc).expect("valid yaml");
            let kind = original.get("kind").and_then(Value::as_str).unwrap_or("");
            let again = match kind {
                "Canary" => round_trip::<serin::api::Canary>(&original),
                "MetricTemplate" => round_trip::<serin::api::MetricTemplate>(&original),
                "AlertProvider" => round_trip::<serin::api::AlertProvider>(&original),
                _ => continue,
            };
            assert_eq!(
                normalize(again),
                normalize(original),
                "{} lost data in a round trip",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} documents checked");
}

/// Numbers compare by value: `99` in YAML and `99.0` from an f64 field are the same number.
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Number(n)),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// parse → serialize → parse → serialize: both serializations must equal the input.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
    let typed: T = serde_json::from_value(v.clone()).expect("decodes");
    let first = serde_json::to_value(&typed).expect("encodes");
    let typed2: T = serde_json::from_value(first.clone()).expect("decodes again");
    let second = serde_json::to_value(&typed2).expect("encodes again");
    assert_eq!(first, second);
    second
}

#[test]
fn every_broken_fixture_yields_exactly_its_expected_error() {
    let files = yaml_files(&root().join("tests/fixtures/broken"));
    assert!(files.len() >= 14);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no '# expect:' line", file.display()));
        let summary = lint(&file);
        let errors: Vec<String> = summary
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: want one error, got {errors:#?}",
            file.display()
        );
        assert!(
            errors[0].starts_with(expect),
            "{}:\n want {expect}\n  got {}",
            file.display(),
            errors[0]
        );
        let out = serin().arg("validate").arg(&file).output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} should exit 1",
            file.display()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = format!("{}:1: ", file.display());
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&line) && l.contains(expect)),
            "{stdout}"
        );
    }
}

#[test]
fn flagger_documentation_canaries_validate_unchanged() {
    let dir = root().join("tests/fixtures/flagger-docs");
    let summary = lint(&dir);
    let canaries = summary
        .objects
        .iter()
        .filter(|(_, _, r)| r.kind == "Canary")
        .count();
    assert!(canaries >= 1, "no Flagger documentation canaries found");
    // A documentation page may leave a placeholder (`<REALM>`) to fill in, or use a value Flagger
    // tolerates (`apiVersion: v1` for a Deployment); such files name the single error
    // (`# expect:`) or warning (`# expect-warning:`) they must produce in a header line.
    for file in yaml_files(&dir) {
        let text = std::fs::read_to_string(&file).expect("readable");
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: "));
        let expect_warning = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect-warning: "));
        let found = |severity: Severity| -> Vec<String> {
            lint(&file)
                .findings
                .iter()
                .filter(|f| f.severity == severity)
                .map(|f| format!("{}: {}", f.path, f.message))
                .collect()
        };
        let errors = found(Severity::Error);
        fn want(e: &str) -> &str {
            e.split(" (").next().unwrap_or(e)
        }
        match expect {
            None => assert!(errors.is_empty(), "{}: {errors:#?}", file.display()),
            Some(e) => {
                assert_eq!(errors.len(), 1, "{}: {errors:#?}", file.display());
                assert!(
                    errors[0].starts_with(want(e)),
                    "{}: {errors:#?}",
                    file.display()
                );
            }
        }
        if let Some(w) = expect_warning {
            let warnings = found(Severity::Warning);
            assert!(
                warnings.iter().any(|x| x.starts_with(want(w))),
                "{}: {warnings:#?}",
                file.display()
            );
        }
    }
}

#[test]
fn committed_crds_match_the_generated_ones() {
    let committed =
        std::fs::read_to_string(root().join("crds/flagger.yaml")).expect("crds/flagger.yaml");
    let generated = serin::api::crd::to_yaml().expect("renders");
    assert!(
        committed == generated,
        "crds/flagger.yaml is stale: run `cargo run -- crds > crds/flagger.yaml`"
    );
    let out = serin().arg("crds").output().expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}

#[test]
fn stdin_and_json_output_report_the_same_findings() {
    use std::io::Write;
    let broken =
        std::fs::read(root().join("tests/fixtures/broken/unknown-provider.yaml")).expect("fixture");
    let mut child = serin()
        .args(["validate", "-", "--output", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&broken)
        .expect("writes");
    let out = child.wait_with_output().expect("finishes");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(report["errors"], 1);
    assert_eq!(report["findings"][0]["file"], "-");
    assert_eq!(report["findings"][0]["path"], "spec.provider");
    assert_eq!(report["findings"][0]["object"], "Canary/unknown-provider");
}

#[test]
fn other_kinds_and_multi_document_files_are_handled() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n---\napiVersion: flagger.app/v1beta1\nkind: AlertProvider\nmetadata: {name: a}\nspec: {type: slack, address: 'https://hooks.slack.com/x'}\n";
    let mut summary = Summary::default();
    serin::cli::validate::lint_text("mem", text, &ValidationContext::default(), &mut summary);
    assert_eq!(summary.objects.len(), 1);
    assert_eq!(
        summary.objects[0].1, 3,
        "document numbers count every document"
    );
    assert!(summary.findings.is_empty(), "{:?}", summary.findings);
}

/// Formats a Kubernetes API server or kubectl knows (apiextensions' supported list), plus `url`,
/// which Flagger's CRDs use and which every server ignores.
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "datetime",
    "duration",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "password",
    "url",
];

/// The status structs the controller stops applying, which server-side apply turns into null.
const NULLABLE: [&str; 2] = [
    "properties[status].properties[waitingFor]",
    "properties[status].properties[lastRequest]",
];

/// What a schema node carries that some supported server or kubectl version refuses, or that
/// Flagger's schema does not have.
fn portability_problems(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(values) = m.get("enum").and_then(Value::as_array)
                && values.iter().any(Value::is_null)
            {
                out.push(format!("{path}.enum: contains null"));
            }
            // `nullable` only where server-side apply leaves a null behind (src/api/crd.rs):
            // everywhere else an explicit null should be pruned, not stored.
            if m.contains_key("nullable") && !NULLABLE.iter().any(|n| path.ends_with(n)) {
                out.push(format!("{path}.nullable: present"));
            }
            if let Some(f) = m.get("format").and_then(Value::as_str)
                && !KNOWN_FORMATS.contains(&f)
            {
                out.push(format!("{path}.format: unknown format {f:?}"));
            }
            for (k, child) in m {
                if k == "properties" {
                    for (name, field) in child.as_object().into_iter().flatten() {
                        portability_problems(field, &format!("{path}.properties[{name}]"), out);
                    }
                } else if k != "enum" && k != "default" && k != "x-kubernetes-validations" {
                    portability_problems(child, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                portability_problems(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn committed_crds_pass_the_api_servers_structural_rules_and_have_no_null_in_any_enum() {
    let text =
        std::fs::read_to_string(root().join("crds/flagger.yaml")).expect("crds/flagger.yaml");
    let mut checked = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd: Value = serde::Deserialize::deserialize(doc).expect("yaml");
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for (i, version) in crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("{name}: spec.versions[{i}].schema.openAPIV3Schema");
            let schema = &version["schema"]["openAPIV3Schema"];
            let structural = serin::cluster::schema::structural_errors(schema, &path);
            assert!(structural.is_empty(), "{structural:#?}");
            let mut problems = Vec::new();
            portability_problems(schema, &path, &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
}

#[test]
fn serin_validate_reports_every_cel_rule_of_the_crd_offline() {
    // API servers before 1.25 drop CEL rules silently; `serin validate` must catch each one.
    let violations: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/cel-violations.yaml"))
            .expect("cel-violations.yaml"),
    )
    .expect("cel-violations.yaml parses");
    let rules = serin::api::crd::cel_rules(&serin::api::crd::canary());
    assert!(rules.len() >= 5, "{rules:?}");
    let ctx = ValidationContext::default();
    for (message, rule) in rules {
        let patch = violations
            .get(&message)
            .unwrap_or_else(|| panic!("no violating example for the CEL rule {rule:?}"));
        let mut spec = serde_json::json!({
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "10s", "threshold": 2, "iterations": 3},
        });
        json_patch::merge(&mut spec, patch);
        let manifest = serde_json::json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"}, "spec": spec});
        let mut summary = Summary::default();
        serin::cli::validate::lint_text(
            "cel.yaml",
            &serde_json::to_string(&manifest).expect("text"),
            &ctx,
            &mut summary,
        );
        assert!(
            summary.errors() > 0,
            "{message}: serin validate found nothing"
        );
    }
}

fn canary_text(analysis_extra: &str, service_extra: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: test}}
spec:
  provider: istio
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service:
    port: 9898
{service_extra}
  analysis:
    interval: 1m
    threshold: 5
    stepWeight: 10
{analysis_extra}
"
    )
}

fn findings_of(text: &str) -> Vec<(Severity, String)> {
    let mut summary = Summary::default();
    serin::cli::validate::lint_text("mem", text, &ValidationContext::default(), &mut summary);
    summary
        .findings
        .iter()
        .map(|f| (f.severity, format!("{}: {}", f.path, f.message)))
        .collect()
}

#[test]
fn a_misspelt_field_is_a_warning_that_names_the_field_meant() {
    let found = findings_of(&canary_text("    maxWieght: 50", ""));
    assert_eq!(found.len(), 1, "{found:#?}");
    let (severity, message) = &found[0];
    // The API server drops it by default (it is not refused), so it stays a warning; the
    // message says what each kind of client does with it.
    assert_eq!(*severity, Severity::Warning);
    assert!(
        message.starts_with("spec.analysis.maxWieght: unknown field (did you mean \"maxWeight\"?)"),
        "{message}"
    );
    assert!(message.contains("kubectl apply refuses it"), "{message}");
    // A field far from every known one gets no guess.
    let found = findings_of(&canary_text("    colour: blue", ""));
    assert!(
        found[0]
            .1
            .starts_with("spec.analysis.colour: unknown field: "),
        "{found:#?}"
    );
}

#[test]
fn a_misspelt_flagger_kind_is_an_error_and_other_groups_are_ignored() {
    let found =
        findings_of("apiVersion: flagger.app/v1beta1\nkind: MetricTemplat\nmetadata: {name: x}\n");
    assert_eq!(
        found,
        vec![(
            Severity::Error,
            "kind: unknown kind \"MetricTemplat\" in flagger.app (did you mean \"MetricTemplate\"?); the group has Canary, MetricTemplate, AlertProvider".to_string()
        )]
    );
    let found = findings_of("apiVersion: flagger.app/v1beta1\nmetadata: {name: x}\n");
    assert_eq!(
        found,
        vec![(
            Severity::Error,
            "kind: required field is missing".to_string()
        )]
    );
    assert!(findings_of("apiVersion: apps/v1\nkind: Canery\nmetadata: {name: x}\n").is_empty());
}

#[test]
fn every_interval_field_refuses_hours_with_the_same_message_and_go_duration_fields_take_them() {
    let found = findings_of(&canary_text(
        "    metrics:
      - name: request-success-rate
        interval: 1h
        thresholdRange: {min: 99}
    webhooks:
      - name: gate
        url: http://loadtester.test/
        timeout: 1h",
        "    timeout: 1h",
    ));
    let errors: Vec<&String> = found
        .iter()
        .filter(|(s, _)| *s == Severity::Error)
        .map(|(_, m)| m)
        .collect();
    let rule = "invalid duration \"1h\": this field takes a Go duration that starts with a whole number of seconds or minutes";
    assert_eq!(errors.len(), 2, "{found:#?}");
    for (field, e) in [
        "spec.analysis.metrics[0].interval",
        "spec.analysis.webhooks[0].timeout",
    ]
    .iter()
    .zip(&errors)
    {
        assert!(e.starts_with(&format!("{field}: {rule}")), "{e}");
    }
    let interval = findings_of(&canary_text("", "").replace("interval: 1m", "interval: 1h"));
    assert!(
        interval[0]
            .1
            .starts_with(&format!("spec.analysis.interval: {rule}")),
        "{interval:#?}"
    );
    // A malformed interval gets the same rule, not the Go-duration unit list that allows `h`.
    let malformed = findings_of(&canary_text("", "").replace("interval: 1m", "interval: 5x"));
    assert_eq!(malformed.len(), 1, "{malformed:#?}");
    assert!(
        malformed[0]
            .1
            .contains("whole number of seconds or minutes"),
        "{malformed:#?}"
    );
    assert!(
        !malformed[0].1.contains("(ns, us, ms, s, m, h)"),
        "{malformed:#?}"
    );
    // A Go-duration field says so, and names `h` because it accepts it.
    let timeout = findings_of(&canary_text("", "    timeout: 5x"));
    assert_eq!(timeout.len(), 1, "{timeout:#?}");
    assert!(
        timeout[0]
            .1
            .starts_with("spec.service.timeout: invalid duration \"5x\": expected a Go duration")
            && timeout[0].1.contains("1h"),
        "{timeout:#?}"
    );
}

#[test]
fn an_empty_input_set_exits_2() {
    let dir = std::env::temp_dir().join(format!("serin-validate-empty-{}", std::process::id()));
    let empty_dir = dir.join("nothing");
    std::fs::create_dir_all(&empty_dir).expect("temp dir");
    let comments = dir.join("comments.yaml");
    std::fs::write(&comments, "# only a comment\n---\n").expect("writes");
    for path in [&empty_dir, &comments] {
        let out = serin().arg("validate").arg(path).output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing to check"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A document of another kind is something to check: exit 0.
    let other = dir.join("configmap.yaml");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .expect("writes");
    let out = serin().arg("validate").arg(&other).output().expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0));
}
