//! The Graphite provider against a real Graphite from Debian (`graphite-carbon` and
//! `graphite-web`): carbon-cache stores points written through its plaintext protocol, and
//! graphite-web, run by Django's own server (`graphite-manage runserver`), answers the render API
//! Serin's provider queries. Both listen on loopback ports and keep their files in a temp dir.
//!
//! Without the binaries the tests say so and pass, except in CI (`CI=true`), where `.ci/run`
//! installs them and a missing binary fails.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, bail};
use serin::metrics::evaluate::Reading;
use serin::metrics::graphite::Graphite as GraphiteProvider;
use serin::metrics::provider::{Provider, ProviderConfig, QueryContext};

const CARBON: &str = "/usr/bin/carbon-cache";
const WEB: &str = "/usr/bin/graphite-manage";

/// Whether the Debian binaries are here; missing outside CI is a skip with a message, in CI a
/// failure.
fn installed() -> bool {
    let missing: Vec<&str> = [CARBON, WEB]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{} not found: install Debian's graphite-carbon and graphite-web \
         (apt-get install --no-install-recommends graphite-carbon graphite-web; .ci/run does)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{msg} (CI=true: not skipped)"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// carbon-cache and graphite-web, killed on drop.
struct Graphite {
    dir: PathBuf,
    carbon: Option<Child>,
    web: Option<Child>,
    line_port: u16,
    url: String,
}

impl Drop for Graphite {
    fn drop(&mut self) {
        for c in [self.web.take(), self.carbon.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Graphite {
    async fn start(name: &str) -> anyhow::Result<Graphite> {
        let dir =
            std::env::temp_dir().join(format!("serin-graphite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["whisper", "log", "conf"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let (line_port, pickle_port, query_port, web_port) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let d = dir.display();
        std::fs::write(
            dir.join("conf/carbon.conf"),
            format!(
                "[cache]\nSTORAGE_DIR = {d}/\nLOCAL_DATA_DIR = {d}/whisper/\nCONF_DIR = {d}/conf/\n\
                 LOG_DIR = {d}/log/\nPID_DIR = {d}/\nDATABASE = whisper\nMAX_CACHE_SIZE = inf\n\
                 MAX_UPDATES_PER_SECOND = 10000\nMAX_CREATES_PER_MINUTE = inf\n\
                 LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line_port}\n\
                 ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
                 PICKLE_RECEIVER_PORT = {pickle_port}\nCACHE_QUERY_INTERFACE = 127.0.0.1\n\
                 CACHE_QUERY_PORT = {query_port}\nWHISPER_AUTOFLUSH = True\n"
            ),
        )?;
        // Ten-second points kept for a day.
        std::fs::write(
            dir.join("conf/storage-schemas.conf"),
            "[default]\npattern = .*\nretentions = 10s:1d\n",
        )?;
        // graphite-web's settings.py imports GRAPHITE_SETTINGS_MODULE instead of Debian's
        // /etc/graphite/local_settings.py; cached points are read from carbon (CARBONLINK).
        std::fs::write(
            dir.join("serin_graphite_settings.py"),
            format!(
                "SECRET_KEY = 'serin-test-only'\nSTORAGE_DIR = '{d}/'\nWHISPER_DIR = '{d}/whisper/'\n\
                 LOG_DIR = '{d}/log/'\nINDEX_FILE = '{d}/index'\n\
                 CARBONLINK_HOSTS = ['127.0.0.1:{query_port}:a']\n"
            ),
        )?;
        let log = |n: &str| std::fs::File::create(dir.join(format!("log/{n}.out")));
        let carbon = Command::new(CARBON)
            .arg(format!("--config={d}/conf/carbon.conf"))
            .arg(format!("--pidfile={d}/carbon.pid"))
            .args(["--nodaemon", "start"])
            .stdout(log("carbon")?)
            .stderr(log("carbon-err")?)
            .spawn()
            .context("starting carbon-cache")?;
        let mut g = Graphite {
            dir: dir.clone(),
            carbon: Some(carbon),
            web: None,
            line_port,
            url: format!("http://127.0.0.1:{web_port}"),
        };
        let web = Command::new(WEB)
            .args(["runserver", "--noreload", &format!("127.0.0.1:{web_port}")])
            .current_dir(&dir)
            .env("PYTHONPATH", &dir)
            .env("GRAPHITE_SETTINGS_MODULE", "serin_graphite_settings")
            .stdout(log("web")?)
            .stderr(log("web-err")?)
            .spawn()
            .context("starting graphite-web")?;
        g.web = Some(web);
        g.wait_ready().await?;
        Ok(g)
    }

    fn logs(&self) -> String {
        ["carbon", "carbon-err", "web", "web-err"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("log/{n}.out")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {n}:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Both answer: carbon accepts a connection, graphite-web renders.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        serin::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let carbon = std::net::TcpStream::connect(("127.0.0.1", self.line_port)).is_ok();
            let web = http
                .get(format!("{}/render?target=none&format=json", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if carbon && web {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "graphite not ready within 60s (carbon {carbon}, web {web}):\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes `(metric, value, unix seconds)` points through carbon's plaintext protocol.
    fn write(&self, points: &[(&str, f64, i64)]) -> anyhow::Result<()> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.line_port))?;
        for (m, v, t) in points {
            writeln!(s, "{m} {v} {t}")?;
        }
        s.flush()?;
        Ok(())
    }
}

fn provider(address: &str) -> GraphiteProvider {
    let mut c = ProviderConfig::default();
    c.spec.type_ = "graphite".into();
    c.spec.address = Some(address.into());
    GraphiteProvider::new(&c).expect("provider")
}

fn ctx() -> QueryContext {
    QueryContext {
        interval: Duration::from_secs(60),
        now: chrono::Utc::now(),
    }
}

/// Queries until Graphite has the points (carbon hands them over asynchronously).
async fn read_until(p: &GraphiteProvider, query: &str, want: &Reading) -> Reading {
    let mut last = Reading::Empty;
    for _ in 0..100 {
        last = p.query(query, &ctx()).await;
        if &last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn the_graphite_provider_reads_points_written_to_carbon_through_graphite_web() {
    if !installed() {
        return;
    }
    let g = Graphite::start("read").await.expect("graphite");
    let now = chrono::Utc::now().timestamp();
    let t = |ago: i64| now - ago;
    // Errors and requests of two podinfo pods, 10 s apart; the newest bucket is still empty.
    g.write(&[
        ("stats.podinfo.a.errors", 1.0, t(40)),
        ("stats.podinfo.a.errors", 2.0, t(30)),
        ("stats.podinfo.b.errors", 1.0, t(30)),
        ("stats.podinfo.a.requests", 40.0, t(40)),
        ("stats.podinfo.a.requests", 50.0, t(30)),
        ("stats.podinfo.b.requests", 10.0, t(30)),
    ])
    .expect("write to carbon");
    let p = provider(&g.url);

    // The last non-null point of a plain series.
    let plain = "target=stats.podinfo.a.errors&from=-2min";
    let got = read_until(&p, plain, &Reading::Value(2.0)).await;
    assert_eq!(got, Reading::Value(2.0), "{}", g.logs());

    // Flagger's kind of query: an error percentage across pods (3 of 60 requests).
    let percent = "target=asPercent(sumSeries(stats.podinfo.*.errors), sumSeries(stats.podinfo.*.requests))&from=-2min";
    let got = read_until(&p, percent, &Reading::Value(5.0)).await;
    assert_eq!(got, Reading::Value(5.0), "{}", g.logs());

    // A series Graphite does not have is no data.
    assert_eq!(
        p.query("target=stats.nothing.here&from=-2min", &ctx())
            .await,
        Reading::Empty
    );

    // Graphite refuses an unknown function: a failure that names the provider and the status.
    let r = p
        .query(
            "target=noSuchFunction(stats.podinfo.a.errors)&from=-2min",
            &ctx(),
        )
        .await;
    let Reading::Failed(m) = &r else {
        panic!("an unknown function: {r:?}")
    };
    assert!(
        m.starts_with("graphite: HTTP 4") || m.starts_with("graphite: HTTP 5"),
        "{m}"
    );
}

#[tokio::test]
async fn a_stopped_graphite_is_a_failed_reading() {
    if !installed() {
        return;
    }
    let mut g = Graphite::start("stopped").await.expect("graphite");
    let url = g.url.clone();
    if let Some(mut web) = g.web.take() {
        let _ = web.kill();
        let _ = web.wait();
    }
    let r = provider(&url)
        .query("target=stats.x&from=-1min", &ctx())
        .await;
    assert!(
        matches!(&r, Reading::Failed(m) if m.starts_with("graphite: request to") && m.contains("connection failed")),
        "{r:?}"
    );
}
