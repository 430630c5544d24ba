//! End to end: two real `serin controller` processes with `--enable-leader-election` (default
//! timings: 10s lease, 7s renew deadline, 2s retry) against the embedded cluster. The leader is
//! killed (SIGKILL) or stopped (SIGTERM) mid-rollout; the standby must take over, resume the
//! canary from its status, and the cluster's write log must show the two processes never writing
//! at the same time.
//!
//! `SERIN_FAILOVER_RUNS=5 cargo test --test leader_election_e2e -- --ignored --nocapture` repeats
//! the kill test and prints the median failover time.
mod common;

use chrono::{DateTime, Utc};
use common::e2e::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use serde_json::json;
use serin::api::CanaryPhase;
use serin::cluster::WriteRecord;
use serin::controller::leader::LEASE_NAME;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STEPS: [i32; 5] = [10, 20, 30, 40, 50];
const WEIGHT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// One controller process; killed when dropped.
struct Controller {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    fn start(env: &Env, name: &'static str) -> anyhow::Result<Controller> {
        let port = free_port()?;
        let child = env
            .controller_command(name, port)?
            .arg("--enable-leader-election")
            // As deploy/ runs it: the downward API names the Pod and its namespace, which holds
            // the Lease (and the Role that allows it).
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", LEASE_NAMESPACE)
            .spawn()?;
        Ok(Controller { name, port, child })
    }

    /// Whether a holder identity or User-Agent names this process (`<POD_NAME>_<pid>_<random>`).
    fn is(&self, identity: &str) -> bool {
        identity.contains(&format!("{}_{}_", self.name, self.child.id()))
    }

    fn sigterm(&self) -> anyhow::Result<()> {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -TERM failed");
        Ok(())
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        Ok(reqwest::get(url).await?.text().await?)
    }
}

/// The namespace deploy/ installs Serin in; the Lease lives there.
const LEASE_NAMESPACE: &str = "serin-system";

/// Starts the embedded cluster with the namespace the Lease lives in.
async fn start_env(name: &str) -> anyhow::Result<Env> {
    let env = Env::start(name).await?;
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    nss.create(
        &Default::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": LEASE_NAMESPACE}}))?,
    )
    .await?;
    Ok(env)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn holder(env: &Env) -> anyhow::Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), LEASE_NAMESPACE);
    Ok(leases
        .get_opt(LEASE_NAME)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// podinfo with an NGINX Ingress and a Canary that shifts 10% per 1-second step up to 50%.
async fn deploy(env: &Env) -> anyhow::Result<()> {
    env.apply(config("blue")).await?;
    env.apply(podinfo("podinfo:1.0.0", json!({}))).await?;
    env.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": NS, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}}]}}]}}))
        .await?;
    env.apply(canary(
        "podinfo",
        "Deployment",
        "podinfo",
        json!({
            "provider": "nginx",
            "progressDeadlineSeconds": 120,
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
            "analysis": {"interval": "1s", "threshold": 2, "stepWeight": 10, "maxWeight": 50}
        }),
    ))
    .await
}

/// Records every distinct value of the canary Ingress's weight annotation, in order.
fn record_weights(env: &Env) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let ingresses: Api<Ingress> = env.api();
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(Some(ing)) = ingresses.get_opt("podinfo-canary").await {
                let w = ing
                    .metadata
                    .annotations
                    .and_then(|a| a.get(WEIGHT_ANNOTATION).cloned());
                if let Some(w) = w {
                    let mut seen = out.lock().unwrap_or_else(|e| e.into_inner());
                    if seen.last() != Some(&w) {
                        seen.push(w);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (seen, task)
}

/// How many times each "canary weight N" step was announced, over all Events.
async fn weight_steps(env: &Env) -> anyhow::Result<Vec<(i32, i32)>> {
    let events: Vec<Event> = env.api::<Event>().list(&Default::default()).await?.items;
    Ok(STEPS
        .iter()
        .map(|w| {
            let note = format!("Advance podinfo.{NS} canary weight {w}");
            let n = events
                .iter()
                .filter(|e| e.note.as_deref() == Some(note.as_str()))
                .map(|e| e.series.as_ref().map(|s| s.count).unwrap_or(1))
                .sum();
            (*w, n)
        })
        .collect())
}

fn is_lease(w: &WriteRecord) -> bool {
    w.key.resource == "leases"
}

/// Checks the write log: the standby wrote nothing but Lease attempts until it acquired the
/// Lease, and every non-Lease write of the old leader was answered before the new leader's
/// first successful Lease write. Returns the new leader's acquisition and first non-Lease write.
fn check_no_interleaving<'a>(
    writes: &'a [WriteRecord],
    old: &Controller,
    new: &Controller,
    after: DateTime<Utc>,
) -> (&'a WriteRecord, &'a WriteRecord) {
    let by = |c: &Controller| {
        writes
            .iter()
            .filter(|w| c.is(&w.key.user_agent))
            .collect::<Vec<_>>()
    };
    let (old_writes, new_writes) = (by(old), by(new));
    assert!(
        old_writes.iter().any(|w| !is_lease(w)),
        "the write log does not attribute the leader's writes to it by User-Agent"
    );
    let acquired = new_writes
        .iter()
        .copied()
        .find(|w| is_lease(w) && w.succeeded() && w.at > after)
        .expect("the new leader's lease acquisition");
    let first_write = new_writes
        .iter()
        .copied()
        .find(|w| !is_lease(w))
        .expect("the new leader's first write");
    for w in &new_writes {
        assert!(
            is_lease(w) || w.seq > acquired.seq,
            "the standby wrote before it held the lease: {w:?}"
        );
    }
    let last_old = old_writes
        .iter()
        .rev()
        .find(|w| !is_lease(w))
        .expect("the old leader's writes");
    assert!(
        last_old.seq < acquired.seq && last_old.seq < first_write.seq,
        "writes interleave: the old leader's {last_old:?} after the new leader's {acquired:?}"
    );
    (acquired, first_write)
}

/// One kill run; returns the failover times (to the new leader's Lease acquisition and to its
/// first reconcile write).
async fn kill_the_leader_mid_rollout(run: usize) -> anyhow::Result<(Duration, Duration)> {
    let env = start_env(&format!("le-kill-{run}")).await?;
    deploy(&env).await?;
    let mut a = Some(Controller::start(&env, "ctrl-a")?);
    let mut b = Some(Controller::start(&env, "ctrl-b")?);
    let leader_id = eventually(30, "a leader", || holder(&env)).await?;
    let a_leads = a.as_ref().is_some_and(|c| c.is(&leader_id));
    let (mut leader, standby) = if a_leads {
        (a.take(), b.take())
    } else {
        (b.take(), a.take())
    };
    let standby = standby.expect("standby");
    assert!(
        leader.as_ref().is_some_and(|l| l.is(&leader_id)),
        "the holder {leader_id} is neither process"
    );
    env.wait_phase("podinfo", CanaryPhase::Initialized, 40)
        .await?;

    // A standby is healthy and ready, exports serin_leader 0 and no per-canary gauges.
    let standby_metrics = standby.metrics().await?;
    assert!(
        standby_metrics.contains("serin_leader 0"),
        "{standby_metrics}"
    );
    assert!(
        !standby_metrics.contains("flagger_canary_status{"),
        "{standby_metrics}"
    );
    let leader_metrics = leader.as_ref().expect("leader").metrics().await?;
    assert!(
        leader_metrics.contains("serin_leader 1"),
        "{leader_metrics}"
    );
    assert!(
        leader_metrics.contains("flagger_canary_status{"),
        "{leader_metrics}"
    );
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", standby.port)).await?;
    assert!(ready.status().is_success());

    let (weights, recorder) = record_weights(&env);
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    eventually(30, "the rollout to shift traffic", || async {
        let s = env.canary("podinfo").await?.status.unwrap_or_default();
        Ok((s.phase == Some(CanaryPhase::Progressing) && s.canary_weight > 0).then_some(()))
    })
    .await?;
    let killed_at = Utc::now();
    let weight_at_kill = env
        .canary("podinfo")
        .await?
        .status
        .unwrap_or_default()
        .canary_weight;
    let mut old = leader.take().expect("leader");
    old.child.kill()?;
    old.child.wait()?;
    eventually(30, "the standby to take the lease", || async {
        Ok(holder(&env).await?.filter(|h| standby.is(h)).map(|_| ()))
    })
    .await?;
    if let Err(e) = env.wait_phase("podinfo", CanaryPhase::Succeeded, 60).await {
        eprintln!(
            "{} log:\n{}\n{} log:\n{}",
            old.name,
            env.log_of(old.name),
            standby.name,
            env.log_of(standby.name)
        );
        return Err(e);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    recorder.abort();

    let writes = env.cluster.requests().writes();
    let (acquired, first_write) = check_no_interleaving(&writes, &old, &standby, killed_at);
    let to_lease = (acquired.at - killed_at).to_std()?;
    let to_write = (first_write.at - killed_at).to_std()?;
    println!(
        "run {run}: killed at weight {weight_at_kill}; the standby acquired the lease {:.2}s after SIGKILL and wrote ({} {}/{}) {:.2}s after",
        to_lease.as_secs_f64(),
        first_write.key.verb,
        first_write.key.resource,
        first_write.key.name,
        to_write.as_secs_f64()
    );
    assert!(
        to_lease < Duration::from_secs(15),
        "failover took {to_lease:?}"
    );

    // The new leader resumed from the status: every step once, in order, none skipped.
    let seen = weights.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let want: Vec<String> = std::iter::once(0)
        .chain(STEPS)
        .chain(std::iter::once(0))
        .map(|w| w.to_string())
        .collect();
    assert_eq!(seen, want, "canary Ingress weights");
    let steps = weight_steps(&env).await?;
    assert!(
        steps.iter().all(|(_, n)| *n == 1),
        "each step must be announced exactly once: {steps:?}"
    );
    drop(old);
    Ok((to_lease, to_write))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_killed_leader_and_resumes_the_rollout_without_interleaved_writes()
-> anyhow::Result<()> {
    kill_the_leader_mid_rollout(0).await?;
    Ok(())
}

/// Repeats the kill test `SERIN_FAILOVER_RUNS` times (default 5) and prints the median.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a measurement, run on demand"]
async fn failover_time_over_several_kills() -> anyhow::Result<()> {
    let runs: usize = std::env::var("SERIN_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut leases = vec![];
    let mut writes = vec![];
    for run in 1..=runs {
        let (l, w) = kill_the_leader_mid_rollout(run).await?;
        leases.push(l);
        writes.push(w);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "median over {runs} kills: lease acquired {:.2}s, first reconcile write {:.2}s after SIGKILL",
        median(&mut leases).as_secs_f64(),
        median(&mut writes).as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_so_the_standby_takes_over_at_once() -> anyhow::Result<()> {
    let env = start_env("le-term").await?;
    deploy(&env).await?;
    let a = Controller::start(&env, "ctrl-a")?;
    let leader_id = eventually(30, "a leader", || holder(&env)).await?;
    assert!(a.is(&leader_id), "the only candidate leads");
    env.wait_phase("podinfo", CanaryPhase::Initialized, 40)
        .await?;
    let b = Controller::start(&env, "ctrl-b")?;
    // The standby is up (its metrics answer) and has seen the lease held.
    eventually(20, "the standby's metrics", || async {
        Ok(b.metrics()
            .await
            .ok()
            .filter(|m| m.contains("serin_leader 0")))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut a = a;
    let stopped_at = Utc::now();
    let started = std::time::Instant::now();
    a.sigterm()?;
    let status = tokio::task::spawn_blocking(move || {
        let s = a.child.wait();
        (s, a)
    })
    .await?;
    let (exit, a) = status;
    let exit = exit?;
    println!(
        "the leader exited {:.2}s after SIGTERM with {exit}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        exit.success(),
        "SIGTERM exits 0: {exit}\n{}",
        env.log_of("ctrl-a")
    );
    assert!(
        env.log_of("ctrl-a").contains("leadership released"),
        "{}",
        env.log_of("ctrl-a")
    );
    eventually(10, "the standby to take the lease", || async {
        Ok(holder(&env).await?.filter(|h| b.is(h)).map(|_| ()))
    })
    .await?;
    let writes = env.cluster.requests().writes();
    let acquired = writes
        .iter()
        .find(|w| is_lease(w) && w.succeeded() && b.is(&w.key.user_agent) && w.at > stopped_at)
        .expect("the standby's acquisition");
    let took = (acquired.at - stopped_at).to_std()?;
    println!(
        "the standby acquired the released lease {:.2}s after SIGTERM",
        took.as_secs_f64()
    );
    // Well under the 10 s lease duration: the standby's next look (every 2 s) finds it free.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for w in writes
        .iter()
        .filter(|w| !is_lease(w) && a.is(&w.key.user_agent))
    {
        assert!(
            w.seq < acquired.seq,
            "the old leader wrote after release: {w:?}"
        );
    }
    // The new leader carries on: a rollout completes.
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 60)
        .await?;
    let metrics = b.metrics().await?;
    assert!(metrics.contains("serin_leader 1"), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_writing_and_exits_non_zero() -> anyhow::Result<()> {
    let env = start_env("le-lost").await?;
    deploy(&env).await?;
    let a = Controller::start(&env, "ctrl-a")?;
    eventually(30, "a leader", || holder(&env)).await?;
    env.wait_phase("podinfo", CanaryPhase::Initialized, 40)
        .await?;
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    eventually(30, "the rollout to shift traffic", || async {
        let s = env.canary("podinfo").await?.status.unwrap_or_default();
        Ok((s.canary_weight > 0).then_some(()))
    })
    .await?;
    // Another party takes the Lease over (a conditional update, as a candidate would).
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), LEASE_NAMESPACE);
    let mut lease = leases.get(LEASE_NAME).await?;
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
    }
    leases
        .replace(LEASE_NAME, &Default::default(), &lease)
        .await?;
    let started = std::time::Instant::now();
    let (exit, a) = tokio::task::spawn_blocking(move || {
        let mut a = a;
        let s = a.child.wait();
        (s, a)
    })
    .await?;
    let exit = exit?;
    println!(
        "the leader exited {:.2}s after losing the lease, with {exit}",
        started.elapsed().as_secs_f64()
    );
    assert!(!exit.success(), "a lost lease exits non-zero");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "noticed within a retry period or two"
    );
    let log = env.log_of("ctrl-a");
    assert!(
        log.contains("leadership lost") && log.contains("intruder"),
        "{log}"
    );
    // The loss is detected when the renewal conflicts; from then on nothing leaves the
    // process (a write already under way may still be answered, within milliseconds).
    let writes = env.cluster.requests().writes();
    let mine: Vec<_> = writes.iter().filter(|w| a.is(&w.key.user_agent)).collect();
    let conflict = mine
        .iter()
        .find(|w| is_lease(w) && w.code == 409)
        .expect("the conflicting renewal");
    let after: Vec<_> = mine
        .iter()
        .filter(|w| !is_lease(w) && w.seq > conflict.seq)
        .collect();
    println!(
        "{} write(s) answered after the conflicting renewal",
        after.len()
    );
    for w in after {
        assert!(
            (w.at - conflict.at).to_std().unwrap_or_default() < Duration::from_millis(500),
            "wrote after the loss was detected: {w:?}"
        );
    }
    assert!(
        mine.iter().any(|w| !is_lease(w)),
        "the leader wrote during the rollout"
    );
    // Nothing moves any more: the intruder does not reconcile.
    let before = env.canary("podinfo").await?.status.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = env.canary("podinfo").await?.status.unwrap_or_default();
    assert_eq!(still.canary_weight, before.canary_weight);
    Ok(())
}
