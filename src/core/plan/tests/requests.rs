//! Table-style tests of manual requests (`serin.dev/request`): each verb, stale, malformed and
//! already-acknowledged requests.
use super::*;
use crate::api::canary::RequestStatus;
use crate::core::plan::requests::REQUEST_ANNOTATION;

fn with_request(mut o: Observed, value: &str) -> Observed {
    o.canary
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(REQUEST_ANNOTATION.into(), value.into());
    o
}

fn last_request(p: &Plan) -> Option<RequestStatus> {
    p.status.as_ref().and_then(|s| s.last_request.clone())
}

fn outcome(p: &Plan) -> Option<String> {
    last_request(p).map(|r| r.outcome)
}

#[test]
fn promote_skips_the_rest_of_the_analysis_and_promotes_the_current_revision() {
    // Mid-run, the next tick not due yet: the request does not wait for it.
    let o = with_request(progressing(1, 0), "promote@v1:b");
    let p = decide(&o, at(3));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Promoting));
    assert_eq!(outcome(&p).as_deref(), Some("Applied"));
    assert!(
        events(&p)
            .iter()
            .any(|e| e.contains("Promotion of podinfo.test requested")),
        "{:?}",
        events(&p)
    );
}

#[test]
fn promote_passes_a_closed_confirm_promotion_gate() {
    let mut o = with_request(progressing(3, 0), "promote@v1:b");
    o.canary
        .spec
        .analysis
        .get_or_insert_with(Default::default)
        .webhooks = Some(vec![hook("confirm-promotion")]);
    let o = with_status(o, |s| s.phase = Some(CanaryPhase::WaitingPromotion));
    let checks = Checks {
        confirm_promotion: Some(false),
        ..Default::default()
    };
    let p = decide_with(&o, checks, at(3));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Promoting));
}

#[test]
fn promote_waits_for_an_unready_canary_as_pending_then_applies() {
    let mut o = with_request(progressing(0, 0), "promote@v1:b");
    o.target = Ok(TargetObs {
        replicas: 2,
        readiness: Readiness::Waiting("1 of 2 ready".into()),
        ..target("v1:b")
    });
    let p = decide(&o, at(1));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    let pending = last_request(&p).expect("acknowledged");
    assert_eq!(pending.outcome, "Pending");
    assert!(
        pending
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("1 of 2 ready")
    );
    // The request's event, and the wait's own (status.waitingFor names the unready canary).
    assert_eq!(events(&p).len(), 2, "{:?}", events(&p));
    assert!(events(&p)[1].starts_with("Waiting for podinfo.test (CanaryPodsNotReady)"));

    // Still not ready on the next reconcile: no new event, no status write.
    let o = after(o, &p);
    let again = decide(&o, at(2));
    assert!(events(&again).is_empty(), "{:?}", events(&again));
    assert_eq!(again.status, None);

    let mut o = o;
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:b")
    });
    let ready = decide(&o, at(3));
    assert_eq!(phase_of(&ready), Some(CanaryPhase::Promoting));
    assert_eq!(outcome(&ready).as_deref(), Some("Applied"));
}

#[test]
fn abort_rolls_back_now_with_a_typed_reason_and_a_rollback_alert() {
    let o = with_status(with_request(progressing(0, 0), "abort@v1:b"), |s| {
        s.canary_weight = 30;
    });
    let p = decide(&o, at(3));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Failed));
    let status = p.status.clone().expect("status");
    assert_eq!(status.canary_weight, 0);
    assert_eq!(
        status.failure_reason.as_deref(),
        Some("abort requested (serin.dev/request)")
    );
    assert_eq!(outcome(&p).as_deref(), Some("Applied"));
    assert!(p.actions.contains(&split(100, 0)));
    assert!(p.actions.contains(&Action::ScaleTarget(0)));
    assert!(p.actions.contains(&Action::Alert(
        AlertSeverity::Warn,
        "Rolling back, abort requested".into()
    )));
    assert!(
        warnings(&p)
            .iter()
            .any(|w| w == "Rolling back podinfo.test abort requested (serin.dev/request)"),
        "{:?}",
        warnings(&p)
    );
}

/// Revision b failed; the target still runs it.
fn failed() -> Observed {
    let mut o = fx();
    o.target = Ok(target("v1:b"));
    with_status(o, |s| {
        s.phase = Some(CanaryPhase::Failed);
        s.last_applied_spec = Some("v1:b".into());
        s.failure_reason = Some("failed checks threshold reached 2".into());
    })
}

#[test]
fn retry_runs_a_failed_revision_again() {
    let idle = decide(&failed(), at(0));
    assert!(
        idle.actions.is_empty(),
        "a failed revision is not retried by itself"
    );
    let p = decide(&with_request(failed(), "retry@v1:b"), at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert!(p.actions.contains(&Action::ScaleTarget(2)));
    let status = p.status.clone().expect("status");
    assert_eq!(status.failure_reason, None);
    assert_eq!(status.failed_checks, 0);
    assert_eq!(outcome(&p).as_deref(), Some("Applied"));
    assert!(events(&p).iter().any(|e| e.starts_with("Retry requested!")));
}

#[test]
fn retry_still_asks_the_confirm_rollout_gate() {
    let mut o = with_request(failed(), "retry@v1:b");
    o.canary
        .spec
        .analysis
        .get_or_insert_with(Default::default)
        .webhooks = Some(vec![hook("confirm-rollout")]);
    let checks = Checks {
        confirm_rollout: Some(false),
        ..Default::default()
    };
    let p = decide_with(&o, checks, at(0));
    assert_eq!(phase_of(&p), Some(CanaryPhase::Waiting));
    assert_eq!(outcome(&p).as_deref(), Some("Applied"));
}

#[test]
fn pause_holds_the_step_without_analysis_until_resume() {
    let o = with_status(with_request(progressing(0, 0), "pause@v1:b"), |s| {
        s.canary_weight = 20;
    });
    let p = decide(&o, at(3));
    let status = p.status.clone().expect("status");
    assert_eq!(status.paused_at, Some(to_time(at(3))));
    assert_eq!(status.canary_weight, 20);
    let waiting = status.waiting_for.clone().expect("the pause is the wait");
    assert_eq!(
        (waiting.reason.as_str(), waiting.since),
        ("Paused", Some(to_time(at(3))))
    );
    assert_eq!(
        events(&p),
        vec!["Paused podinfo.test at canary weight 20"],
        "one event announces the pause"
    );
    assert_eq!(outcome(&p).as_deref(), Some("Applied"));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::SetRoutes(_))));
    assert_eq!(p.requeue, Requeue::AwaitChange);

    // Long after the next tick was due: no check is asked, nothing changes.
    let paused = after(o, &p);
    match plan(&paused, &Checks::default(), at(100)) {
        Step::Done(held) => {
            assert!(held.actions.is_empty(), "{:?}", held.actions);
            assert_eq!(held.status, None);
        }
        Step::Need(q) => panic!("a paused run asked {q:?}"),
    }

    // Resume: the paused time does not count against the progress deadline.
    let resumed = decide(&with_request(paused, "resume@v1:b"), at(103));
    let status = resumed.status.clone().expect("status");
    assert_eq!(status.paused_at, None);
    assert_eq!(status.run_start_time, Some(to_time(at(100))));
    assert_eq!(outcome(&resumed).as_deref(), Some("Applied"));
    assert!(events(&resumed).iter().any(|e| e == "Resumed podinfo.test"));
    assert!(
        events(&resumed)
            .iter()
            .any(|e| e == "Advance podinfo.test canary iteration 1/3"),
        "the run goes on at once: {:?}",
        events(&resumed)
    );
}

#[test]
fn a_new_revision_ends_a_pause_and_restarts_the_run() {
    let o = with_status(progressing(0, 0), |s| s.paused_at = Some(to_time(at(1))));
    let mut o = o;
    o.target = Ok(TargetObs {
        replicas: 2,
        ..target("v1:c")
    });
    let p = decide(&o, at(3));
    let status = p.status.clone().expect("status");
    assert_eq!(status.paused_at, None);
    assert_eq!(status.last_applied_spec.as_deref(), Some("v1:c"));
    assert!(
        events(&p)
            .iter()
            .any(|e| e.contains("pause of podinfo.test ended"))
    );
}

#[test]
fn a_stale_request_is_ignored_with_a_reason_and_changes_nothing_else() {
    let o = with_request(progressing(0, 0), "abort@v1:a");
    let p = decide(&o, at(3));
    let ack = last_request(&p).expect("acknowledged");
    assert_eq!(ack.outcome, "Ignored");
    assert!(
        ack.message
            .as_deref()
            .unwrap_or_default()
            .contains("revision v1:a is no longer current (the canary's revision is v1:b)"),
        "{ack:?}"
    );
    assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
    assert_eq!(warnings(&p).len(), 1, "{:?}", warnings(&p));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::SetRoutes(_))));
}

#[test]
fn a_request_that_does_not_apply_in_the_phase_is_ignored() {
    for (o, value, why) in [
        (
            fx(),
            "promote@v1:a",
            "applies only in phase Progressing or WaitingPromotion",
        ),
        (fx(), "retry@v1:a", "applies only in phase Failed"),
        (progressing(0, 0), "resume@v1:b", "the run is not paused"),
    ] {
        let p = decide(&with_request(o, value), at(3));
        let ack = last_request(&p).expect("acknowledged");
        assert_eq!(ack.outcome, "Ignored", "{value}");
        assert!(
            ack.message.as_deref().unwrap_or_default().contains(why),
            "{ack:?}"
        );
        assert_eq!(warnings(&p).len(), 1, "{value}: {:?}", warnings(&p));
    }
}

#[test]
fn a_malformed_request_is_rejected_with_a_warning_and_changes_nothing() {
    for value in ["promot@v1:b", "promote", "promote@"] {
        let o = with_request(progressing(0, 0), value);
        let p = decide(&o, at(3));
        let ack = last_request(&p).expect("acknowledged");
        assert_eq!(ack.outcome, "Rejected", "{value}");
        assert_eq!(ack.request, value);
        assert_eq!(phase_of(&p), Some(CanaryPhase::Progressing));
        let w = warnings(&p);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!("Rejected serin.dev/request {value:?}")),
            "{w:?}"
        );
    }
    let p = decide(&with_request(progressing(0, 0), "promot@v1:b"), at(3));
    assert!(
        last_request(&p)
            .and_then(|r| r.message)
            .unwrap_or_default()
            .contains(
                "unknown verb \"promot\": expected one of promote, abort, retry, pause, resume"
            )
    );
}

#[test]
fn an_acknowledged_request_is_not_applied_again() {
    // A restarted controller (or any later reconcile) sees the annotation and the
    // acknowledgement: the plan is the one without a request.
    let o = with_status(with_request(progressing(0, 0), "abort@v1:b"), |s| {
        s.last_request = Some(RequestStatus {
            request: "abort@v1:b".into(),
            outcome: "Applied".into(),
            ..Default::default()
        });
    });
    let with = decide(&o, at(3));
    let mut without = o.clone();
    without.canary.metadata.annotations = None;
    assert_eq!(with, decide(&without, at(3)));
    assert_eq!(
        phase_of(&with),
        None,
        "nothing to write before the tick is due"
    );
}

#[test]
fn requests_parse_and_print_as_verb_at_revision() {
    use crate::core::plan::requests::{ParseError, Verb, parse};
    let r = parse(" pause@v1:revision:podinfo-00002 ").expect("valid");
    assert_eq!(r.verb, Verb::Pause);
    assert_eq!(r.revision, "v1:revision:podinfo-00002");
    assert_eq!(r.annotation(), "pause@v1:revision:podinfo-00002");
    assert_eq!(
        parse("Promote@x"),
        Err(ParseError::UnknownVerb("Promote".into()))
    );
    assert_eq!(parse("abort"), Err(ParseError::NoRevision));
    for v in Verb::ALL {
        assert_eq!(Verb::parse(v.as_str()), Some(v));
    }
}
