//! `serin status NAME [--watch]`: the demo's live view for one Canary on a real cluster (phase,
//! split bar, checks, webhook gates, what the controller waits for, the last request, the last
//! events). Fetching does API I/O; [`render`] is pure and reuses the demo's pieces.
use chrono::{DateTime, Utc};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;
use std::fmt::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::{Error, KubeArgs};
use crate::api::Canary;
use crate::api::webhook_type::WebhookType;
use crate::demo::view::{CheckView, EventView, split_bar, threshold_text, truncate};

/// `serin status` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The Canary.
    pub name: String,
    /// The kube flags.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Redraw the view every second until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// Everything one view shows, read from the Canary (typed, plus its raw JSON for fields this
/// build may not know, such as `status.waitingFor`) and its Events.
#[derive(Clone, Debug)]
pub struct View {
    /// The Canary.
    pub canary: Canary,
    /// The Canary as the API server returned it.
    pub raw: Value,
    /// Its latest Events, oldest first.
    pub events: Vec<EventView>,
    /// When it was read.
    pub now: DateTime<Utc>,
}

/// Terminal colours, or none.
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
    fn outcome(&self, t: &str) -> String {
        let code = match t {
            "Pass" | "Succeeded" | "Initialized" | "Applied" | "open" => "32",
            "Fail" | "Error" | "Failed" | "Rejected" | "closed" => "31",
            _ => "33",
        };
        self.wrap(code, t)
    }
}

/// The gates and hooks the view lists.
const GATES: [WebhookType; 4] = [
    WebhookType::ConfirmRollout,
    WebhookType::ConfirmTrafficIncrease,
    WebhookType::ConfirmPromotion,
    WebhookType::Rollback,
];

/// Renders the view (ANSI colours when `colour`).
pub fn render(v: &View, colour: bool) -> String {
    let p = Paint { on: colour };
    let c = &v.canary;
    let status = c.status.clone().unwrap_or_default();
    let mut o = String::new();
    let phase = status.phase.map_or("-", |p| p.as_str());
    let _ = writeln!(
        o,
        "{} {}/{} · {}",
        p.bold("canary"),
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default(),
        v.now.format("%H:%M:%S UTC")
    );
    let _ = writeln!(o);
    let paused = status.paused_at.as_ref().map_or(String::new(), |t| {
        format!(
            "   {}",
            p.wrap(
                "33",
                &format!(
                    "paused {} ago",
                    super::age(v.now - crate::api::time::from_time(t))
                )
            )
        )
    });
    let _ = writeln!(
        o,
        "  phase     {}   failed checks {}/{}   iteration {}{paused}",
        p.bold(&p.outcome(phase)),
        status.failed_checks,
        c.spec.threshold(),
        status.iterations,
    );
    let weight = i64::from(status.canary_weight.clamp(0, 100));
    let (pb, cb) = split_bar(weight, 40);
    // A lighter glyph for the canary's share, so the split reads without colours too.
    let cb = cb.replace('█', "░");
    let _ = writeln!(
        o,
        "  traffic   primary {:>3}% {}{} {:>3}% canary",
        100 - weight,
        p.wrap("32", &pb),
        p.wrap("36", &cb),
        weight
    );
    let revision = status.last_applied_spec.as_deref().unwrap_or("-");
    let _ = writeln!(o, "  revision  {}", p.dim(revision));
    if let Some(why) = status.conditions.as_ref().and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
    }) {
        let _ = writeln!(
            o,
            "  invalid   {}: {}",
            p.wrap("31", &why.reason),
            why.message.as_deref().unwrap_or_default()
        );
    }
    if let Some(reason) = status.failure_reason.as_deref() {
        let _ = writeln!(o, "  failure   {}", p.wrap("31", reason));
    }
    let waiting = &v.raw["status"]["waitingFor"];
    if let Some(reason) = waiting["reason"].as_str() {
        let _ = writeln!(
            o,
            "  waiting   {}: {}",
            p.wrap("33", reason),
            waiting["message"].as_str().unwrap_or_default()
        );
    }
    if let Some(r) = &status.last_request {
        let when = r.observed_at.as_ref().map_or(String::new(), |t| {
            format!(
                " ({} ago)",
                super::age(v.now - crate::api::time::from_time(t))
            )
        });
        let _ = writeln!(
            o,
            "  request   {} {}: {}{when}",
            r.request,
            p.outcome(&r.outcome),
            r.message.as_deref().unwrap_or_default()
        );
    }
    let _ = writeln!(o);

    let records = status.checks.clone().unwrap_or_default();
    let checks: Vec<CheckView> = records
        .iter()
        .filter(|r| r.kind != "webhook")
        .map(|r| CheckView {
            name: r.name.clone(),
            value: r.value,
            min: r.min,
            max: r.max,
            outcome: r.outcome.clone(),
        })
        .collect();
    let _ = writeln!(o, "  {}", p.bold("checks"));
    if checks.is_empty() {
        let _ = writeln!(o, "    {}", p.dim("none yet"));
    }
    for ch in &checks {
        let _ = writeln!(
            o,
            "    {:<28} {:>10}  want {:<12} {}",
            ch.name,
            ch.value.map_or("—".to_string(), |v| format!("{v:.2}")),
            threshold_text(ch.min, ch.max),
            p.outcome(&ch.outcome)
        );
    }

    let gates: Vec<_> = GATES
        .iter()
        .flat_map(|t| c.spec.webhooks_of(*t).into_iter().map(move |w| (*t, w)))
        .collect();
    if !gates.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "  {}", p.bold("webhook gates"));
        for (t, w) in gates {
            let record = records
                .iter()
                .find(|r| r.kind == "webhook" && r.name == w.name);
            let running = status.phase.is_some_and(|ph| ph.is_running());
            let state = match record {
                Some(r) if r.outcome != "Pass" && running => format!(
                    "{} {}",
                    p.outcome("closed"),
                    truncate(r.message.as_deref().unwrap_or_default(), 45)
                ),
                // `status.checks` keeps the last run's records until the next run starts.
                Some(r) if r.outcome != "Pass" => p.dim(&format!(
                    "said no in the last run: {}",
                    truncate(r.message.as_deref().unwrap_or_default(), 30)
                )),
                _ => p.dim("no refusal recorded"),
            };
            let _ = writeln!(o, "    {:<26} {:<20} {state}", t.as_str(), w.name);
        }
    }

    let _ = writeln!(o);
    let _ = writeln!(o, "  {}", p.bold("events"));
    if v.events.is_empty() {
        let _ = writeln!(o, "    {}", p.dim("none"));
    }
    for e in &v.events {
        let kind = if e.type_ == "Warning" {
            p.wrap("31", &format!("{:<8}", e.type_))
        } else {
            p.dim(&format!("{:<8}", e.type_))
        };
        let _ = writeln!(o, "    {kind} {}", truncate(&e.message, 110));
    }
    o
}

/// Reads the Canary and its latest Events.
pub async fn fetch(client: &kube::Client, namespace: &str, name: &str) -> Result<View, Error> {
    let ar = kube::core::ApiResource {
        group: "flagger.app".into(),
        version: "v1beta1".into(),
        api_version: "flagger.app/v1beta1".into(),
        kind: "Canary".into(),
        plural: "canaries".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let obj = api
        .get(name)
        .await
        .map_err(|e| Error::from_kube(e, namespace, name))?;
    let raw = serde_json::to_value(&obj).map_err(|e| Error::Io(e.to_string()))?;
    let canary: Canary = serde_json::from_value(raw.clone())
        .map_err(|e| Error::Io(format!("canary {namespace}/{name} cannot be read: {e}")))?;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut evs: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::from_kube(e, namespace, name))?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Canary") && r.name.as_deref() == Some(name)
            })
        })
        .collect();
    evs.sort_by_key(|e| {
        (
            e.series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            e.metadata
                .resource_version
                .as_deref()
                .and_then(|r| r.parse::<u64>().ok()),
        )
    });
    let skip = evs.len().saturating_sub(8);
    let events = evs
        .into_iter()
        .skip(skip)
        .map(|e| EventView {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.note.unwrap_or_default(),
        })
        .collect();
    Ok(View {
        canary,
        raw,
        events,
        now: Utc::now(),
    })
}

/// Runs `serin status`.
pub fn run(args: StatusArgs) -> ExitCode {
    super::block_on(async move {
        let (client, namespace) = super::client(&args.kube).await?;
        let colour = super::colour();
        let mut last = String::new();
        loop {
            let view = fetch(&client, &namespace, &args.name).await?;
            let text = render(&view, colour);
            if !args.watch {
                return super::out(&text);
            }
            if colour {
                // Redraw in place: home, the frame, then clear what the last frame left below.
                super::out(&format!("\x1b[H\x1b[2J{text}"))?;
            } else {
                // Not a terminal: a new frame only when something besides the clock changed.
                let body: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
                if body != last {
                    super::out(&format!("{text}\n"))?;
                    last = body;
                }
            }
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CanaryPhase;
    use crate::api::canary::{CanaryStatus, CheckRecord, RequestStatus};

    fn view(raw_status: Value) -> View {
        let mut canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "threshold": 3, "webhooks": [
                    {"name": "approve", "type": "confirm-promotion", "url": "http://gate/"}
                ]}
            }
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
        canary.status = Some(CanaryStatus {
            phase: Some(CanaryPhase::Progressing),
            canary_weight: 20,
            failed_checks: 1,
            last_applied_spec: Some("v1:abc".into()),
            checks: Some(vec![
                CheckRecord {
                    name: "request-success-rate".into(),
                    kind: "metric".into(),
                    value: Some(99.5),
                    min: Some(99.0),
                    outcome: "Pass".into(),
                    ..Default::default()
                },
                CheckRecord {
                    name: "approve".into(),
                    kind: "webhook".into(),
                    outcome: "Fail".into(),
                    message: Some("403 not yet".into()),
                    ..Default::default()
                },
            ]),
            last_request: Some(RequestStatus {
                request: "pause@v1:abc".into(),
                outcome: "Applied".into(),
                message: Some("paused at canary weight 20".into()),
                observed_at: None,
            }),
            ..Default::default()
        });
        View {
            canary,
            raw: serde_json::json!({"status": raw_status}),
            events: vec![EventView {
                type_: "Normal".into(),
                reason: "Synced".into(),
                message: "Advance podinfo.test canary weight 20".into(),
            }],
            now: Utc::now(),
        }
    }

    #[test]
    fn the_view_shows_phase_split_checks_gates_request_and_events() {
        let text = render(&view(Value::Null), false);
        assert!(
            text.contains("phase     Progressing   failed checks 1/3"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "primary  80% {}{}  20% canary",
                "█".repeat(32),
                "░".repeat(8)
            )),
            "{text}"
        );
        assert!(text.contains(" 20% canary"), "{text}");
        assert!(text.contains("request-success-rate"), "{text}");
        assert!(text.contains("want ≥ 99"), "{text}");
        assert!(text.contains("confirm-promotion"), "{text}");
        assert!(text.contains("closed 403 not yet"), "{text}");
        assert!(
            text.contains("request   pause@v1:abc Applied: paused at canary weight 20"),
            "{text}"
        );
        assert!(
            text.contains("Advance podinfo.test canary weight 20"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colours when not asked: {text}");
        assert!(!text.contains("waiting "), "{text}");

        let mut done = view(Value::Null);
        if let Some(s) = done.canary.status.as_mut() {
            s.phase = Some(CanaryPhase::Succeeded);
        }
        let text = render(&done, false);
        assert!(!text.contains("closed"), "{text}");
        assert!(
            text.contains("said no in the last run: 403 not yet"),
            "{text}"
        );
    }

    #[test]
    fn what_the_controller_waits_for_is_read_from_the_raw_status() {
        let text = render(
            &view(serde_json::json!({"waitingFor": {
                "reason": "CanaryPodsNotReady", "message": "1 of 2 canary pods ready",
                "since": "2026-12-04T21:00:00Z"
            }})),
            true,
        );
        assert!(text.contains("CanaryPodsNotReady"), "{text}");
        assert!(text.contains("1 of 2 canary pods ready"), "{text}");
        assert!(text.contains('\x1b'), "colours when asked");
    }
}
