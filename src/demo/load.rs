//! The demo's load generator: steady HTTP traffic through the gateway at a fixed rate, with
//! client-side counts of what came back (network I/O).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What the clients saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadStats {
    /// Requests sent.
    pub sent: u64,
    /// Answers by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Answers the gateway itself produced because it could not route (by reason).
    pub routing_failures: BTreeMap<String, u64>,
    /// Requests that got no answer at all (connection or timeout).
    pub transport_errors: u64,
}

/// A running load generator; stops when dropped.
pub struct Load {
    stats: Arc<Mutex<LoadStats>>,
    task: JoinHandle<()>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Load {
    /// Sends `rps` GET requests per second to `target` with the Host header `host`.
    pub fn start(target: SocketAddr, host: &str, rps: u32) -> Result<Load, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let st = stats.clone();
        let host = host.to_string();
        let period = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (http, st, host) = (http.clone(), st.clone(), host.clone());
                tokio::spawn(async move {
                    lock(&st).sent += 1;
                    let r = http
                        .get(format!("http://{target}/"))
                        .header("host", host)
                        .send()
                        .await;
                    let mut s = lock(&st);
                    match r {
                        Ok(r) => {
                            *s.by_status.entry(r.status().as_u16()).or_default() += 1;
                            if let Some(reason) = r
                                .headers()
                                .get("x-demo-gateway-error")
                                .and_then(|v| v.to_str().ok())
                            {
                                *s.routing_failures.entry(reason.to_string()).or_default() += 1;
                            }
                        }
                        Err(_) => s.transport_errors += 1,
                    }
                });
            }
        });
        Ok(Load { stats, task })
    }

    /// A copy of the counts so far.
    pub fn stats(&self) -> LoadStats {
        lock(&self.stats).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
