//! Table-style tests of the pure state machine: Observed + Checks + now → Plan.
use super::*;
use crate::api::canary::{CanaryWebhook, TargetRef};
use crate::api::validation::Severity;
use chrono::TimeZone;
use serde_json::json;

const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + secs, 0)
        .single()
        .expect("valid time")
}

fn target(fp: &str) -> TargetObs {
    TargetObs {
        kind: TargetKind::Deployment,
        name: "podinfo".into(),
        selector: ("app".into(), "podinfo".into()),
        fingerprint: fp.into(),
        tracked_configs: Default::default(),
        replicas: 0,
        scale_up_replicas: 2,
        readiness: Readiness::Ready,
        pods: None,
    }
}

fn primary(fp: &str) -> PrimaryObs {
    PrimaryObs {
        fingerprint: fp.into(),
        readiness: Readiness::Ready,
        replicas: 2,
    }
}

/// A kubernetes-provider canary with 3 blue/green iterations and a 10s interval, initialised.
fn fx() -> Observed {
    let mut canary = Canary::test()
        .provider("kubernetes")
        .analysis(json!({"interval": "10s", "threshold": 2, "iterations": 3, "stepWeight": null}))
        .build();
    canary.status = Some(CanaryStatus {
        phase: Some(CanaryPhase::Initialized),
        last_applied_spec: Some("v1:a".into()),
        last_promoted_spec: Some("v1:a".into()),
        conditions: Some(vec![CanaryCondition {
            type_: READY_CONDITION.into(),
            status: "True".into(),
            reason: "Valid".into(),
            message: Some("Canary spec and target are valid.".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    Observed {
        canary,
        provider: Some(Provider::Kubernetes),
        problems: vec![],
        target: Ok(target("v1:a")),
        primary: Some(primary("v1:a")),
        generated: Generated {
            primary: None,
            ..Default::default()
        },
        interval: Duration::from_secs(10),
        has_finalizer: false,
        routes: None,
        target_ready_pods: None,
    }
}

fn with_status(mut o: Observed, f: impl FnOnce(&mut CanaryStatus)) -> Observed {
    f(o.canary.status.get_or_insert_with(Default::default));
    o
}

/// A run in progress: Progressing on revision b, last tick at `last`.
fn progressing(iterations: i32, last: i64) -> Observed {
    let mut o = fx();
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:b")
    });
    with_status(o, |s| {
        s.phase = Some(CanaryPhase::Progressing);
        s.last_applied_spec = Some("v1:b".into());
        s.iterations = iterations;
        s.last_analysis_time = Some(to_time(at(last)));
        s.run_start_time = Some(to_time(at(0)));
    })
}

/// Plans with every check answered as given (gates open, hooks pass unless overridden).
fn decide_with(o: &Observed, checks: Checks, now: DateTime<Utc>) -> Plan {
    let mut checks = checks;
    for _ in 0..10 {
        match plan(o, &checks, now) {
            Step::Done(p) => return *p,
            Step::Need(r) => match r {
                CheckRequest::ConfirmRollout => checks.confirm_rollout = Some(true),
                CheckRequest::Rollback => checks.rollback = Some(false),
                CheckRequest::PreRollout => checks.pre_rollout = Some(Ok(())),
                CheckRequest::Analysis => {
                    checks.analysis = Some(Ok(crate::core::verdict::AnalysisReport::pass()))
                }
                CheckRequest::ConfirmTrafficIncrease => {
                    checks.confirm_traffic_increase = Some(true)
                }
                CheckRequest::ConfirmPromotion => checks.confirm_promotion = Some(true),
            },
        }
    }
    panic!("plan kept asking for checks")
}

fn decide(o: &Observed, now: DateTime<Utc>) -> Plan {
    decide_with(o, Checks::default(), now)
}

fn phase_of(p: &Plan) -> Option<CanaryPhase> {
    p.status.as_ref().and_then(|s| s.phase)
}

/// The messages of the plan's Events whose type `kind` accepts.
fn event_messages(p: &Plan, kind: impl Fn(&EventType) -> bool) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(t, m) if kind(t) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn events(p: &Plan) -> Vec<String> {
    event_messages(p, |_| true)
}

fn warnings(p: &Plan) -> Vec<String> {
    event_messages(p, |t| matches!(t, EventType::Warning))
}

fn normal_events(p: &Plan) -> Vec<String> {
    event_messages(p, |t| matches!(t, EventType::Normal))
}

fn without_events(p: &Plan) -> Vec<Action> {
    p.actions
        .iter()
        .filter(|a| !matches!(a, Action::Event(..)))
        .cloned()
        .collect()
}

/// The plan only waits: `status.waitingFor` names `reason`, and nothing else of the status
/// changed.
fn only_the_wait_changed(o: &Observed, p: &Plan, reason: &str) {
    let mut s = p.status.clone().expect("the wait is written");
    assert_eq!(
        s.waiting_for.take().map(|w| w.reason).as_deref(),
        Some(reason)
    );
    let mut before = o.canary.status.clone().unwrap_or_default();
    before.waiting_for = None;
    s.last_transition_time = before.last_transition_time.clone();
    assert_eq!(s, before, "only status.waitingFor may change");
}

fn hook(kind: &str) -> CanaryWebhook {
    CanaryWebhook {
        name: kind.into(),
        type_: Some(kind.into()),
        url: "http://gate.test/".into(),
        ..Default::default()
    }
}

/// A new revision (b) of the fixture, behind webhooks of the given kinds.
fn new_revision_behind(kinds: &[&str]) -> Observed {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    o.canary.spec.analysis.as_mut().expect("analysis").webhooks =
        Some(kinds.iter().map(|k| hook(k)).collect());
    o
}

/// An Istio run at its max weight of 50, with only the confirm-promotion gate left.
fn at_max_weight_behind_confirm_promotion() -> Observed {
    let mut o = progressing(0, 0);
    o.provider = Some(Provider::Istio);
    o.canary.spec.provider = Some("istio".into());
    let a = o.canary.spec.analysis.as_mut().expect("analysis");
    a.iterations = None;
    a.step_weight = Some(50);
    a.max_weight = Some(50);
    a.webhooks = Some(vec![hook("confirm-promotion")]);
    with_status(o, |s| s.canary_weight = 50)
}

/// Checks with the confirm-rollout gate answered `open`.
fn confirm_rollout(open: bool) -> Checks {
    Checks {
        confirm_rollout: Some(open),
        ..Default::default()
    }
}

/// Checks with the confirm-promotion gate answered `open`.
fn confirm_promotion(open: bool) -> Checks {
    Checks {
        confirm_promotion: Some(open),
        ..Default::default()
    }
}

#[test]
fn a_new_canary_starts_initializing_and_creates_the_primary() {
    let mut o = with_status(fx(), |s| *s = CanaryStatus::default());
    o.primary = None;
    let w = Workload::Deployment(Default::default());
    o.generated.primary = Some(w.clone());
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initializing));
    assert!(p.actions.contains(&Action::CreatePrimary(w)));
    assert!(matches!(p.requeue, Requeue::After(_)));
}

#[test]
fn initialization_waits_for_the_primary_to_be_ready() {
    let mut o = with_status(fx(), |s| s.phase = Some(CanaryPhase::Initializing));
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:a")
    });
    o.primary = Some(PrimaryObs {
        readiness: Readiness::Waiting("0 of 2 ready".into()),
        ..primary("v1:a")
    });
    let p = decide(&o, at(0));
    assert!(
        !p.actions.contains(&Action::ScaleTarget(0)),
        "the target must keep serving until the primary is ready"
    );
    only_the_wait_changed(&o, &p, "PrimaryNotReady");
}

#[test]
fn a_ready_primary_completes_initialization_and_scales_the_target_to_zero() {
    let mut o = with_status(fx(), |s| s.phase = Some(CanaryPhase::Initializing));
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:a")
    });
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initialized));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert_eq!(events(&p), vec!["Initialization done! podinfo.test"]);
    let promoted = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Promoted").cloned());
    assert_eq!(
        promoted.map(|c| (c.status, c.reason)),
        Some(("True".into(), "Initialized".into()))
    );
}

#[test]
fn an_idle_canary_plans_nothing_and_waits_for_a_change() {
    let o = with_status(fx(), |s| s.phase = Some(CanaryPhase::Succeeded));
    let p = decide(&o, at(1000));
    assert_eq!(p, nothing_until_a_change());
}

#[test]
fn a_new_revision_scales_the_canary_up_and_starts_progressing() {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert!(p.actions.contains(&Action::ScaleTarget(2)));
    assert_eq!(
        events(&p),
        vec!["New revision detected! Scaling up podinfo.test"]
    );
    let s = p.status.expect("status");
    assert_eq!(s.last_applied_spec.as_deref(), Some("v1:b"));
    assert_eq!((s.canary_weight, s.iterations, s.failed_checks), (0, 0, 0));
    assert_eq!(p.requeue, Requeue::After(Duration::from_secs(10)));
}

#[test]
fn a_failed_revision_is_not_retried_until_it_changes() {
    let mut o = with_status(fx(), |s| {
        s.phase = Some(CanaryPhase::Failed);
        s.last_applied_spec = Some("v1:b".into());
    });
    o.target = Ok(target("v1:b"));
    let p = decide(&o, at(0));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(
        phase_of(&p).or(Some(CanaryPhase::Failed)),
        Some(CanaryPhase::Failed)
    );
    o.target = Ok(target("v1:c"));
    assert_eq!(phase_of(&decide(&o, at(0))), Some(CanaryPhase::Progressing));
}

#[test]
fn a_canary_flagger_left_failed_is_adopted_without_a_new_run() {
    let mut o = with_status(fx(), |s| {
        s.phase = Some(CanaryPhase::Failed);
        s.last_applied_spec = Some("85d557f47b".into());
    });
    o.target = Ok(target("v1:b"));
    let p = decide(&o, at(0));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleTarget(_)))
    );
    assert_eq!(
        p.status.and_then(|s| s.last_applied_spec).as_deref(),
        Some("v1:b")
    );
}

#[test]
fn a_run_flagger_left_progressing_carries_on_at_its_weight_instead_of_restarting() {
    let mut o = progressing(0, 0);
    o.canary.spec.provider = Some("gatewayapi:v1".into());
    o.provider = Some(Provider::GatewayApiV1);
    if let Some(a) = o.canary.spec.analysis.as_mut() {
        a.iterations = None;
        a.step_weight = Some(20);
        a.max_weight = Some(60);
    }
    o.routes = Some(Ok(Routes {
        primary: 80,
        canary: 20,
        mirrored: false,
    }));
    let o = with_status(o, |s| {
        s.last_applied_spec = Some("85d557f47b".into());
        s.canary_weight = 20;
    });
    let p = decide(&o, at(10));
    let status = p.status.clone().expect("status written");
    assert_eq!(status.last_applied_spec.as_deref(), Some("v1:b"));
    assert_eq!(status.canary_weight, 40, "{:?}", events(&p));
    assert!(p.actions.contains(&Action::SetRoutes(Routes {
        primary: 60,
        canary: 40,
        mirrored: false,
    })));
    assert!(events(&p)[0].starts_with("Adopted podinfo.test from Flagger's status"));
}

#[test]
fn a_promotion_flagger_left_unfinished_copies_the_target_and_goes_on() {
    let mut o = progressing(0, 0);
    o.generated.primary = Some(Workload::Deployment(Default::default()));
    o.primary = Some(primary("v1:a"));
    let o = with_status(o, |s| {
        s.phase = Some(CanaryPhase::Promoting);
        s.last_applied_spec = Some("85d557f47b".into());
    });
    let p = decide(&o, at(10));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::PromotePrimary(_))),
        "{:?}",
        p.actions
    );
    assert_eq!(
        p.status.and_then(|s| s.last_applied_spec).as_deref(),
        Some("v1:b")
    );
    // Once the copy has landed, promotion finishes as usual.
    let mut o = with_status(o, |s| s.last_applied_spec = Some("v1:b".into()));
    o.primary = Some(primary("v1:b"));
    assert_eq!(phase_of(&decide(&o, at(20))), Some(CanaryPhase::Finalising));
}

#[test]
fn a_canary_flagger_left_succeeded_is_adopted_without_a_run() {
    let o = with_status(fx(), |s| {
        s.phase = Some(CanaryPhase::Succeeded);
        s.last_applied_spec = Some("85d557f47b".into());
        s.last_promoted_spec = Some("85d557f47b".into());
    });
    let p = decide(&o, at(0));
    assert!(p.actions.is_empty());
    assert_ne!(phase_of(&p), Some(CanaryPhase::Progressing));
}

#[test]
fn a_tick_that_is_not_due_requeues_for_the_remaining_time() {
    let o = progressing(1, 0);
    let p = decide(&o, at(4));
    assert!(p.actions.is_empty());
    assert_eq!(p.requeue, Requeue::After(Duration::from_secs(6)));
}

#[test]
fn blue_green_iterations_advance_once_per_interval_then_promote() {
    let w = Workload::Deployment(Default::default());
    let mut o = progressing(0, 0);
    o.generated.primary = Some(w.clone());
    let p = decide(&o, at(10));
    assert_eq!(
        events(&p),
        vec![
            "Starting canary analysis for podinfo.test",
            "Advance podinfo.test canary iteration 1/3"
        ]
    );
    assert_eq!(p.status.as_ref().map(|s| s.iterations), Some(1));

    let mut o = progressing(3, 0);
    o.generated.primary = Some(w.clone());
    let p = decide(&o, at(10));
    assert!(p.actions.contains(&Action::PromotePrimary(w)));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Promoting));
}

#[test]
fn a_restarted_controller_resumes_at_the_same_iteration() {
    // Status says: 2 iterations done, last tick at t=20. A fresh process planning at t=25 waits,
    // and at t=30 performs iteration 3: nothing is repeated or skipped.
    let o = progressing(2, 20);
    assert_eq!(
        decide(&o, at(25)).requeue,
        Requeue::After(Duration::from_secs(5))
    );
    let p = decide(&o, at(30));
    assert_eq!(p.status.map(|s| s.iterations), Some(3));
}

#[test]
fn canary_weights_step_up_to_max_weight_then_promote() {
    let mut o = progressing(0, 0);
    o.provider = Some(Provider::Istio);
    o.canary.spec.provider = Some("istio".into());
    if let Some(a) = o.canary.spec.analysis.as_mut() {
        a.iterations = None;
        a.step_weight = Some(20);
        a.max_weight = Some(50);
    }
    let mut weights = vec![];
    let mut now = 10;
    for _ in 0..5 {
        let p = decide(&o, at(now));
        if phase_of(&p) == Some(CanaryPhase::Promoting) {
            weights.push(-1);
            break;
        }
        let s = p.status.expect("status");
        weights.push(s.canary_weight);
        o.canary.status = Some(s);
        now += 10;
    }
    assert_eq!(weights, vec![20, 40, 50, -1]);
}

#[test]
fn failed_checks_count_up_and_past_the_threshold_roll_back() {
    let o = progressing(1, 0);
    let p = decide_with(
        &o,
        Checks {
            analysis: Some(Err(
                "Halt podinfo.test advancement success rate 90.00% < 99%".into(),
            )),
            ..Default::default()
        },
        at(10),
    );
    assert_eq!(p.status.as_ref().map(|s| s.failed_checks), Some(1));
    assert_eq!(
        warnings(&p),
        vec!["Halt podinfo.test advancement success rate 90.00% < 99%"]
    );

    let o = with_status(progressing(1, 0), |s| s.failed_checks = 2);
    let p = decide(&o, at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(p.actions.contains(&Action::SetRoutes(Routes {
        primary: 100,
        canary: 0,
        mirrored: false
    })));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert!(
        events(&p)
            .contains(&"Rolling back podinfo.test failed checks threshold reached 2".to_string())
    );
    let s = p.status.expect("status");
    assert_eq!(
        s.failure_reason.as_deref(),
        Some("failed checks threshold reached 2")
    );
    let msg = s
        .conditions
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Promoted"))
        .and_then(|c| c.message);
    assert_eq!(
        msg.as_deref(),
        Some(
            "Canary analysis failed, Deployment scaled to zero. Reason: failed checks threshold reached 2."
        )
    );
}

#[test]
fn a_run_start_is_kept_as_the_last_run_start_after_a_rollback() {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    let started = decide(&o, at(5)).status.expect("status");
    assert_eq!(started.run_start_time, Some(to_time(at(5))));
    assert_eq!(started.last_run_start_time, Some(to_time(at(5))));

    let o = with_status(progressing(1, 0), |s| {
        s.failed_checks = 2;
        s.last_run_start_time = s.run_start_time.clone();
    });
    let s = decide(&o, at(10)).status.expect("status");
    assert_eq!(s.phase, Some(CanaryPhase::Failed));
    assert_eq!(s.run_start_time, None);
    assert_eq!(s.last_run_start_time, Some(to_time(at(0))));
}

#[test]
fn an_unready_canary_waits_without_failed_checks_until_the_progress_deadline() {
    let mut o = progressing(0, 0);
    o.target = Ok(TargetObs {
        replicas: 2,
        readiness: Readiness::Waiting("0 of 2 updated replicas are available".into()),
        ..target("v1:b")
    });
    let p = decide(&o, at(30));
    only_the_wait_changed(&o, &p, "CanaryPodsNotReady");
    let p = decide(&o, at(601));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(failure_reason(&p).is_some_and(|r| r.contains("progressDeadlineSeconds (600s)")));
}

#[test]
fn a_canary_scaled_to_zero_mid_run_is_scaled_up_and_gets_no_traffic_until_ready() {
    // A Deployment that wants no replicas reads as rolled out; it has no Pod to serve.
    let mut o = progressing(1, 0);
    o.target = Ok(TargetObs {
        replicas: 0,
        readiness: Readiness::Ready,
        ..target("v1:b")
    });
    let p = decide(&o, at(5));
    assert_eq!(p.actions.first(), Some(&Action::ScaleTarget(2)));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetRoutes(r) if r.canary > 0)),
        "{:?}",
        p.actions
    );
    only_the_wait_changed(&o, &p, "CanaryPodsNotReady");
    // Past the deadline it rolls back with a single scale-down, not an up-then-down bounce.
    let p = decide(&o, at(601));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    let scales: Vec<_> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::ScaleTarget(_)))
        .collect();
    assert_eq!(scales, vec![&Action::ScaleTarget(0)]);
}

#[test]
fn a_deployment_that_exceeded_its_deadline_rolls_back_at_once() {
    let mut o = progressing(1, 0);
    o.target = Ok(TargetObs {
        replicas: 2,
        readiness: Readiness::Failed(
            "deployment \"podinfo\" exceeded its progress deadline".into(),
        ),
        ..target("v1:b")
    });
    let p = decide(&o, at(5));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
}

#[test]
fn a_new_revision_mid_run_restarts_the_analysis() {
    let mut o = progressing(2, 0);
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:c")
    });
    let p = decide(&o, at(3));
    assert_eq!(
        events(&p),
        vec!["New revision detected! Restarting analysis for podinfo.test"]
    );
    let s = p.status.expect("status");
    assert_eq!(
        (s.iterations, s.last_applied_spec.as_deref()),
        (0, Some("v1:c"))
    );
}

#[test]
fn promotion_waits_for_the_new_primary_then_finalises_and_succeeds() {
    let mut o = with_status(progressing(3, 0), |s| {
        s.phase = Some(CanaryPhase::Promoting)
    });
    o.primary = Some(primary("v1:a"));
    let p = decide(&o, at(20));
    // The primary does not run the new revision yet.
    only_the_wait_changed(&o, &p, "PrimaryNotUpdated");
    o.primary = Some(PrimaryObs {
        readiness: Readiness::Waiting("1 of 2".into()),
        ..primary("v1:b")
    });
    only_the_wait_changed(&o, &decide(&o, at(21)), "PrimaryNotReady");
    o.primary = Some(primary("v1:b"));
    let p = decide(&o, at(22));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Finalising));
    o.canary.status = p.status;
    let p = decide(&o, at(22));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Succeeded));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert!(events(&p).contains(&"Promotion completed! Scaling down podinfo.test".to_string()));
    assert_eq!(
        p.status.and_then(|s| s.last_promoted_spec).as_deref(),
        Some("v1:b")
    );
}

#[test]
fn a_primary_that_fails_during_promotion_keeps_traffic_on_the_canary() {
    let mut o = with_status(progressing(3, 0), |s| {
        s.phase = Some(CanaryPhase::Promoting)
    });
    o.primary = Some(PrimaryObs {
        readiness: Readiness::Failed("exceeded its progress deadline".into()),
        ..primary("v1:b")
    });
    let p = decide(&o, at(20));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(p.actions.contains(&Action::SetRoutes(Routes {
        primary: 0,
        canary: 100,
        mirrored: false
    })));
    assert_eq!(p.status.map(|s| s.canary_weight), Some(100));
}

#[test]
fn a_closed_confirm_rollout_gate_holds_the_canary_in_waiting() {
    let mut o = new_revision_behind(&["confirm-rollout"]);
    let p = decide_with(&o, confirm_rollout(false), at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Waiting));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleTarget(_)))
    );
    o.canary.status = p.status;
    let p = decide_with(&o, confirm_rollout(true), at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
}

#[test]
fn a_rollback_webhook_is_heard_while_waiting() {
    let o = new_revision_behind(&["confirm-rollout", "rollback"]);
    let o = with_status(o, |s| {
        s.phase = Some(CanaryPhase::Waiting);
        s.last_analysis_time = Some(to_time(at(0)));
    });
    let p = decide_with(
        &o,
        Checks {
            rollback: Some(true),
            confirm_rollout: Some(false),
            ..Default::default()
        },
        at(10),
    );
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert_eq!(
        p.status.and_then(|s| s.last_applied_spec).as_deref(),
        Some("v1:b")
    );
}

#[test]
fn a_closed_confirm_promotion_gate_holds_in_waiting_promotion_with_the_real_weight() {
    let o = at_max_weight_behind_confirm_promotion();
    let p = decide_with(&o, confirm_promotion(false), at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::WaitingPromotion));
    assert_eq!(p.status.map(|s| s.canary_weight), Some(50));
}

#[test]
fn bad_input_is_reported_once_and_changes_nothing() {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    o.problems = vec![Problem {
        severity: Severity::Error,
        path: "spec.analysis.stepWeight".into(),
        message: "stepWeight 60 is greater than maxWeight 50".into(),
    }];
    let p = decide(&o, at(0));
    assert_eq!(p.actions.len(), 1, "only the event: {:?}", p.actions);
    assert_eq!(
        events(&p),
        vec!["podinfo.test spec.analysis.stepWeight: stepWeight 60 is greater than maxWeight 50"]
    );
    assert_eq!(p.requeue, Requeue::AwaitChange);
    let ready = p
        .status
        .clone()
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == READY_CONDITION))
        .expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    // The next reconcile sees its own condition: no new event, no status write.
    o.canary.status = p.status;
    let p = decide(&o, at(5));
    assert_eq!(p, nothing_until_a_change());
}

#[test]
fn a_missing_target_is_reported_and_nothing_is_created() {
    let mut o = with_status(fx(), |s| *s = CanaryStatus::default());
    o.target = Err(TargetProblem::Missing(
        "Deployment podinfo.test not found".into(),
    ));
    o.primary = None;
    o.generated.primary = Some(Workload::Deployment(Default::default()));
    let p = decide(&o, at(0));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::CreatePrimary(_) | Action::Apply(_)))
    );
    let ready = p
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == READY_CONDITION))
        .expect("Ready");
    assert_eq!(ready.reason, "TargetNotFound");
}

#[test]
fn skip_analysis_promotes_as_soon_as_the_canary_is_ready() {
    let w = Workload::Deployment(Default::default());
    let mut o = progressing(0, 0);
    o.canary.spec.skip_analysis = Some(true);
    o.generated.primary = Some(w.clone());
    let p = decide(&o, at(1));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Succeeded));
    assert!(p.actions.contains(&Action::PromotePrimary(w)));
}

#[test]
fn a_suspended_canary_does_not_start_runs() {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    o.canary.spec.suspend = Some(true);
    let p = decide(&o, at(0));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleTarget(_)))
    );
    assert_ne!(phase_of(&p), Some(CanaryPhase::Progressing));
}

#[test]
fn revert_on_deletion_restores_the_target_before_letting_go() {
    let mut o = fx();
    o.canary.spec.revert_on_deletion = Some(true);
    assert!(decide(&o, at(0)).actions.contains(&Action::AddFinalizer));

    o.has_finalizer = true;
    o.canary.metadata.deletion_timestamp = Some(to_time(at(0)));
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Terminating));
    assert!(p.actions.contains(&Action::ScaleTarget(2)));
    assert!(
        !p.actions.contains(&Action::RemoveFinalizer),
        "the target is not ready yet"
    );

    o.canary.status = p.status;
    o.target = Ok(TargetObs {
        replicas: 2,
        readiness: Readiness::Waiting("1 of 2".into()),
        ..target("v1:a")
    });
    assert!(!decide(&o, at(1)).actions.contains(&Action::RemoveFinalizer));
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:a")
    });
    // The workload's status says ready, but no Pod of it is: keep waiting.
    o.target_ready_pods = Some(0);
    let p = decide(&o, at(2));
    assert!(!p.actions.contains(&Action::RestoreApexService));
    assert!(!p.actions.contains(&Action::RemoveFinalizer));
    o.target_ready_pods = Some(2);
    let p = decide(&o, at(2));
    let restore = p
        .actions
        .iter()
        .position(|a| *a == Action::RestoreApexService);
    let release = p.actions.iter().position(|a| *a == Action::RemoveFinalizer);
    assert!(restore.is_some() && restore < release, "{:?}", p.actions);
}

fn report(verdict: crate::core::verdict::Verdict) -> crate::core::verdict::AnalysisReport {
    crate::core::verdict::AnalysisReport {
        verdict,
        records: vec![],
    }
}

#[test]
fn an_inconclusive_analysis_holds_without_failing_until_the_deadline() {
    let o = progressing(1, 0);
    let hold = || Checks {
        analysis: Some(Ok(report(crate::core::verdict::Verdict::Hold(
            "no values found".into(),
        )))),
        ..Default::default()
    };
    let p = decide_with(&o, hold(), at(10));
    let s = p.status.clone().expect("status");
    assert_eq!(
        (s.failed_checks, s.iterations),
        (0, 1),
        "a hold neither fails nor advances"
    );
    assert_eq!(s.hold_start_time, Some(to_time(at(10))));
    assert_eq!(
        warnings(&p),
        vec!["Holding podinfo.test advancement: no values found"]
    );
    let mut o = o;
    o.canary.status = Some(s);
    let p = decide_with(&o, hold(), at(10 + 600));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(failure_reason(&p).is_some_and(|r| r.starts_with("analysis inconclusive")));
}

#[test]
fn routes_that_are_not_ready_pause_the_analysis_without_failed_checks() {
    let mut o = progressing(1, 0);
    o.routes = Some(Err(RouteProblem::NotReady("TrafficSplit podinfo".into())));
    let p = decide(&o, at(10));
    let s = p.status.clone().expect("the wait is written");
    assert_eq!((s.failed_checks, s.iterations), (0, 1));
    assert_eq!(waiting(&p).map(|w| w.0), Some("RoutesNotReady".into()));
    assert_eq!(p.actions.len(), 1, "only the wait's event: {:?}", p.actions);
}

fn with_affinity(mut o: Observed, primary_cookie: Option<&str>) -> Observed {
    let a = o.canary.spec.analysis.get_or_insert_with(Default::default);
    a.session_affinity = Some(crate::api::canary::SessionAffinity {
        cookie_name: "canary-c".into(),
        primary_cookie_name: primary_cookie.map(String::from),
        ..Default::default()
    });
    o.canary.metadata.uid = Some("uid-1".into());
    o
}

#[test]
fn a_run_with_session_affinity_gets_fresh_cookies_in_status() {
    let mut o = with_affinity(fx(), Some("primary-c"));
    o.target = Ok(target("v1:b"));
    let s = decide(&o, at(0)).status.expect("status");
    assert_eq!(
        s.session_affinity_cookie,
        Some(session_cookie("canary-c", "uid-1", at(0)))
    );
    assert_eq!(
        s.primary_session_affinity_cookie,
        Some(session_cookie("primary-c", "uid-1", at(0)))
    );
    let next = decide(&o, at(60)).status.expect("status");
    assert_ne!(
        next.session_affinity_cookie, s.session_affinity_cookie,
        "every run has its own cookie"
    );
}

#[test]
fn session_cookies_differ_by_name_and_run_and_look_like_flaggers() {
    let c = session_cookie("canary-c", "uid-1", at(0));
    let (name, value) = c.split_once('=').expect("name=value");
    assert_eq!(name, "canary-c");
    assert_eq!(value.len(), 10);
    assert!(value.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_ne!(c, session_cookie("canary-c", "uid-2", at(0)));
    assert_ne!(c, session_cookie("canary-c", "uid-1", at(1)));
    assert_eq!(c, session_cookie("canary-c", "uid-1", at(0)));
}

#[test]
fn a_rollback_moves_the_run_cookie_to_previous_so_routers_expire_it() {
    let o = with_status(with_affinity(progressing(1, 0), None), |s| {
        s.failed_checks = 2;
        s.session_affinity_cookie = Some("canary-c=abc".into());
    });
    let p = decide(&o, at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    let s = p.status.expect("status");
    assert_eq!(s.session_affinity_cookie, None);
    assert_eq!(
        s.previous_session_affinity_cookie.as_deref(),
        Some("canary-c=abc")
    );
}

fn failed_record(name: &str) -> crate::api::canary::CheckRecord {
    crate::api::canary::CheckRecord {
        name: name.into(),
        kind: "webhook".into(),
        query: Some("http://lt.test/gate/check".into()),
        value: Some(403.0),
        outcome: "Fail".into(),
        message: Some("POST http://lt.test/gate/check returned 403: Forbidden".into()),
        ..Default::default()
    }
}

/// The plan of a canary with nothing to do: no action, no status write, wait for a change.
fn nothing_until_a_change() -> Plan {
    Plan {
        actions: vec![],
        status: None,
        requeue: Requeue::AwaitChange,
    }
}

/// Why the plan fails the canary, if it does.
fn failure_reason(p: &Plan) -> Option<String> {
    p.status.as_ref().and_then(|s| s.failure_reason.clone())
}

fn alerts(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(_, m) => Some(m.as_str()),
            _ => None,
        })
        .collect()
}

/// The status after a tick of `o` in which the `kind` hook failed with `checks`.
fn status_after_failed_hook(mut o: Observed, kind: &str, checks: Checks) -> CanaryStatus {
    o.canary.spec.analysis.as_mut().expect("analysis").webhooks = Some(vec![hook(kind)]);
    let checks = Checks {
        hook_records: vec![failed_record(kind)],
        ..checks
    };
    decide_with(&o, checks, at(10)).status.expect("status")
}

#[test]
fn a_failed_pre_rollout_hook_is_recorded_in_the_status_checks() {
    let status = status_after_failed_hook(
        progressing(0, 0),
        "pre-rollout",
        Checks {
            pre_rollout: Some(Err("Halt podinfo.test advancement pre-rollout check pre-rollout failed POST … returned 500: boom".into())),
            ..Default::default()
        },
    );
    assert_eq!(status.failed_checks, 1);
    assert_eq!(status.checks, Some(vec![failed_record("pre-rollout")]));
}

#[test]
fn a_failed_rollout_hook_is_recorded_in_the_status_checks() {
    let status = status_after_failed_hook(
        progressing(1, 0),
        "rollout",
        Checks {
            analysis: Some(Err(
                "Halt podinfo.test advancement external check rollout failed".into(),
            )),
            ..Default::default()
        },
    );
    assert_eq!(status.failed_checks, 1);
    assert_eq!(status.checks, Some(vec![failed_record("rollout")]));
}

#[test]
fn a_closed_gate_with_mute_alert_sends_no_alert_but_records_why() {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    let muted = CanaryWebhook {
        mute_alert: Some(true),
        ..hook("confirm-rollout")
    };
    o.canary.spec.analysis.as_mut().expect("analysis").webhooks = Some(vec![muted]);
    let closed = Checks {
        confirm_rollout: Some(false),
        hook_records: vec![failed_record("confirm-rollout")],
        ..Default::default()
    };
    let p = decide_with(&o, closed.clone(), at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Waiting));
    assert!(alerts(&p).is_empty(), "{:?}", alerts(&p));
    assert_eq!(
        p.status.and_then(|s| s.checks),
        Some(vec![failed_record("confirm-rollout")])
    );

    o.canary.spec.analysis.as_mut().expect("analysis").webhooks =
        Some(vec![hook("confirm-rollout")]);
    let p = decide_with(&o, closed, at(0));
    assert_eq!(alerts(&p), vec!["Canary is waiting for approval."]);
}

// ---- Knative Service targets ----------------------------------------------------------------

fn revision(n: u32) -> String {
    format!("podinfo-{n:05}")
}

fn knative_primary(n: u32) -> PrimaryObs {
    PrimaryObs {
        fingerprint: crate::core::fingerprint::revision_fingerprint(&revision(n)),
        readiness: Readiness::Ready,
        replicas: 1,
    }
}

/// A knative canary (stepWeight 20, maxWeight 60) whose latest created revision is `latest`
/// and whose primary is revision `primary`, initialised on the primary.
fn knative(latest: u32, primary: Option<u32>) -> Observed {
    let fp = |n: u32| crate::core::fingerprint::revision_fingerprint(&revision(n));
    let mut o = fx();
    o.provider = Some(Provider::Knative);
    let spec = &mut o.canary.spec;
    crate::api::testing::knative(spec);
    if let Some(a) = spec.analysis.as_mut() {
        a.iterations = None;
        a.step_weight = Some(20);
        a.max_weight = Some(60);
    }
    o.target = Ok(TargetObs {
        kind: TargetKind::KnativeService,
        name: "podinfo".into(),
        selector: (String::new(), String::new()),
        fingerprint: fp(latest),
        tracked_configs: Default::default(),
        replicas: 1,
        scale_up_replicas: 1,
        readiness: Readiness::Ready,
        pods: None,
    });
    o.primary = primary.map(knative_primary);
    o.generated = Generated {
        primary_revision: Some(revision(latest)),
        ..Default::default()
    };
    let promoted = fp(primary.unwrap_or(latest));
    with_status(o, |s| {
        s.last_applied_spec = Some(promoted.clone());
        s.last_promoted_spec = Some(promoted);
    })
}

/// `knative(2, Some(1))` in a run at `weight`, last tick at t=0.
fn knative_progressing(weight: i32) -> Observed {
    with_status(knative(2, Some(1)), |s| {
        s.phase = Some(CanaryPhase::Progressing);
        s.last_applied_spec = Some(crate::core::fingerprint::revision_fingerprint(&revision(2)));
        s.canary_weight = weight;
        s.last_analysis_time = Some(to_time(at(0)));
        s.run_start_time = Some(to_time(at(0)));
    })
}

fn scales(p: &Plan) -> bool {
    p.actions
        .iter()
        .any(|a| matches!(a, Action::ScaleTarget(_) | Action::RestoreApexService))
}

fn split(primary: i32, canary: i32) -> Action {
    Action::SetRoutes(Routes {
        primary,
        canary,
        mirrored: false,
    })
}

#[test]
fn knative_initialization_names_the_latest_revision_primary_then_reconciles_the_traffic() {
    let mut o = with_status(knative(1, None), |s| *s = CanaryStatus::default());
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initializing));
    assert_eq!(
        p.actions,
        vec![Action::SetPrimaryRevision(revision(1))],
        "no primary workload, no scaling"
    );

    o.canary.status = p.status;
    o.primary = Some(knative_primary(1));
    let p = decide(&o, at(1));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initialized));
    assert!(p.actions.contains(&Action::ReconcileRouter));
    assert!(!scales(&p), "{:?}", p.actions);
}

#[test]
fn knative_initialization_waits_until_the_primary_revision_serves() {
    let mut o = with_status(knative(1, Some(1)), |s| {
        s.phase = Some(CanaryPhase::Initializing)
    });
    o.primary = Some(PrimaryObs {
        readiness: Readiness::Waiting("Knative Revision podinfo-00001 is not serving".into()),
        ..knative_primary(1)
    });
    let p = decide(&o, at(0));
    only_the_wait_changed(&o, &p, "PrimaryNotReady");
    assert!(!p.actions.contains(&Action::ReconcileRouter));
}

#[test]
fn a_new_knative_revision_starts_a_run_without_scaling_anything() {
    let o = with_status(knative(2, Some(1)), |s| {
        s.phase = Some(CanaryPhase::Succeeded)
    });
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert!(!scales(&p), "{:?}", p.actions);
    assert_eq!(
        p.status.and_then(|s| s.last_applied_spec).as_deref(),
        Some("v1:revision:podinfo-00002")
    );
    // The same revision as the primary is no run.
    let idle = with_status(knative(1, Some(1)), |s| {
        s.phase = Some(CanaryPhase::Succeeded)
    });
    assert_eq!(decide(&idle, at(0)).actions, vec![]);
}

#[test]
fn knative_weights_step_up_then_promotion_names_the_new_revision_primary() {
    let p = decide(&knative_progressing(20), at(10));
    assert_eq!(
        p.actions
            .iter()
            .filter(|a| matches!(a, Action::SetRoutes(_)))
            .collect::<Vec<_>>(),
        vec![&split(60, 40)]
    );

    let p = decide(&knative_progressing(60), at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Promoting));
    assert!(p.actions.contains(&Action::SetPrimaryRevision(revision(2))));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::PromotePrimary(_) | Action::SetRoutes(_)))
    );
}

#[test]
fn knative_promotion_waits_for_the_annotation_then_routes_everything_to_the_new_primary() {
    let promoting = |primary: u32| {
        let mut o = with_status(knative_progressing(60), |s| {
            s.phase = Some(CanaryPhase::Promoting)
        });
        o.primary = Some(knative_primary(primary));
        o
    };
    // The annotation has not landed yet: name the revision again, route nothing.
    let p = decide(&promoting(1), at(10));
    assert_eq!(
        without_events(&p),
        vec![Action::SetPrimaryRevision(revision(2))]
    );
    only_the_wait_changed(&promoting(1), &p, "PrimaryNotUpdated");

    let p = decide(&promoting(2), at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Finalising));
    assert!(p.actions.contains(&split(100, 0)));

    let finalising = with_status(promoting(2), |s| s.phase = Some(CanaryPhase::Finalising));
    let p = decide(&finalising, at(11));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Succeeded));
    assert!(!scales(&p), "{:?}", p.actions);
}

#[test]
fn knative_rollback_puts_all_traffic_back_on_the_primary_revision() {
    let o = with_status(knative_progressing(40), |s| s.failed_checks = 2);
    let p = decide(&o, at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(p.actions.contains(&split(100, 0)));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetPrimaryRevision(_)))
    );
    assert!(!scales(&p), "{:?}", p.actions);
}

#[test]
fn an_unready_knative_revision_rolls_back_at_the_progress_deadline() {
    let mut o = knative_progressing(0);
    if let Ok(t) = o.target.as_mut() {
        t.readiness = Readiness::Waiting("Knative Revision podinfo-00002 is not ready".into());
    }
    only_the_wait_changed(&o, &decide(&o, at(30)), "CanaryRevisionNotReady");
    let p = decide(&o, at(601));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(p.actions.contains(&split(100, 0)));
}

#[test]
fn deleting_a_knative_canary_releases_the_service_at_once() {
    let mut o = knative_progressing(40);
    o.canary.spec.revert_on_deletion = Some(true);
    o.canary.metadata.deletion_timestamp = Some(to_time(at(0)));
    o.has_finalizer = true;
    if let Ok(t) = o.target.as_mut() {
        t.readiness = Readiness::Waiting("not ready".into());
    }
    let p = decide(&o, at(5));
    assert_eq!(
        without_events(&p),
        vec![Action::FinalizeRouter, Action::RemoveFinalizer]
    );
}

// ---- Kubernetes Service targets (Service-to-Service canary) ----------------------------------

fn service_copy(name: &str, selector: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "test"},
        "spec": {"selector": {"app": selector}, "ports": [{"port": 9898}]}
    })
}

/// A kubernetes-provider canary targeting Service `podinfo` whose spec fingerprints as `target`,
/// with `podinfo-primary` at `primary` (absent when `None`); the canary copy is in sync.
fn service_target(target: &str, primary: Option<&str>) -> Observed {
    let mut o = fx();
    o.canary.spec.target_ref = Some(TargetRef {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: "podinfo".into(),
    });
    o.target = Ok(TargetObs {
        kind: TargetKind::Service,
        name: "podinfo".into(),
        selector: (String::new(), String::new()),
        fingerprint: target.into(),
        tracked_configs: Default::default(),
        replicas: 1,
        scale_up_replicas: 1,
        readiness: Readiness::Ready,
        pods: None,
    });
    o.primary = primary.map(|fp| PrimaryObs {
        fingerprint: fp.into(),
        readiness: Readiness::Ready,
        replicas: 1,
    });
    o.generated = Generated {
        primary_service: Some(service_copy("podinfo-primary", "podinfo-green")),
        ..Default::default()
    };
    o
}

fn applies(p: &Plan, name: &str) -> bool {
    p.actions.iter().any(|a| {
        matches!(a, Action::Apply(v) if v.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name))
    })
}

#[test]
fn a_service_target_initializes_by_copying_the_service_without_scaling() {
    let mut o = with_status(service_target("v1:a", None), |s| {
        *s = CanaryStatus::default()
    });
    o.generated
        .services_to_apply
        .push(service_copy("podinfo-canary", "podinfo-green"));
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initializing));
    assert_eq!(
        p.actions,
        vec![
            Action::Apply(service_copy("podinfo-canary", "podinfo-green")),
            Action::Apply(service_copy("podinfo-primary", "podinfo-green")),
        ]
    );

    o.canary.status = p.status;
    o.generated.services_to_apply.clear();
    o.primary = Some(primary("v1:a"));
    let p = decide(&o, at(1));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initialized));
    assert!(p.actions.contains(&Action::ReconcileRouter));
    assert!(!scales(&p), "{:?}", p.actions);
    assert!(
        !applies(&p, "podinfo-primary"),
        "the primary is created once"
    );
}

#[test]
fn a_changed_service_spec_starts_a_run_and_an_unchanged_one_does_not() {
    let idle = with_status(service_target("v1:a", Some("v1:a")), |s| {
        s.phase = Some(CanaryPhase::Succeeded)
    });
    assert_eq!(decide(&idle, at(0)).actions, vec![]);

    let changed = with_status(service_target("v1:b", Some("v1:a")), |s| {
        s.phase = Some(CanaryPhase::Succeeded)
    });
    let p = decide(&changed, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert!(!scales(&p), "{:?}", p.actions);
    assert!(!applies(&p, "podinfo-primary"), "the primary keeps serving");
    assert_eq!(
        p.status.and_then(|s| s.last_applied_spec).as_deref(),
        Some("v1:b")
    );
}

#[test]
fn the_canary_copy_is_repaired_in_every_phase() {
    for phase in [
        CanaryPhase::Initialized,
        CanaryPhase::Progressing,
        CanaryPhase::Failed,
    ] {
        let mut o = with_status(service_target("v1:a", Some("v1:a")), |s| {
            s.phase = Some(phase)
        });
        o.generated
            .services_to_apply
            .push(service_copy("podinfo-canary", "podinfo-blue"));
        let p = decide(&o, at(0));
        assert!(applies(&p, "podinfo-canary"), "{phase:?}: {:?}", p.actions);
    }
}

/// A Service-target run in progress on spec b (the primary copy on a), last tick at 0; `f`
/// adjusts the status.
fn service_progressing(f: impl FnOnce(&mut CanaryStatus)) -> Observed {
    with_status(service_target("v1:b", Some("v1:a")), |s| {
        s.phase = Some(CanaryPhase::Progressing);
        s.last_applied_spec = Some("v1:b".into());
        s.last_analysis_time = Some(to_time(at(0)));
        s.run_start_time = Some(to_time(at(0)));
        f(s);
    })
}

#[test]
fn promoting_a_service_target_copies_its_spec_into_the_primary() {
    let o = service_progressing(|s| s.iterations = 3);
    let p = decide(&o, at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Promoting));
    assert!(applies(&p, "podinfo-primary"), "{:?}", p.actions);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::PromotePrimary(_) | Action::CreatePrimary(_)))
    );

    let finalising = with_status(service_target("v1:b", Some("v1:b")), |s| {
        s.phase = Some(CanaryPhase::Finalising);
        s.last_applied_spec = Some("v1:b".into());
    });
    let p = decide(&finalising, at(11));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Succeeded));
    assert!(!scales(&p), "{:?}", p.actions);
    assert_eq!(
        p.status.and_then(|s| s.last_promoted_spec).as_deref(),
        Some("v1:b")
    );
}

#[test]
fn a_failed_service_canary_leaves_the_primary_copy_alone() {
    let o = service_progressing(|s| s.failed_checks = 2);
    let p = decide(&o, at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(!applies(&p, "podinfo-primary"), "{:?}", p.actions);
    assert!(!scales(&p), "{:?}", p.actions);
}

#[test]
fn deleting_a_service_canary_releases_it_at_once() {
    let mut o = with_status(service_target("v1:b", Some("v1:a")), |s| {
        s.phase = Some(CanaryPhase::Progressing)
    });
    o.canary.spec.revert_on_deletion = Some(true);
    o.canary.metadata.deletion_timestamp = Some(to_time(at(0)));
    o.has_finalizer = true;
    let p = decide(&o, at(5));
    assert_eq!(
        without_events(&p),
        vec![Action::FinalizeRouter, Action::RemoveFinalizer]
    );
}

/// A merge patch of the fixture's spec that breaks the CEL rule with this message
/// (`tests/fixtures/cel-violations.yaml`, shared with `serin validate`'s test).
fn violation_of(message: &str) -> Option<serde_json::Value> {
    let all: serde_json::Value =
        serde_yaml_ng::from_str(include_str!("../../../tests/fixtures/cel-violations.yaml"))
            .expect("cel-violations.yaml parses");
    all.get(message).cloned()
}

#[test]
fn every_cel_rule_of_the_crd_is_also_enforced_by_the_controller() {
    let rules = crate::api::crd::cel_rules(&crate::api::crd::canary());
    assert!(rules.len() >= 5, "{rules:?}");
    let ctx = crate::api::validation::ValidationContext::default();
    for (message, rule) in rules {
        let patch = violation_of(&message)
            .unwrap_or_else(|| panic!("no violating example for the CEL rule {rule:?}"));
        let mut o = fx();
        o.target = Ok(target("v1:b"));
        let mut spec = serde_json::to_value(&o.canary.spec).expect("spec json");
        json_patch::merge(&mut spec, &patch);
        o.canary.spec = serde_json::from_value(spec).expect("spec");

        // The same validation as `serin validate`, then Ready=False and a Warning Event.
        o.problems = crate::api::validation::validate_canary(&o.canary.spec, &ctx);
        let p = decide(&o, at(0));
        let ready = p
            .status
            .clone()
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == READY_CONDITION))
            .unwrap_or_else(|| panic!("{message}: no Ready condition"));
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec"),
            "{message}"
        );
        assert!(
            p.actions
                .iter()
                .any(|a| matches!(a, Action::Event(EventType::Warning, _))),
            "{message}: no Warning event in {:?}",
            p.actions
        );
    }
}

// ---- status.waitingFor: one typed reason per early return of a phase handler ----

/// `(reason, message, since)` of the plan's `status.waitingFor`.
fn waiting(p: &Plan) -> Option<(String, String, Option<Time>)> {
    let w = p.status.as_ref()?.waiting_for.clone()?;
    Some((w.reason, w.message, w.since))
}

/// Asserts that the plan waits for `reason`, explained by `message`.
#[track_caller]
fn assert_waits(p: &Plan, reason: &str, message: &str) {
    assert_eq!(
        waiting(p).map(|w| (w.0, w.1)),
        Some((reason.into(), message.into())),
        "{reason}"
    );
}

/// Feeds a plan's status back as the Canary's current status.
fn after(mut o: Observed, p: &Plan) -> Observed {
    if let Some(s) = &p.status {
        o.canary.status = Some(s.clone());
    }
    o
}

fn pods_not_ready(o: &mut Observed, ready: i32, desired: i32) {
    if let Ok(t) = o.target.as_mut() {
        t.readiness = Readiness::Waiting(format!(
            "waiting for rollout to finish: {ready} of {desired} (readyThreshold 100%) updated replicas are available"
        ));
        t.pods = Some(crate::core::workload::PodCounts { ready, desired });
    }
}

fn record(name: &str, outcome: &str, value: Option<f64>) -> crate::api::canary::CheckRecord {
    crate::api::canary::CheckRecord {
        name: name.into(),
        kind: "metric".into(),
        value,
        outcome: outcome.into(),
        ..Default::default()
    }
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[test]
fn canary_pods_not_ready_wait_with_counts_and_one_event_per_cause() {
    let mut o = progressing(1, 0);
    pods_not_ready(&mut o, 1, 3);
    let p = decide(&o, at(10));
    let (reason, message, since) = waiting(&p).expect("waitingFor");
    assert_eq!(reason, "CanaryPodsNotReady");
    assert!(
        message.starts_with("canary Pods not ready: 1/3 ready"),
        "{message}"
    );
    assert_eq!(since, Some(to_time(at(10))));
    assert_eq!(
        normal_events(&p),
        vec![format!(
            "Waiting for podinfo.test (CanaryPodsNotReady): {message}"
        )]
    );

    // Same cause, new counts: the message follows, `since` stays, no second event.
    let mut o = after(o, &p);
    pods_not_ready(&mut o, 2, 3);
    let p = decide(&o, at(15));
    let (reason, message, since) = waiting(&p).expect("waitingFor");
    assert_eq!(reason, "CanaryPodsNotReady");
    assert!(
        message.starts_with("canary Pods not ready: 2/3 ready"),
        "{message}"
    );
    assert_eq!(since, Some(to_time(at(10))));
    assert!(normal_events(&p).is_empty(), "{:?}", p.actions);

    // Ready again: the tick runs and the wait is cleared.
    let mut o = after(o, &p);
    if let Ok(t) = o.target.as_mut() {
        t.readiness = Readiness::Ready;
    }
    let p = decide(&o, at(20));
    assert_eq!(waiting(&p), None);
    assert_eq!(p.status.map(|s| s.iterations), Some(2));
}

#[test]
fn a_knative_revision_that_is_not_ready_is_named_as_such() {
    let mut o = progressing(1, 0);
    if let Ok(t) = o.target.as_mut() {
        t.kind = TargetKind::KnativeService;
        t.readiness = Readiness::Waiting("Knative Revision podinfo-00002 is not ready".into());
    }
    let p = decide(&o, at(10));
    assert_waits(
        &p,
        "CanaryRevisionNotReady",
        "canary revision not ready: Knative Revision podinfo-00002 is not ready",
    );
}

#[test]
fn a_route_not_accepted_by_its_gateway_is_explained() {
    let mut o = progressing(1, 0);
    o.routes = Some(Err(RouteProblem::NotAccepted(
        "HTTPRoute podinfo.test parent gw is not ready (status: False)".into(),
    )));
    let p = decide(&o, at(10));
    let (reason, message, _) = waiting(&p).expect("waitingFor");
    assert_eq!(reason, "RouteNotAccepted");
    assert_eq!(
        message,
        "route not accepted: HTTPRoute podinfo.test parent gw is not ready (status: False)"
    );
    assert_eq!(p.status.as_ref().map(|s| s.failed_checks), Some(0));
    assert_eq!(normal_events(&p).len(), 1);
}

#[test]
fn a_tick_that_is_not_due_keeps_the_wait_as_it_is() {
    let mut o = progressing(1, 0);
    o.routes = Some(Err(RouteProblem::NotAccepted("not accepted".into())));
    let p = decide(&o, at(10));
    let o = after(o, &p);
    let first = waiting(&p);
    // The wait's own requeue comes back before the next tick is due.
    let o = with_status(o, |s| s.last_analysis_time = Some(to_time(at(10))));
    let p = decide(&o, at(12));
    assert_eq!(p.status, None, "nothing changes between ticks");
    assert!(p.actions.is_empty());
    assert!(first.is_some());
}

#[test]
fn a_closed_gate_is_announced_once_by_the_gate_itself() {
    let o = at_max_weight_behind_confirm_promotion();
    let p = decide_with(&o, confirm_promotion(false), at(10));
    let (reason, message, _) = waiting(&p).expect("waitingFor");
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("GateClosed", "confirm-promotion gate is closed")
    );
    assert_eq!(
        normal_events(&p),
        vec!["Waiting for approval: confirm-promotion gate is closed for podinfo.test"]
    );
    let o = after(o, &p);
    let p = decide_with(&o, confirm_promotion(false), at(20));
    assert_eq!(waiting(&p).map(|w| w.0), Some("GateClosed".into()));
    assert!(normal_events(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn a_closed_confirm_rollout_gate_waits_with_gate_closed() {
    let o = new_revision_behind(&["confirm-rollout"]);
    let p = decide_with(&o, confirm_rollout(false), at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Waiting));
    assert_waits(&p, "GateClosed", "confirm-rollout gate is closed");
}

/// (what the analysis tick returned, the wait reason, its message, failed checks afterwards).
type AnalysisWaitCase = (
    Result<crate::core::verdict::AnalysisReport, String>,
    &'static str,
    &'static str,
    Option<i32>,
);

#[test]
fn analysis_outcomes_wait_with_their_reason() {
    use crate::core::verdict::{AnalysisReport, Verdict};
    let table: [AnalysisWaitCase; 3] = [
        // Held without data: waits, and counts no failed check.
        (
            Ok(AnalysisReport {
                verdict: Verdict::Hold("no values found".into()),
                records: vec![
                    record("request-success-rate", "Pass", Some(99.0)),
                    record("request-duration", "NoData", None),
                ],
            }),
            "MetricNoData",
            "metric returned no data: request-duration",
            Some(0),
        ),
        // A failing metric waits and counts a failed check.
        (
            Ok(AnalysisReport {
                verdict: Verdict::Fail("request-success-rate 80 < 99".into()),
                records: vec![record("request-success-rate", "Fail", Some(80.0))],
            }),
            "MetricFailed",
            "metric check failed: request-success-rate (Fail, value 80)",
            Some(1),
        ),
        // A failing rollout webhook.
        (
            Err("rollout hook load-test returned 500".into()),
            "WebhookFailed",
            "webhook failed: rollout hook load-test returned 500",
            None,
        ),
    ];
    for (analysis, reason, message, failed) in table {
        let checks = Checks {
            analysis: Some(analysis),
            ..Default::default()
        };
        let p = decide_with(&progressing(1, 0), checks, at(10));
        assert_waits(&p, reason, message);
        if let Some(n) = failed {
            assert_eq!(p.status.map(|s| s.failed_checks), Some(n), "{reason}");
        }
    }
}

#[test]
fn a_primary_that_is_not_ready_is_explained_during_initialization_and_promotion() {
    let mut o = with_status(fx(), |s| s.phase = Some(CanaryPhase::Initializing));
    o.primary = Some(PrimaryObs {
        readiness: Readiness::Waiting("0 of 2 ready".into()),
        ..primary("v1:a")
    });
    let p = decide(&o, at(0));
    assert_waits(&p, "PrimaryNotReady", "primary not ready: 0 of 2 ready");

    let mut o = with_status(progressing(3, 0), |s| {
        s.phase = Some(CanaryPhase::Promoting)
    });
    o.primary = Some(primary("v1:a"));
    let p = decide(&o, at(10));
    assert_eq!(waiting(&p).map(|w| w.0), Some("PrimaryNotUpdated".into()));
    o.primary = Some(PrimaryObs {
        readiness: Readiness::Waiting("1 of 2 ready".into()),
        ..primary("v1:b")
    });
    let p = decide(&o, at(10));
    assert_eq!(waiting(&p).map(|w| w.0), Some("PrimaryNotReady".into()));
}

#[test]
fn invalid_and_suspended_canaries_say_why_they_wait() {
    let mut o = fx();
    o.target = Err(TargetProblem::Missing(
        "Deployment podinfo.test not found".into(),
    ));
    let p = decide(&o, at(0));
    assert_waits(
        &p,
        "TargetNotFound",
        "target not found: Deployment podinfo.test not found",
    );
    assert!(
        normal_events(&p).is_empty(),
        "the Warning event announces it"
    );

    let mut o = fx();
    o.canary.spec.suspend = Some(true);
    let p = decide(&o, at(0));
    assert_eq!(waiting(&p).map(|w| w.0), Some("Suspended".into()));
}

#[test]
fn a_rollback_clears_the_wait_and_never_repeats_the_deadline_phrase() {
    let mut o = progressing(1, 0);
    pods_not_ready(&mut o, 0, 2);
    let o = with_status(o, |s| {
        s.waiting_for = Some(crate::api::canary::WaitingFor {
            reason: "CanaryPodsNotReady".into(),
            message: "canary Pods not ready: 0/2 ready".into(),
            since: Some(to_time(at(0))),
        })
    });
    let p = decide(&o, at(601));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert_eq!(waiting(&p), None);
    let texts: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(_, m) | Action::Alert(_, m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    for t in &texts {
        assert!(
            t.to_lowercase().matches("deadline exceeded").count() <= 1,
            "{t}"
        );
    }
    let mut o = progressing(1, 0);
    if let Ok(t) = o.target.as_mut() {
        t.readiness =
            Readiness::Failed("deployment \"podinfo\" exceeded its progress deadline".into());
    }
    let p = decide(&o, at(10));
    assert!(
        events(&p).contains(
            &"Progress deadline exceeded: deployment \"podinfo\" exceeded its progress deadline"
                .to_string()
        ),
        "{:?}",
        events(&p)
    );
    for a in &p.actions {
        if let Action::Event(_, m) | Action::Alert(_, m) = a {
            assert!(
                !m.to_lowercase()
                    .contains("progress deadline exceeded progress deadline exceeded"),
                "{m}"
            );
            assert!(
                !m.to_lowercase()
                    .contains("exceeded: progress deadline exceeded"),
                "{m}"
            );
        }
    }
}

#[test]
fn the_ready_condition_is_kept_first_for_the_status_column() {
    // A status Flagger wrote has only `Promoted`; Serin's `Ready` goes in front of it.
    let mut o = with_status(progressing(1, 0), |s| {
        s.conditions = Some(vec![CanaryCondition {
            type_: PROMOTED_CONDITION.into(),
            status: "Unknown".into(),
            reason: "Progressing".into(),
            ..Default::default()
        }])
    });
    o.problems = vec![Problem {
        severity: Severity::Error,
        path: "spec.analysis.stepWeight".into(),
        message: "stepWeight 60 is greater than maxWeight 50".into(),
    }];
    let p = decide(&o, at(10));
    let conditions = p.status.and_then(|s| s.conditions).unwrap_or_default();
    let first: Vec<(&str, &str)> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        first,
        vec![("Ready", "InvalidSpec"), ("Promoted", "Progressing")]
    );
}

mod requests;

/// A StatefulSet canary: the fixture with a StatefulSet target, its primary generated from it.
fn sts_fx() -> Observed {
    let mut o = fx();
    if let Some(t) = o.canary.spec.target_ref.as_mut() {
        t.kind = "StatefulSet".into();
    }
    o.target = Ok(TargetObs {
        kind: TargetKind::StatefulSet,
        ..target("v1:a")
    });
    o.generated.primary = Some(Workload::StatefulSet(Default::default()));
    o
}

/// A StatefulSet whose controller reports `updated`/`ready` of 2 Pods and whether the update
/// revision became current, at the observed generation.
fn sts_status(updated: i32, ready: i32, current: bool) -> k8s_openapi::api::apps::v1::StatefulSet {
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
    StatefulSet {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generation: Some(2),
            ..Default::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(2),
            ..Default::default()
        },
        status: Some(StatefulSetStatus {
            observed_generation: Some(2),
            replicas: 2,
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            current_revision: Some(if current { "db-b" } else { "db-a" }.into()),
            update_revision: Some("db-b".into()),
            ..Default::default()
        }),
    }
}

#[test]
fn statefulset_canaries_go_through_every_transition_like_deployments() {
    use crate::core::readiness::statefulset_readiness;
    let deadline = Duration::from_secs(60);
    let readiness = |s, since: i64, now: i64| {
        statefulset_readiness(&s, 100, deadline, Some(at(since)), at(now))
    };

    // Initialisation creates the StatefulSet primary; a ready primary scales the target down.
    let mut o = with_status(sts_fx(), |s| *s = CanaryStatus::default());
    o.primary = None;
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initializing));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::CreatePrimary(Workload::StatefulSet(_))))
    );
    let mut o = with_status(sts_fx(), |s| s.phase = Some(CanaryPhase::Initializing));
    o.target = Ok(TargetObs {
        kind: TargetKind::StatefulSet,
        replicas: 2,
        ..target("v1:a")
    });
    o.primary = Some(PrimaryObs {
        // The primary's ordered rollout is still on its first Pod.
        readiness: readiness(sts_status(1, 1, false), 0, 5),
        ..primary("v1:a")
    });
    assert!(!decide(&o, at(5)).actions.contains(&Action::ScaleTarget(0)));
    o.primary = Some(PrimaryObs {
        readiness: readiness(sts_status(2, 2, true), 0, 6),
        ..primary("v1:a")
    });
    let p = decide(&o, at(6));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Initialized));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));

    // A new revision scales the StatefulSet canary up from zero.
    let mut o = sts_fx();
    o.target = Ok(TargetObs {
        kind: TargetKind::StatefulSet,
        ..target("v1:b")
    });
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert!(p.actions.contains(&Action::ScaleTarget(2)));

    // While the canary's ordered update is under way the analysis waits without failed checks.
    let mut o = progressing(1, 0);
    o.canary.spec.target_ref = sts_fx().canary.spec.target_ref;
    o.target = Ok(TargetObs {
        kind: TargetKind::StatefulSet,
        replicas: 2,
        readiness: readiness(sts_status(1, 1, false), 0, 10),
        ..target("v1:b")
    });
    let p = decide(&o, at(10));
    assert_eq!(p.status.as_ref().map(|s| s.failed_checks).unwrap_or(0), 0);
    assert_ne!(phase_of(&p), Some(CanaryPhase::Failed));

    // A faulty revision stuck past the deadline rolls back: traffic to the primary, canary to
    // zero, and the condition names the kind.
    o.target = Ok(TargetObs {
        kind: TargetKind::StatefulSet,
        replicas: 2,
        readiness: readiness(sts_status(1, 1, false), 0, 61),
        ..target("v1:b")
    });
    let p = decide(&o, at(61));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert!(p.actions.contains(&Action::SetRoutes(Routes {
        primary: 100,
        canary: 0,
        mirrored: false
    })));
    let msg = p
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Promoted"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(msg.contains("StatefulSet scaled to zero"), "{msg}");

    // Promotion copies the target into the StatefulSet primary and waits for its ordered update.
    let mut o = with_status(progressing(3, 0), |s| {
        s.phase = Some(CanaryPhase::Promoting)
    });
    o.canary.spec.target_ref = sts_fx().canary.spec.target_ref;
    o.generated.primary = Some(Workload::StatefulSet(Default::default()));
    o.primary = Some(primary("v1:a"));
    let p = decide(&o, at(20));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::PromotePrimary(Workload::StatefulSet(_)))),
        "{:?}",
        p.actions
    );
    o.primary = Some(PrimaryObs {
        readiness: readiness(sts_status(2, 2, false), 0, 21),
        ..primary("v1:b")
    });
    // The revision is not current yet.
    only_the_wait_changed(&o, &decide(&o, at(21)), "PrimaryNotReady");
    o.primary = Some(PrimaryObs {
        readiness: readiness(sts_status(2, 2, true), 0, 22),
        ..primary("v1:b")
    });
    assert_eq!(phase_of(&decide(&o, at(22))), Some(CanaryPhase::Finalising));
}

#[test]
fn a_keda_scaled_object_is_paused_while_the_canary_is_at_zero_and_resumed_for_a_run() {
    let keda = |mut o: Observed| {
        o.canary.spec.autoscaler_ref = Some(crate::api::canary::AutoscalerRef {
            api_version: "keda.sh/v1alpha1".into(),
            kind: "ScaledObject".into(),
            name: "podinfo-so".into(),
            ..Default::default()
        });
        o
    };
    // Initialisation scales the canary to zero and pauses its ScaledObject.
    let mut o = keda(with_status(fx(), |s| {
        s.phase = Some(CanaryPhase::Initializing)
    }));
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:a")
    });
    let p = decide(&o, at(0));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert!(p.actions.contains(&Action::PauseTargetScaler));
    assert!(!p.actions.contains(&Action::ResumeTargetScaler));

    // A run resumes it, even when the canary was scaled up by someone else already.
    let mut o = keda(fx());
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:b")
    });
    let p = decide(&o, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleTarget(_)))
    );
    assert_eq!(
        p.actions
            .iter()
            .filter(|a| **a == Action::ResumeTargetScaler)
            .count(),
        1
    );

    // A rollback pauses it again; without a ScaledObject nothing is paused.
    let o = keda(with_status(progressing(1, 0), |s| s.failed_checks = 2));
    let p = decide(&o, at(10));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    assert!(p.actions.contains(&Action::PauseTargetScaler));
    let p = decide(
        &with_status(progressing(1, 0), |s| s.failed_checks = 2),
        at(10),
    );
    assert!(!p.actions.contains(&Action::PauseTargetScaler));
}
