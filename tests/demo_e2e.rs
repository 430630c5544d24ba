//! The demo end to end: `serin demo --plain` with the real controller, app servers, gateway,
//! load and a real Prometheus (Debian's `prometheus` package), asserting the story's outcomes.
use std::process::Command;

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn served(line: &str, version: &str) -> u64 {
    field(line, "served")
        .split(',')
        .find_map(|vn| vn.strip_prefix(&format!("{version}:")))
        .map_or(0, |n| n.parse().expect("a count"))
}

#[test]
fn the_demo_promotes_v2_then_rolls_v3_back_without_routing_failures() {
    let prometheus = std::env::var_os("PROMETHEUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/prometheus".into());
    assert!(
        prometheus.exists(),
        "Prometheus not found at {}: install Debian's `prometheus` package \
         (apt-get install -y prometheus) or set $PROMETHEUS",
        prometheus.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["demo", "--plain", "--scenario", "all", "--prometheus"])
        .arg(&prometheus)
        .output()
        .expect("serin demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "serin demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("result "))
        .collect();
    assert_eq!(results.len(), 2, "{stdout}");

    let promote = results[0];
    assert_eq!(field(promote, "scenario"), "promote");
    assert_eq!(field(promote, "outcome"), "Succeeded", "{stdout}");
    assert_eq!(field(promote, "primary"), "v2", "{stdout}");
    assert_eq!(field(promote, "routing_failures"), "0", "{stdout}");
    assert!(
        served(promote, "v2") > 0,
        "the canary got no traffic: {promote}"
    );

    let rollback = results[1];
    assert_eq!(field(rollback, "scenario"), "rollback");
    assert_eq!(field(rollback, "outcome"), "Failed", "{stdout}");
    assert_eq!(field(rollback, "primary"), "v2", "{stdout}");
    assert_eq!(field(rollback, "routing_failures"), "0", "{stdout}");
    assert!(served(rollback, "v3") > 0, "v3 got no traffic: {rollback}");

    // Every check passed while v2 was analysed: no Warning event in the promote scenario.
    let promote_log = stdout
        .split("== scenario promote")
        .nth(1)
        .and_then(|rest| rest.split("== scenario rollback").next())
        .expect("a promote section");
    assert!(!promote_log.contains("event Warning"), "{promote_log}");

    // The story as the controller told it: weights advanced, a check failed on v3's errors and
    // the threshold rolled it back.
    assert!(
        stdout.contains("Advance podinfo.demo canary weight 60"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check request-success-rate") && stdout.contains("Fail"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Rolling back podinfo.demo failed checks threshold reached 2"),
        "{stdout}"
    );
    // Nothing the load generator sent went unanswered or unrouted.
    let load = stdout
        .lines()
        .find(|l| l.starts_with("load generator:"))
        .expect("load line");
    assert!(
        load.contains(" 0 routing failures, 0 transport errors"),
        "{load}"
    );
}
