//! `hey` load generation in Rust: parses a `hey` command line (the flags flagger-loadtester users
//! pass) and runs it natively, reporting as `hey` does. Parsing is pure; [`run`] does network I/O.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why a command line is not a `hey` run this engine can execute.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Unbalanced quotes or a trailing backslash.
    #[error("cannot split the command line: {0}")]
    Split(String),
    /// A flag this engine does not know.
    #[error("hey: unsupported flag {0}")]
    UnknownFlag(String),
    /// A flag without its value, or with a bad one.
    #[error("hey: bad value for {flag}: {value:?}")]
    BadValue {
        /// The flag.
        flag: String,
        /// What was given.
        value: String,
    },
    /// No URL, or more than one.
    #[error("hey: exactly one URL is required")]
    Url,
    /// `-n` smaller than `-c`.
    #[error("hey: -n cannot be less than -c")]
    FewerRequestsThanWorkers,
}

/// A parsed `hey` invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct HeyArgs {
    /// Target URL.
    pub url: String,
    /// `-n`: total requests (default 200); ignored with `-z`.
    pub requests: u64,
    /// `-c`: concurrent workers (default 50).
    pub concurrency: u64,
    /// `-q`: rate limit per worker, requests per second (0 = none).
    pub qps: f64,
    /// `-z`: run for this long instead of `-n` requests.
    pub duration: Option<Duration>,
    /// `-m`: method (default GET).
    pub method: String,
    /// `-H` (repeatable), `-T`, `-A`: request headers.
    pub headers: Vec<(String, String)>,
    /// `-d`: request body.
    pub body: Option<String>,
    /// `-host`: Host header.
    pub host: Option<String>,
    /// `-t`: per-request timeout (default 20s; 0 = none).
    pub timeout: Option<Duration>,
    /// `-disable-keepalive`.
    pub disable_keepalive: bool,
}

/// Splits a command line as a POSIX shell would for words (quotes and backslashes), without
/// expansions.
pub fn split_words(line: &str) -> Result<Vec<String>, Error> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(Error::Split("unterminated single quote".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err(Error::Split("trailing backslash".into())),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err(Error::Split("unterminated double quote".into())),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(ch) => {
                    in_word = true;
                    cur.push(ch)
                }
                None => return Err(Error::Split("trailing backslash".into())),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c)
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Whether a command is a plain `hey` run (no pipes, redirections or command lists), so it can
/// run natively instead of through a shell.
pub fn is_hey(cmd: &str) -> bool {
    let first = cmd.split_whitespace().next().unwrap_or_default();
    let plain = !cmd.contains(['|', ';', '&', '>', '<', '`', '$', '\n']);
    plain && (first == "hey" || first.ends_with("/hey"))
}

/// Parses `hey [flags] <url>` with Go's flag syntax (`-n 10`, `-n=10`, `--n 10`).
pub fn parse(cmd: &str) -> Result<HeyArgs, Error> {
    let words = split_words(cmd)?;
    let mut it = words.into_iter().skip(1).peekable();
    let mut a = HeyArgs {
        url: String::new(),
        requests: 200,
        concurrency: 50,
        qps: 0.0,
        duration: None,
        method: "GET".into(),
        headers: vec![],
        body: None,
        host: None,
        timeout: Some(Duration::from_secs(20)),
        disable_keepalive: false,
    };
    let mut urls = vec![];
    while let Some(w) = it.next() {
        let Some(flag) = w.strip_prefix("--").or_else(|| w.strip_prefix('-')) else {
            urls.push(w);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        if name == "disable-keepalive" {
            a.disable_keepalive = inline.as_deref().is_none_or(|v| v == "true");
            continue;
        }
        if name == "disable-compression" || name == "disable-redirects" || name == "h2" {
            continue;
        }
        let known = [
            "n", "c", "q", "z", "m", "H", "d", "host", "t", "T", "A", "cpus", "o",
        ];
        if !known.contains(&name.as_str()) {
            return Err(Error::UnknownFlag(w));
        }
        let value = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => {
                return Err(Error::BadValue {
                    flag: format!("-{name}"),
                    value: String::new(),
                });
            }
        };
        let bad = || Error::BadValue {
            flag: format!("-{name}"),
            value: value.clone(),
        };
        match name.as_str() {
            "n" => a.requests = value.parse().map_err(|_| bad())?,
            "c" => a.concurrency = value.parse().map_err(|_| bad())?,
            "q" => {
                a.qps = value.parse().map_err(|_| bad())?;
                if !(a.qps >= 0.0 && a.qps.is_finite()) {
                    return Err(bad());
                }
            }
            "z" => {
                a.duration = Some(crate::api::duration::parse_duration(&value).map_err(|_| bad())?)
            }
            "m" => a.method = value.to_uppercase(),
            "H" => {
                let (k, v) = value.split_once(':').ok_or_else(bad)?;
                a.headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "T" => a.headers.push(("Content-Type".into(), value)),
            "A" => a.headers.push(("Accept".into(), value)),
            "d" => a.body = Some(value),
            "host" => a.host = Some(value),
            "t" => {
                let secs: u64 = value.parse().map_err(|_| bad())?;
                a.timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            // Accepted for compatibility: the runtime picks its threads; output is text.
            "cpus" | "o" => {}
            _ => return Err(Error::UnknownFlag(w)),
        }
    }
    if urls.len() != 1 {
        return Err(Error::Url);
    }
    a.url = urls.remove(0);
    if a.concurrency == 0 {
        return Err(Error::BadValue {
            flag: "-c".into(),
            value: "0".into(),
        });
    }
    if a.duration.is_none() && a.requests < a.concurrency {
        return Err(Error::FewerRequestsThanWorkers);
    }
    Ok(a)
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Wall time of the run.
    pub total: Duration,
    /// Latency of every completed request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Responses by status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// Errors by message.
    pub errors: BTreeMap<String, u64>,
    /// Response bytes read.
    pub bytes: u64,
}

impl Report {
    /// Requests that completed (with any status) or failed.
    pub fn count(&self) -> u64 {
        self.latencies_us.len() as u64 + self.errors.values().sum::<u64>()
    }

    /// Requests per second over the run, as hey computes it (all attempts / wall time).
    pub fn rps(&self) -> f64 {
        let secs = self.total.as_secs_f64();
        if secs > 0.0 {
            self.count() as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency (seconds) at a percentile in 0..=100, from sorted latencies.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        percentile_sorted(&v, p)
    }

    /// The text report, in hey's layout.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let secs = |us: u32| f64::from(us) / 1e6;
        let mut out = String::new();
        let n = v.len();
        let avg = if n > 0 {
            v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64 / 1e6
        } else {
            0.0
        };
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{:.4} secs", self.total.as_secs_f64());
        let _ = writeln!(
            out,
            "  Slowest:\t{:.4} secs",
            v.last().copied().map(secs).unwrap_or(0.0)
        );
        let _ = writeln!(
            out,
            "  Fastest:\t{:.4} secs",
            v.first().copied().map(secs).unwrap_or(0.0)
        );
        let _ = writeln!(out, "  Average:\t{avg:.4} secs");
        let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.rps());
        let _ = writeln!(out);
        let _ = writeln!(out, "  Total data:\t{} bytes", self.bytes);
        let size = if n > 0 { self.bytes / n as u64 } else { 0 };
        let _ = writeln!(out, "  Size/request:\t{size} bytes");
        if n > 0 {
            let _ = writeln!(out, "\nResponse time histogram:");
            let (lo, hi) = (secs(v[0]), secs(v[n - 1]));
            let buckets = 10;
            let width = (hi - lo) / buckets as f64;
            let mut counts = vec![0u64; buckets + 1];
            for &x in &v {
                let i = if width > 0.0 {
                    (((secs(x) - lo) / width) as usize).min(buckets)
                } else {
                    0
                };
                counts[i] += 1;
            }
            let max = counts.iter().copied().max().unwrap_or(1).max(1);
            for (i, c) in counts.iter().enumerate() {
                let mark = lo + width * i as f64;
                let bar = "■".repeat((c * 40 / max) as usize);
                let _ = writeln!(out, "  {mark:.3} [{c}]\t|{bar}");
            }
            let _ = writeln!(out, "\nLatency distribution:");
            for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0] {
                if let Some(l) = percentile_sorted(&v, p) {
                    let _ = writeln!(out, "  {p}% in {l:.4} secs");
                }
            }
        }
        let _ = writeln!(out, "\nStatus code distribution:");
        for (code, c) in &self.status_codes {
            let _ = writeln!(out, "  [{code}]\t{c} responses");
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (e, c) in &self.errors {
                let _ = writeln!(out, "  [{c}]\t{e}");
            }
        }
        out
    }
}

fn percentile_sorted(v: &[u32], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let idx = ((p / 100.0) * (v.len() as f64)).ceil() as usize;
    let i = idx.clamp(1, v.len()) - 1;
    Some(f64::from(v[i]) / 1e6)
}

/// Runs the load: `concurrency` workers, each sending `requests / concurrency` requests (or
/// until `-z` elapses), each rate-limited to `qps`.
pub async fn run(args: &HeyArgs) -> Result<Report, reqwest::Error> {
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .user_agent("hey/0.0.1")
        .pool_max_idle_per_host(if args.disable_keepalive {
            0
        } else {
            args.concurrency as usize
        });
    if let Some(t) = args.timeout {
        builder = builder.timeout(t);
    }
    let client = builder.build()?;
    let method =
        reqwest::Method::from_bytes(args.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &args.headers {
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    if let Some(h) = &args.host
        && let Ok(v) = reqwest::header::HeaderValue::from_str(h)
    {
        headers.insert(reqwest::header::HOST, v);
    }
    let started = Instant::now();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let per_worker = args.requests / args.concurrency;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, method, headers) = (client.clone(), method.clone(), headers.clone());
        let (url, body, qps) = (args.url.clone(), args.body.clone(), args.qps);
        workers.spawn(async move {
            let mut r = Report::default();
            let mut ticker = (qps > 0.0).then(|| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / qps));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut sent = 0u64;
            loop {
                match deadline {
                    Some(d) if tokio::time::Instant::now() >= d => break,
                    None if sent >= per_worker => break,
                    _ => {}
                }
                if let Some(t) = ticker.as_mut() {
                    match deadline {
                        Some(d) => {
                            if tokio::time::timeout_at(d, t.tick()).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            t.tick().await;
                        }
                    }
                }
                sent += 1;
                let mut req = client
                    .request(method.clone(), &url)
                    .headers(headers.clone());
                if let Some(b) = &body {
                    req = req.body(b.clone());
                }
                let t0 = Instant::now();
                let res = match deadline {
                    // Requests in flight when -z elapses are abandoned, as hey does.
                    Some(d) => match tokio::time::timeout_at(d, send(req)).await {
                        Ok(res) => res,
                        Err(_) => break,
                    },
                    None => send(req).await,
                };
                match res {
                    Ok((status, bytes)) => {
                        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        r.latencies_us.push(us);
                        *r.status_codes.entry(status).or_default() += 1;
                        r.bytes += bytes;
                    }
                    Err(e) => *r.errors.entry(e).or_default() += 1,
                }
            }
            r
        });
    }
    let mut total = Report::default();
    while let Some(res) = workers.join_next().await {
        if let Ok(r) = res {
            total.latencies_us.extend(r.latencies_us);
            for (k, v) in r.status_codes {
                *total.status_codes.entry(k).or_default() += v;
            }
            for (k, v) in r.errors {
                *total.errors.entry(k).or_default() += v;
            }
            total.bytes += r.bytes;
        }
    }
    total.total = started.elapsed();
    Ok(total)
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, u64), String> {
    let resp = req
        .send()
        .await
        .map_err(|e| crate::core::text::error_chain(&e))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| crate::core::text::error_chain(&e))?;
    Ok((status, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words(r#"hey -H "X-A: b c" -d '{"k": 1}' a\ b"#).expect("splits"),
            vec!["hey", "-H", "X-A: b c", "-d", r#"{"k": 1}"#, "a b"]
        );
        assert!(split_words("hey 'open").is_err());
    }

    #[test]
    fn the_flags_flagger_users_pass_are_parsed() {
        let a = parse(
            "hey -z 1m -q 10 -c 2 -m POST -H 'Cookie: canary=always' -H X-B:1 -d '{\"a\":1}' -host app.example.com -t 5 http://podinfo-canary.test:9898/",
        )
        .expect("parses");
        assert_eq!(a.duration, Some(Duration::from_secs(60)));
        assert_eq!((a.qps, a.concurrency), (10.0, 2));
        assert_eq!(a.method, "POST");
        assert_eq!(
            a.headers,
            vec![
                ("Cookie".to_string(), "canary=always".to_string()),
                ("X-B".to_string(), "1".to_string())
            ]
        );
        assert_eq!(a.body.as_deref(), Some("{\"a\":1}"));
        assert_eq!(a.host.as_deref(), Some("app.example.com"));
        assert_eq!(a.timeout, Some(Duration::from_secs(5)));
        assert_eq!(a.url, "http://podinfo-canary.test:9898/");
    }

    #[test]
    fn defaults_match_hey() {
        let a = parse("hey http://x/").expect("parses");
        assert_eq!((a.requests, a.concurrency, a.qps), (200, 50, 0.0));
        assert_eq!(a.method, "GET");
        assert_eq!(a.timeout, Some(Duration::from_secs(20)));
        assert_eq!(
            parse("hey -t 0 -n=10 -c=1 http://x/").expect("p").timeout,
            None
        );
    }

    #[test]
    fn bad_command_lines_are_rejected_with_the_reason() {
        assert_eq!(
            parse("hey -x 1 http://x/"),
            Err(Error::UnknownFlag("-x".into()))
        );
        assert_eq!(parse("hey -n 10"), Err(Error::Url));
        assert_eq!(
            parse("hey -n 1 -c 5 http://x/"),
            Err(Error::FewerRequestsThanWorkers)
        );
        assert!(matches!(
            parse("hey -q fast http://x/"),
            Err(Error::BadValue { .. })
        ));
        assert!(matches!(
            parse("hey -z http://x/"),
            Err(Error::BadValue { .. }) | Err(Error::Url)
        ));
    }

    #[test]
    fn only_plain_hey_commands_run_natively() {
        assert!(is_hey("hey -z 1m http://x/"));
        assert!(is_hey("/usr/local/bin/hey http://x/"));
        assert!(!is_hey("hey http://x/ | tee out"));
        assert!(!is_hey("curl http://x/"));
        assert!(!is_hey("heyo http://x/"));
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let r = Report {
            latencies_us: (1..=100).map(|i| i * 1000).collect(),
            total: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(r.percentile(50.0), Some(0.05));
        assert_eq!(r.percentile(99.0), Some(0.099));
        assert_eq!(r.rps(), 100.0);
        let text = r.render();
        assert!(text.contains("Requests/sec:\t100.0000"), "{text}");
        assert!(text.contains("  50% in 0.0500 secs"), "{text}");
    }
}
