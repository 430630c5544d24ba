//! Finds and runs a real Prometheus for the demo, scraping the demo gateway every second
//! (process and network I/O).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How to get Prometheus when it is missing.
pub const INSTALL_HINT: &str = "install it with `sudo apt-get install -y prometheus` (Debian/Ubuntu; \
`scripts/demo.sh` does this for you), or download a release from https://prometheus.io/download/ \
and pass `--prometheus /path/to/prometheus` or set $PROMETHEUS";

/// Errors starting Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No binary found.
    #[error("Prometheus is not installed (looked for {looked}): {hint}", hint = INSTALL_HINT)]
    NotFound {
        /// Where we looked.
        looked: String,
    },
    /// The process could not start or its files could not be written.
    #[error("cannot start Prometheus {bin}: {source}")]
    Start {
        /// The binary.
        bin: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It started but never scraped the gateway.
    #[error("Prometheus did not scrape the demo gateway within 30s; its log is {log}")]
    NotReady {
        /// The log file.
        log: String,
    },
}

/// Where the Prometheus binary is: `explicit`, else `$PROMETHEUS`, else `prometheus` on the PATH,
/// else `/usr/bin/prometheus`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PROMETHEUS") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("prometheus")));
    }
    candidates.push(PathBuf::from("/usr/bin/prometheus"));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    if explicit.is_some() {
        looked.truncate(1);
    } else {
        looked = vec![
            "$PROMETHEUS".into(),
            "$PATH".into(),
            "/usr/bin/prometheus".into(),
        ];
    }
    Err(Error::NotFound {
        looked: looked.join(", "),
    })
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    _child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

/// The flags of a Prometheus whose `prometheus.yml` and `data/` are in `dir`, listening on
/// loopback `port` and logging warnings only (the demo's and the tests' servers).
pub fn server_args(dir: &Path, port: u16) -> [String; 4] {
    [
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--log.level=warn".into(),
    ]
}

/// Starts `bin` with its data in `dir`, scraping `target` every second, and waits until ready.
pub async fn start(bin: &Path, dir: &Path, target: SocketAddr) -> Result<Prometheus, Error> {
    let start_err = |source| Error::Start {
        bin: bin.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir.join("data")).map_err(start_err)?;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo-gateway\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).map_err(start_err)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(start_err)?
        .port();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).map_err(start_err)?;
    let child = Command::new(bin)
        .args(server_args(dir, port))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(start_err)?;
    let p = Prometheus {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
    };
    if wait_until_scraped(&p.url, None, Duration::from_secs(30)).await {
        return Ok(p);
    }
    Err(Error::NotReady {
        log: log_path.display().to_string(),
    })
}

/// Waits until the Prometheus at `url` has scraped a target at least once (`up == 1` has a
/// result), optionally with basic-auth `(user, password)`; false after `within`.
///
/// Ready is not enough: Prometheus hands new targets to its scrapers through a discovery step
/// that runs every 5 s, so the first scrape comes seconds after startup, and an analysis that
/// queries before it sees no data.
pub async fn wait_until_scraped(
    url: &str,
    basic_auth: Option<(&str, &str)>,
    within: Duration,
) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut req = http
            .get(format!("{url}/api/v1/query"))
            .query(&[("query", "up == 1")]);
        if let Some((user, password)) = basic_auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Ok(r) = req.send().await
            && r.status().is_success()
            && let Ok(body) = r.json::<serde_json::Value>().await
            && body["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
