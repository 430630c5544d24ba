//! `serin loadtester`: an HTTP service speaking flagger-loadtester's API (gates, rollback gates,
//! tasks), with `hey` runs executed natively. Does network and process I/O.
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::webhook::Payload;

pub mod hey;

/// Load tester errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener could not be bound or the server stopped.
    #[error("loadtester server: {0}")]
    Serve(#[source] std::io::Error),
    /// `--namespace-regexp` is not a valid regular expression.
    #[error("invalid --namespace-regexp: {0}")]
    Regex(#[source] regex::Error),
}

/// Kinds of task a payload can ask for (`metadata.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskType {
    /// `cmd` (the default): asynchronous; `hey` runs natively, anything else via `sh -c`.
    Cmd,
    /// `bash`: synchronous `bash -c`.
    Bash,
    /// `helm` / `helmv3`: synchronous `helm <args>`.
    Helm,
    /// `kubectl`: synchronous `kubectl <args>`.
    Kubectl,
}

impl TaskType {
    /// Parses `metadata.type` (empty means `cmd`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "cmd" => Self::Cmd,
            "bash" => Self::Bash,
            "helm" | "helmv3" => Self::Helm,
            "kubectl" => Self::Kubectl,
            _ => return None,
        })
    }

    /// The name used by `--enable-types`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cmd => "cmd",
            Self::Bash => "bash",
            Self::Helm => "helm",
            Self::Kubectl => "kubectl",
        }
    }
}

/// Settings of a load tester.
#[derive(Clone, Debug)]
pub struct Config {
    /// Longest a task may run before it is killed.
    pub timeout: Duration,
    /// Log every command's output (a task can ask for it with `logCmdOutput: "true"`).
    pub log_cmd_output: bool,
    /// Task types accepted; others get 403.
    pub enabled: BTreeSet<TaskType>,
    /// Payload namespaces allowed (all when `None`).
    pub namespace_regexp: Option<regex::Regex>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            log_cmd_output: false,
            enabled: [TaskType::Cmd, TaskType::Helm, TaskType::Kubectl].into(),
            namespace_regexp: None,
        }
    }
}

/// Shared state: gates and the tasks in flight.
#[derive(Default)]
pub struct LoadTester {
    config: Config,
    gates: Mutex<HashMap<String, bool>>,
    running: Mutex<HashSet<String>>,
    /// Reports of finished native `hey` runs, newest last (bounded), for tests and logs.
    reports: Mutex<Vec<(String, hey::Report)>>,
}

impl LoadTester {
    /// A load tester with these settings.
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            ..Default::default()
        })
    }

    /// Keys of the tasks running now.
    pub fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.running).iter().cloned().collect();
        v.sort();
        v
    }

    /// Reports of finished native `hey` runs (canary, report).
    pub fn reports(&self) -> Vec<(String, hey::Report)> {
        lock(&self.reports).clone()
    }

    fn gate(&self, key: &str) -> bool {
        lock(&self.gates).get(key).copied().unwrap_or(false)
    }

    fn set_gate(&self, key: String, open: bool) {
        lock(&self.gates).insert(key, open);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HTTP routes.
pub fn router(lt: Arc<LoadTester>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/gate/approve", any(|| async { (StatusCode::OK, "OK") }))
        .route(
            "/gate/halt",
            any(|| async { (StatusCode::FORBIDDEN, "Forbidden") }),
        )
        .route("/gate/check", any(gate_check))
        .route("/gate/open", any(gate_open))
        .route("/gate/close", any(gate_close))
        .route("/rollback/check", any(rollback_check))
        .route("/rollback/open", any(rollback_open))
        .route("/rollback/close", any(rollback_close))
        .fallback(new_task)
        .with_state(lt)
}

/// Serves on `addr` until the process stops.
pub async fn serve(addr: std::net::SocketAddr, lt: Arc<LoadTester>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(Error::Serve)?;
    tracing::info!("loadtester listening on {}", addr);
    axum::serve(listener, router(lt))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(Error::Serve)
}

type Reply = (StatusCode, String);

fn reply(code: StatusCode, text: impl Into<String>) -> Reply {
    (code, text.into())
}

/// Decodes the payload and applies `--namespace-regexp`.
fn decode(lt: &LoadTester, body: &[u8]) -> Result<Payload, Reply> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| {
        tracing::warn!("decoding the request body failed: {e}");
        reply(StatusCode::BAD_REQUEST, "")
    })?;
    if let Some(re) = &lt.config.namespace_regexp
        && !re.is_match(&p.namespace)
    {
        return Err(reply(StatusCode::FORBIDDEN, "Forbidden"));
    }
    Ok(p)
}

fn canary_key(p: &Payload) -> String {
    format!("{}.{}", p.name, p.namespace)
}

async fn gate_check(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    check(&lt, &body, "")
}

async fn rollback_check(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    check(&lt, &body, "rollback.")
}

fn check(lt: &LoadTester, body: &[u8], prefix: &str) -> Reply {
    let p = match decode(lt, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let key = format!("{prefix}{}", canary_key(&p));
    let open = lt.gate(&key);
    tracing::info!("{key} check: approved {open}");
    if open {
        reply(StatusCode::OK, "Approved")
    } else {
        reply(StatusCode::FORBIDDEN, "Forbidden")
    }
}

fn set(lt: &LoadTester, body: &[u8], prefix: &str, open: bool) -> Reply {
    let p = match decode(lt, body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let key = format!("{prefix}{}", canary_key(&p));
    lt.set_gate(key.clone(), open);
    tracing::info!("{key} gate {}", if open { "opened" } else { "closed" });
    reply(StatusCode::ACCEPTED, "")
}

async fn gate_open(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    set(&lt, &body, "", true)
}
async fn gate_close(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    set(&lt, &body, "", false)
}
async fn rollback_open(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    set(&lt, &body, "rollback.", true)
}
async fn rollback_close(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    set(&lt, &body, "rollback.", false)
}

fn truthy(p: &Payload, key: &str) -> bool {
    p.metadata
        .get(key)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "t"))
}

async fn new_task(State(lt): State<Arc<LoadTester>>, body: Bytes) -> Reply {
    let p = match decode(&lt, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if p.metadata.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "metadata not found in payload");
    }
    let typ = p.metadata.get("type").map(String::as_str).unwrap_or("cmd");
    let Some(task) = TaskType::parse(typ) else {
        return reply(StatusCode::BAD_REQUEST, format!("unknown task type {typ}"));
    };
    if !lt.config.enabled.contains(&task) {
        return reply(
            StatusCode::FORBIDDEN,
            format!(
                "task type {typ} is disabled on this loadtester (enable it with --enable-types {})",
                task.as_str()
            ),
        );
    }
    let cmd = p.metadata.get("cmd").cloned().unwrap_or_default();
    if cmd.trim().is_empty() {
        return reply(StatusCode::BAD_REQUEST, "cmd not found in metadata");
    }
    let log_output = lt.config.log_cmd_output || truthy(&p, "logCmdOutput");
    let canary = canary_key(&p);
    match task {
        TaskType::Cmd => start_cmd(lt, canary, cmd, log_output),
        TaskType::Bash => {
            let out = run_process(
                "bash",
                &["-c".to_string(), cmd],
                &lt.config,
                &canary,
                log_output,
            )
            .await;
            sync_reply(out, truthy(&p, "returnCmdOutput"))
        }
        TaskType::Helm | TaskType::Kubectl => {
            let bin = if task == TaskType::Helm {
                "helm"
            } else {
                "kubectl"
            };
            let args = match hey::split_words(&cmd) {
                Ok(a) => a,
                Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
            };
            // Flagger's payloads put only the arguments in `cmd`; tolerate a leading binary name.
            let args: Vec<String> = match args.first().map(String::as_str) {
                Some("helm" | "helmv3" | "kubectl") => args[1..].to_vec(),
                _ => args,
            };
            let out = run_process(bin, &args, &lt.config, &canary, log_output).await;
            sync_reply(out, truthy(&p, "returnCmdOutput"))
        }
    }
}

/// Queues an asynchronous `cmd` task; an identical command already running for the same canary
/// is not started again (Flagger's dedup), so repeated webhook calls do not stack load.
fn start_cmd(lt: Arc<LoadTester>, canary: String, cmd: String, log_output: bool) -> Reply {
    let native = if hey::is_hey(&cmd) {
        match hey::parse(&cmd) {
            Ok(a) => Some(a),
            Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
        }
    } else {
        None
    };
    let key = format!("{canary} {cmd}");
    if !lock(&lt.running).insert(key.clone()) {
        tracing::info!(canary, "command already running, not started again: {cmd}");
        return reply(StatusCode::ACCEPTED, "");
    }
    tokio::spawn(async move {
        let timeout = lt.config.timeout;
        match native {
            Some(args) => match tokio::time::timeout(timeout, hey::run(&args)).await {
                Ok(Ok(report)) => {
                    if log_output {
                        tracing::info!(canary, "command finished: {cmd}\n{}", report.render());
                    } else {
                        tracing::info!(
                            canary,
                            requests = report.count(),
                            rps = report.rps(),
                            "command finished: {cmd}"
                        );
                    }
                    let mut reports = lock(&lt.reports);
                    reports.push((canary.clone(), report));
                    let excess = reports.len().saturating_sub(32);
                    reports.drain(..excess);
                }
                Ok(Err(e)) => tracing::warn!(canary, "command failed: {cmd}: {e}"),
                Err(_) => tracing::warn!(canary, "command killed after {timeout:?}: {cmd}"),
            },
            None => {
                let _ = run_process(
                    "sh",
                    &["-c".to_string(), cmd],
                    &lt.config,
                    &canary,
                    log_output,
                )
                .await;
            }
        }
        lock(&lt.running).remove(&key);
    });
    reply(StatusCode::ACCEPTED, "")
}

/// How a synchronous command ended.
enum Outcome {
    Ok(Vec<u8>),
    Failed(String),
    Missing(String),
}

async fn run_process(
    bin: &str,
    args: &[String],
    config: &Config,
    canary: &str,
    log_output: bool,
) -> Outcome {
    let shown = format!("{bin} {}", args.join(" "));
    let child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A task that outlives --timeout is killed when its future is dropped.
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let msg = format!("{bin} binary not found in PATH; install it in the loadtester image");
            tracing::warn!(canary, "{msg}");
            return Outcome::Missing(msg);
        }
        Err(e) => return Outcome::Failed(format!("cannot start {bin}: {e}")),
    };
    match tokio::time::timeout(config.timeout, child.wait_with_output()).await {
        Err(_) => {
            let msg = format!("command killed after {:?}: {shown}", config.timeout);
            tracing::warn!(canary, "{msg}");
            Outcome::Failed(msg)
        }
        Ok(Err(e)) => Outcome::Failed(format!("{shown}: {e}")),
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if log_output {
                tracing::info!(canary, "command output: {shown}\n{stdout}{stderr}");
            }
            if out.status.success() {
                tracing::info!(canary, "command finished: {shown}");
                Outcome::Ok(out.stdout)
            } else {
                tracing::warn!(canary, status = ?out.status.code(), "command failed: {shown}");
                Outcome::Failed(format!(
                    "command {shown} failed: {}{stdout}{stderr}",
                    out.status
                        .code()
                        .map(|c| format!("exit status {c}: "))
                        .unwrap_or_default()
                ))
            }
        }
    }
}

fn sync_reply(out: Outcome, return_output: bool) -> Reply {
    match out {
        Outcome::Ok(stdout) => reply(
            StatusCode::OK,
            if return_output {
                String::from_utf8_lossy(&stdout).into_owned()
            } else {
                String::new()
            },
        ),
        Outcome::Failed(msg) | Outcome::Missing(msg) => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_binary_is_reported_by_name() {
        let out = run_process(
            "serin-no-such-binary",
            &[],
            &Config::default(),
            "a.b",
            false,
        )
        .await;
        match out {
            Outcome::Missing(msg) => assert_eq!(
                msg,
                "serin-no-such-binary binary not found in PATH; install it in the loadtester image"
            ),
            _ => panic!("expected a missing binary"),
        }
    }

    #[test]
    fn task_types_accept_flaggers_names() {
        assert_eq!(TaskType::parse(""), Some(TaskType::Cmd));
        assert_eq!(TaskType::parse("helmv3"), Some(TaskType::Helm));
        assert_eq!(TaskType::parse("concord"), None);
        assert!(!Config::default().enabled.contains(&TaskType::Bash));
    }
}
