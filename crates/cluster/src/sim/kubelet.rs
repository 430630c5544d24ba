//! The simulated kubelet's decisions (pure, no I/O): the status a Pod's containers would report at
//! a given time, including the faults a template can ask for through annotations.
//!
//! | annotation on the pod template            | effect                                               |
//! |-------------------------------------------|------------------------------------------------------|
//! | `sim.serin.dev/fault: crashloop`          | containers wait in `CrashLoopBackOff`, restartCount grows, never Ready |
//! | `sim.serin.dev/fault: unready`            | containers run but never become Ready                |
//! | `sim.serin.dev/fault: slow-start`         | Ready only after `sim.serin.dev/slow-start-seconds` (default 30) |
use super::util::{self, add_secs};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Pod (template) annotation selecting a simulated fault.
pub const FAULT_ANNOTATION: &str = "sim.serin.dev/fault";
/// Pod (template) annotation: seconds before a `slow-start` pod becomes Ready.
pub const SLOW_START_ANNOTATION: &str = "sim.serin.dev/slow-start-seconds";
/// Readiness delay of a `slow-start` pod when the annotation above is absent.
pub const DEFAULT_SLOW_START_SECONDS: i64 = 30;

/// A simulated fault, read from a Pod's annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Healthy: Ready after the configured delay.
    None,
    /// Containers crash and restart forever.
    CrashLoop,
    /// Containers run but never pass readiness.
    Unready,
    /// Ready only after this many seconds.
    SlowStart(i64),
}

impl Fault {
    /// The fault a Pod asks for; unknown values count as healthy.
    pub fn of(pod: &Pod) -> Fault {
        let annotations = pod.metadata.annotations.as_ref();
        match annotations
            .and_then(|a| a.get(FAULT_ANNOTATION))
            .map(String::as_str)
        {
            Some("crashloop") => Fault::CrashLoop,
            Some("unready") => Fault::Unready,
            Some("slow-start") => Fault::SlowStart(
                annotations
                    .and_then(|a| a.get(SLOW_START_ANNOTATION))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_SLOW_START_SECONDS),
            ),
            _ => Fault::None,
        }
    }
}

/// Where and since when a Pod runs, and the kubelet's timing settings.
#[derive(Debug, Clone)]
pub struct PodEnv {
    /// The node's IP.
    pub host_ip: String,
    /// The Pod's IP.
    pub pod_ip: String,
    /// When the kubelet started the Pod.
    pub started: Timestamp,
    /// How long a healthy Pod takes to become Ready.
    pub ready_delay: SignedDuration,
    /// How often a crash-looping container restarts.
    pub crash_interval: SignedDuration,
}

/// The status the kubelet reports for `pod` at `now`, and when it will next change by itself.
pub fn pod_status(pod: &Pod, env: &PodEnv, now: Timestamp) -> (PodStatus, Option<Timestamp>) {
    let fault = Fault::of(pod);
    let started = util::time(env.started);
    let ready_at = match fault {
        Fault::None => Some(
            env.started
                .checked_add(env.ready_delay)
                .unwrap_or(env.started),
        ),
        Fault::SlowStart(secs) => Some(add_secs(env.started, secs)),
        Fault::CrashLoop | Fault::Unready => None,
    };
    let ready = ready_at.is_some_and(|t| t <= now);
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut next = if ready { None } else { ready_at };
    let restarts = if fault == Fault::CrashLoop {
        let interval = env.crash_interval.as_millis().max(1);
        let elapsed = now.duration_since(env.started).as_millis().max(0);
        let n = elapsed / interval;
        next = env
            .started
            .checked_add(SignedDuration::from_millis(((n + 1) * interval) as i64))
            .ok();
        (n + 1) as i32
    } else {
        0
    };
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let container_id = format!("containerd://{:064x}", i as u64 + 1);
            let (state, last_state) = if fault == Fault::CrashLoop {
                let message = format!(
                    "back-off 10s restarting failed container={} pod={pod_name}_{namespace}({uid})",
                    c.name
                );
                (
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some(message),
                        }),
                        ..Default::default()
                    },
                    Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            reason: Some("Error".into()),
                            started_at: Some(started.clone()),
                            finished_at: Some(started.clone()),
                            container_id: Some(container_id.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                )
            } else {
                (
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(started.clone()),
                        }),
                        ..Default::default()
                    },
                    None,
                )
            };
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: format!("sim://{}", c.image.as_deref().unwrap_or_default()),
                container_id: Some(container_id),
                ready,
                started: Some(fault != Fault::CrashLoop),
                restart_count: restarts,
                state: Some(state),
                last_state,
                ..Default::default()
            }
        })
        .collect();
    let unready_names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let condition = |type_: &str, ok: bool, since: Timestamp, unready_reason: bool| PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(util::time(since)),
        reason: (!ok && unready_reason).then(|| "ContainersNotReady".into()),
        message: (!ok && unready_reason).then(|| {
            format!(
                "containers with unready status: [{}]",
                unready_names.join(" ")
            )
        }),
        ..Default::default()
    };
    let ready_since = if ready {
        ready_at.unwrap_or(env.started)
    } else {
        env.started
    };
    let status = PodStatus {
        phase: Some("Running".into()),
        host_ip: Some(env.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: env.host_ip.clone(),
        }]),
        pod_ip: Some(env.pod_ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: env.pod_ip.clone(),
        }]),
        start_time: Some(started.clone()),
        qos_class: Some(qos_class(pod).into()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", true, env.started, false),
            condition("Initialized", true, env.started, false),
            condition("Ready", ready, ready_since, true),
            condition("ContainersReady", ready, ready_since, true),
            condition("PodScheduled", true, env.started, false),
        ]),
        container_statuses: Some(statuses),
        ..Default::default()
    };
    (status, next)
}

/// The QoS class the API server assigns: Guaranteed when every container's requests equal its
/// limits for cpu and memory, BestEffort when nothing is set, Burstable otherwise.
fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        for key in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(key));
            let request = requests.and_then(|r| r.get(key)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (_, true) => "Guaranteed",
        (true, false) => "Burstable",
        (false, false) => "BestEffort",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;

    fn pod_with(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            spec: Some(crate::sim::testing::app_pod_spec()),
            status: None,
        }
    }

    fn env(started: Timestamp) -> PodEnv {
        PodEnv {
            host_ip: "10.0.0.10".into(),
            pod_ip: "10.244.0.5".into(),
            started,
            ready_delay: SignedDuration::from_secs(1),
            crash_interval: SignedDuration::from_secs(10),
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn ready(status: &PodStatus) -> bool {
        status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True")
    }

    #[test]
    fn healthy_pods_run_at_once_and_become_ready_after_the_delay() {
        let pod = pod_with(&[]);
        let (early, next) = pod_status(&pod, &env(t(0)), t(0));
        assert_eq!(early.phase.as_deref(), Some("Running"));
        assert!(!ready(&early));
        assert_eq!(next, Some(t(1)));
        let (late, next) = pod_status(&pod, &env(t(0)), t(1));
        assert!(ready(&late));
        assert_eq!(next, None);
        let cs = late.container_statuses.unwrap_or_default();
        assert!(cs[0].ready && cs[0].started == Some(true) && cs[0].restart_count == 0);
    }

    #[test]
    fn crashlooping_pods_never_get_ready_and_count_restarts() {
        let pod = pod_with(&[(FAULT_ANNOTATION, "crashloop")]);
        let (status, next) = pod_status(&pod, &env(t(0)), t(25));
        assert!(!ready(&status));
        let cs = status.container_statuses.unwrap_or_default();
        assert_eq!(cs[0].restart_count, 3);
        let waiting = cs[0].state.as_ref().and_then(|s| s.waiting.as_ref());
        assert_eq!(
            waiting.and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        assert_eq!(next, Some(t(30)));
    }

    #[test]
    fn unready_pods_run_but_stay_unready() {
        let pod = pod_with(&[(FAULT_ANNOTATION, "unready")]);
        let (status, next) = pod_status(&pod, &env(t(0)), t(1000));
        assert!(!ready(&status));
        assert_eq!(next, None);
        let ready_cond = status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned());
        assert_eq!(
            ready_cond.and_then(|c| c.message),
            Some("containers with unready status: [app]".to_string())
        );
    }

    #[test]
    fn slow_start_pods_wait_for_their_annotation() {
        let pod = pod_with(&[
            (FAULT_ANNOTATION, "slow-start"),
            (SLOW_START_ANNOTATION, "5"),
        ]);
        assert!(!ready(&pod_status(&pod, &env(t(0)), t(4)).0));
        assert!(ready(&pod_status(&pod, &env(t(0)), t(5)).0));
        let default = pod_with(&[(FAULT_ANNOTATION, "slow-start")]);
        assert_eq!(
            pod_status(&default, &env(t(0)), t(0)).1,
            Some(t(DEFAULT_SLOW_START_SECONDS))
        );
    }
}
