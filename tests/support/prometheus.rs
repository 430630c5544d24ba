//! Test support: a real Prometheus process (Debian's `prometheus` package) scraping a small HTTP
//! exporter that the test controls. Starts processes and servers on loopback ports.
#![allow(dead_code)]

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Histogram bucket bounds of the exporter, in seconds.
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The traffic one simulated pod serves.
#[derive(Clone, Debug)]
pub struct Workload {
    /// `kubernetes_pod_name` (podinfo-style `<target>-<hash>-<id>`).
    pub pod: String,
    /// `kubernetes_namespace`.
    pub namespace: String,
    /// The Istio `destination_workload` (the Deployment name).
    pub workload: String,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests answered with 500.
    pub error_ratio: f64,
    /// Latency of every request, in seconds.
    pub latency: f64,
}

impl Workload {
    /// Healthy traffic: 20 rps, no errors, 20 ms.
    pub fn healthy(pod: &str, namespace: &str, workload: &str) -> Self {
        Self {
            pod: pod.into(),
            namespace: namespace.into(),
            workload: workload.into(),
            rps: 20.0,
            error_ratio: 0.0,
            latency: 0.02,
        }
    }
}

#[derive(Default)]
struct Counters {
    ok: f64,
    errors: f64,
    // Per bucket, cumulative counts are computed when rendering.
    by_bucket: Vec<f64>,
    sum: f64,
}

#[derive(Default)]
struct State {
    workloads: Vec<(Workload, Counters)>,
    last: Option<Instant>,
}

/// An HTTP exporter serving podinfo-style and Istio-style request metrics. Counters advance by
/// `rps × elapsed` at every scrape, so rates are exact.
#[derive(Clone)]
pub struct Exporter {
    state: Arc<Mutex<State>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The analysis of the sample-size suites: both builtins over 5 s windows (success rate at least
/// 99 %, duration at most 500 ms), each needing `min_samples` requests, held while inconclusive.
pub fn sampled_builtins(min_samples: Option<f64>) -> serde_json::Value {
    serde_json::json!({
        "onInconclusive": "hold",
        "metrics": [
            {"name": "request-success-rate", "interval": "5s", "thresholdRange": {"min": 99},
             "minSamples": min_samples},
            {"name": "request-duration", "interval": "5s", "thresholdRange": {"max": 500},
             "minSamples": min_samples}
        ]
    })
}

impl Exporter {
    /// Plays the judge's workloads in `namespace`: `slow` at 200 ms and `same` at 100 ms, each
    /// beside its primary at 100 ms; `hash` is the pods' `<hash>-<id>` suffix.
    pub fn slow_and_same_beside_primaries(&self, namespace: &str, hash: &str) {
        for (workload, latency) in [
            ("slow-primary", 0.1),
            ("slow", 0.2),
            ("same-primary", 0.1),
            ("same", 0.1),
        ] {
            let pod = format!("{workload}-{hash}");
            self.set(Workload {
                latency,
                ..Workload::healthy(&pod, namespace, workload)
            });
        }
    }

    /// Starts the exporter on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let s = state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move { render(&s) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { state, addr })
    }

    /// Adds a workload, or replaces the settings of the one with the same pod name (its counters
    /// keep counting from where they are).
    pub fn set(&self, w: Workload) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        advance(&mut st);
        match st.workloads.iter_mut().find(|(x, _)| x.pod == w.pod) {
            Some((x, _)) => *x = w,
            None => st.workloads.push((
                w,
                Counters {
                    by_bucket: vec![0.0; BUCKETS.len() + 1],
                    ..Default::default()
                },
            )),
        }
    }
}

fn advance(st: &mut State) {
    let now = Instant::now();
    let dt = st.last.map_or(0.0, |l| (now - l).as_secs_f64());
    st.last = Some(now);
    for (w, c) in &mut st.workloads {
        let n = w.rps * dt;
        c.errors += n * w.error_ratio;
        c.ok += n * (1.0 - w.error_ratio);
        c.sum += n * w.latency;
        let i = BUCKETS
            .iter()
            .position(|b| w.latency <= *b)
            .unwrap_or(BUCKETS.len());
        c.by_bucket[i] += n;
    }
}

fn render(state: &Mutex<State>) -> String {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    advance(&mut st);
    let mut out = String::new();
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (w, c) in &st.workloads {
        let total = c.ok + c.errors;
        for (status, n) in [("200", c.ok), ("500", c.errors)] {
            let l = format!(
                "kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{}\",status=\"{status}\"",
                w.namespace, w.pod
            );
            // Every request of a workload has the same latency, so the status split scales
            // each bucket by the status's share.
            let share = if total > 0.0 { n / total } else { 0.0 };
            let mut cum = 0.0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += c.by_bucket[i] * share;
                out.push_str(&format!(
                    "http_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {cum}\n"
                ));
            }
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {n}\n"
            ));
            out.push_str(&format!(
                "http_request_duration_seconds_sum{{{l}}} {}\n",
                c.sum * share
            ));
            out.push_str(&format!("http_request_duration_seconds_count{{{l}}} {n}\n"));
        }
    }
    out.push_str("# TYPE istio_requests_total counter\n");
    for (w, c) in &st.workloads {
        for (code, n) in [("200", c.ok), ("503", c.errors)] {
            out.push_str(&format!(
                "istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"{}\",destination_workload=\"{}\",response_code=\"{code}\"}} {n}\n",
                w.namespace, w.workload
            ));
        }
    }
    out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
    for (w, c) in &st.workloads {
        let l = format!(
            "reporter=\"destination\",destination_workload_namespace=\"{}\",destination_workload=\"{}\"",
            w.namespace, w.workload
        );
        let mut cum = 0.0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += c.by_bucket[i];
            out.push_str(&format!(
                "istio_request_duration_milliseconds_bucket{{{l},le=\"{}\"}} {cum}\n",
                b * 1000.0
            ));
        }
        let total = c.ok + c.errors;
        out.push_str(&format!(
            "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {total}\n"
        ));
        out.push_str(&format!(
            "istio_request_duration_milliseconds_sum{{{l}}} {}\n",
            c.sum * 1000.0
        ));
        out.push_str(&format!(
            "istio_request_duration_milliseconds_count{{{l}}} {total}\n"
        ));
    }
    out
}

/// Basic-auth credentials Prometheus is started with.
pub const USER: &str = "serin";
/// The password of [`USER`].
pub const PASSWORD: &str = "metrics-test-password";

/// A Prometheus process, killed on drop.
pub struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Whether it requires basic auth.
    pub basic_auth: bool,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Prometheus binary: `$PROMETHEUS` or Debian's `/usr/bin/prometheus`. Missing is a test
/// failure that names the package, never a silent skip.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.exists(),
        "Prometheus not found at {}: install Debian's `prometheus` package \
         (apt-get update && apt-get install -y prometheus) or set $PROMETHEUS",
        path.display()
    );
    path
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Prometheus {
    /// Starts Prometheus with a 1 s scrape interval on `exporter`, optionally behind basic auth,
    /// and waits until it is ready.
    pub async fn start(name: &str, exporter: SocketAddr, basic_auth: bool) -> anyhow::Result<Self> {
        Self::start_job(name, exporter, basic_auth, "exporter").await
    }

    /// [`Prometheus::start`] with the scrape job named `job` (the `job` label of `up`).
    pub async fn start_job(
        name: &str,
        exporter: SocketAddr,
        basic_auth: bool,
        job: &str,
    ) -> anyhow::Result<Self> {
        let bin = binary();
        let dir = std::env::temp_dir().join(format!("serin-prom-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    honor_labels: true\n    static_configs:\n      - targets: ['{exporter}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args(serin::demo::prometheus::server_args(&dir, port));
        if basic_auth {
            let hash =
                bcrypt::hash_with_result(PASSWORD, 4)?.format_for_version(bcrypt::Version::TwoA);
            std::fs::write(
                dir.join("web.yml"),
                format!("basic_auth_users:\n  {USER}: '{hash}'\n"),
            )?;
            cmd.arg(format!(
                "--web.config.file={}",
                dir.join("web.yml").display()
            ));
        }
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let p = Prometheus {
            child: Some(child),
            dir,
            url: format!("http://127.0.0.1:{port}"),
            basic_auth,
        };
        p.wait_ready().await?;
        Ok(p)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        serin::install_crypto_provider();
        let auth = self.basic_auth.then_some((USER, PASSWORD));
        if !serin::demo::prometheus::wait_until_scraped(&self.url, auth, Duration::from_secs(30))
            .await
        {
            bail!(
                "prometheus did not scrape its target within 30s; log:\n{}",
                std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Stops the process (the outage case).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
