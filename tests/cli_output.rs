//! The binary's output hygiene: a closed stdout pipe ends every printing command quietly (exit 0,
//! no panic), and logs carry ANSI colours only on a terminal without `NO_COLOR`.
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn serin(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_serin"));
    c.args(args).current_dir(root()).env_remove("RUST_LOG");
    c
}

/// Spawns `cmd` with stdout and stderr piped and no stdin.
fn spawn_piped(cmd: &mut Command) -> std::process::Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawns serin")
}

/// Runs `args` with stdout piped and its reading end closed at once, so the first write fails
/// with EPIPE whatever its size; returns the exit code and stderr.
fn with_closed_stdout(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = spawn_piped(&mut cmd);
    drop(child.stdout.take());
    let status = wait_at_most(&mut child, Duration::from_secs(120));
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("reads stderr");
    (status, err)
}

fn wait_at_most(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waits") {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("serin did not end within {limit:?} after its stdout was closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly_with_exit_0() {
    let broken = root().join("tests/fixtures/broken");
    let broken = broken.to_str().expect("utf-8 path");
    let commands: [&[&str]; 5] = [
        &["crds"],
        &["manifests"],
        &["manifests", "--loadtester"],
        &["validate", "-o", "json", "examples"],
        // Text findings of the broken fixtures: exit 1 when read, 0 when nobody reads them.
        &["validate", broken],
    ];
    for args in commands {
        // The command does print something, so the closed pipe is really hit.
        let read = serin(args).output().expect("runs");
        assert!(
            !read.stdout.is_empty(),
            "serin {args:?} printed nothing: {}",
            String::from_utf8_lossy(&read.stderr)
        );
        let (code, stderr) = with_closed_stdout(serin(args));
        assert_eq!(code, Some(0), "serin {args:?}: stderr {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "serin {args:?}: {stderr}"
        );
    }
}

#[test]
fn the_embedded_cluster_stops_quietly_when_its_stdout_is_closed() {
    let dir = std::env::temp_dir().join(format!("serin-cli-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    let (code, stderr) = with_closed_stdout(serin(&[
        "cluster",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8 path"),
    ]));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn logs_written_to_a_file_carry_no_ansi_codes() {
    let dir = std::env::temp_dir().join(format!("serin-cli-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("loadtester.log");
    let file = std::fs::File::create(&log).expect("log file");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let mut child = serin(&["loadtester", "--port", &port])
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawns the load tester");
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read(&log).expect("reads the log");
        if String::from_utf8_lossy(&text).contains("listening") {
            break text;
        }
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("no startup log line: {:?}", String::from_utf8_lossy(&text));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !text.contains(&0x1b),
        "ANSI codes in a log file: {:?}",
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn the_demo_stops_everything_quietly_when_its_stdout_is_closed() {
    let prometheus = std::env::var_os("PROMETHEUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/prometheus".into());
    assert!(
        prometheus.exists(),
        "Prometheus not found at {}: install Debian's `prometheus` package or set $PROMETHEUS",
        prometheus.display()
    );
    let mut cmd = serin(&["demo", "--plain", "--scenario", "promote", "--prometheus"]);
    cmd.arg(&prometheus);
    let (code, stderr) = with_closed_stdout(cmd);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs the load tester for a few seconds on a pseudo-terminal (util-linux `script`, from
/// Debian's essential bsdutils) and returns what it wrote there.
fn loadtester_on_a_terminal(no_color: Option<&str>) -> Vec<u8> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let inner = format!(
        "timeout -s INT 10 {} loadtester --port {port}",
        env!("CARGO_BIN_EXE_serin")
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd
        .output()
        .expect("runs util-linux `script` (Debian package bsdutils)");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("listening"),
        "no startup log line on the terminal within 10 s: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

#[test]
fn on_a_terminal_logs_are_coloured_unless_no_color_is_set() {
    // Both runs at once: each lasts its full 10 s.
    let (coloured, plain) = std::thread::scope(|s| {
        let coloured = s.spawn(|| loadtester_on_a_terminal(None));
        let plain = s.spawn(|| loadtester_on_a_terminal(Some("1")));
        (
            coloured.join().expect("first run"),
            plain.join().expect("second run"),
        )
    });
    assert!(
        coloured.contains(&0x1b),
        "a terminal gets colours: {:?}",
        String::from_utf8_lossy(&coloured)
    );
    assert!(
        !plain.contains(&0x1b),
        "NO_COLOR=1 on a terminal: {:?}",
        String::from_utf8_lossy(&plain)
    );
}

#[test]
fn an_error_written_to_a_closed_stderr_keeps_its_exit_code_instead_of_panicking() {
    // `serin query … 2>&1 | head` after the reader has gone: both streams are closed pipes.
    let mut child = spawn_piped(&mut serin(&[
        "query",
        "--canary",
        "/nonexistent/canary.yaml",
        "--metric",
        "x",
    ]));
    drop(child.stdout.take());
    drop(child.stderr.take());
    let code = wait_at_most(&mut child, Duration::from_secs(120));
    assert_eq!(
        code,
        Some(2),
        "a missing file is a usage error (2), not a panic (101)"
    );
}
