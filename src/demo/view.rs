//! What the demo shows: a live view redrawn in place on a terminal, or one plain log line per
//! change otherwise, and the closing summary table. Rendering is pure (strings); the caller
//! writes them to stdout.
use std::fmt::Write;
use std::time::Duration;

/// One check as the Canary's status last recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckView {
    /// Check name.
    pub name: String,
    /// Value found.
    pub value: Option<f64>,
    /// Lowest accepted value.
    pub min: Option<f64>,
    /// Highest accepted value.
    pub max: Option<f64>,
    /// `Pass`, `Fail`, `NoData`, `Error`.
    pub outcome: String,
}

/// An Event about the Canary.
#[derive(Clone, Debug, PartialEq)]
pub struct EventView {
    /// `Normal` or `Warning`.
    pub type_: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// Measured traffic of one app version over the last seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct RateView {
    /// App version.
    pub version: String,
    /// Requests per second.
    pub rps: f64,
    /// Share of 5xx answers, in percent.
    pub error_pct: f64,
}

/// Everything one frame shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Scenario name (`promote`, `rollback`).
    pub scenario: String,
    /// What the scenario deployed, e.g. `deploy v2 (healthy)`.
    pub title: String,
    /// Time since the scenario started.
    pub elapsed: Duration,
    /// Canary phase.
    pub phase: String,
    /// Canary traffic weight in percent.
    pub canary_weight: i64,
    /// Failed checks so far and the threshold.
    pub failed_checks: i64,
    /// Rollback threshold.
    pub threshold: i64,
    /// The latest checks.
    pub checks: Vec<CheckView>,
    /// The latest Events, oldest first.
    pub events: Vec<EventView>,
    /// Traffic per version.
    pub rates: Vec<RateView>,
    /// Requests the gateway could not route during the scenario.
    pub routing_failures: u64,
    /// One line per scenario already finished.
    pub finished: Vec<String>,
}

/// How a scenario ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// Final phase.
    pub outcome: String,
    /// The phase the story expects.
    pub expected: String,
    /// From the Deployment change to the final phase.
    pub duration: Duration,
    /// The states the Canary went through (phase or weight changes), in order.
    pub states: Vec<String>,
    /// The analysis interval.
    pub interval: Duration,
    /// Requests answered per version during the scenario.
    pub served: Vec<(String, u64)>,
    /// The version the primary serves at the end.
    pub primary_version: String,
    /// The version the story expects the primary to serve.
    pub expected_primary: String,
    /// Requests the gateway could not route during the scenario.
    pub routing_failures: u64,
}

impl ScenarioResult {
    /// Analysis steps: the state changes after the first traffic shift, each a full analysis
    /// interval after the previous tick (weight changes, failed checks, promotion, rollback).
    /// Detecting the revision is immediate; the first shift is due one interval after the run's
    /// start as the status records it, in whole seconds, so it can come up to a second early and
    /// is not counted; Finalising and Succeeded follow the primary's rollout, not the interval.
    pub fn steps(&self) -> usize {
        self.states
            .iter()
            .skip(2)
            .filter(|s| !s.starts_with("Finalising") && !s.starts_with("Succeeded"))
            .count()
    }

    /// The theoretical minimum duration: steps × interval.
    pub fn minimum(&self) -> Duration {
        self.interval * u32::try_from(self.steps()).unwrap_or(u32::MAX)
    }

    /// Whether the scenario ended as the story says it should.
    pub fn as_expected(&self) -> bool {
        self.outcome == self.expected
            && self.primary_version == self.expected_primary
            && self.routing_failures == 0
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

/// `text` without its colour codes (SGR sequences `ESC [ … m`), for a terminal with `NO_COLOR`;
/// cursor movements are kept.
pub fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\x1b[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let params = after
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(after.len());
        if after[params..].starts_with('m') {
            rest = &after[params + 1..];
        } else {
            out.push_str("\x1b[");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn outcome_colour(outcome: &str) -> &'static str {
    match outcome {
        "Pass" | "Succeeded" | "Initialized" => GREEN,
        "Fail" | "Error" | "Failed" => RED,
        _ => YELLOW,
    }
}

/// `≥ 99`, `≤ 500`, `99 – 101`.
pub fn threshold_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("{} – {}", num(a), num(b)),
        (Some(a), None) => format!("≥ {}", num(a)),
        (None, Some(b)) => format!("≤ {}", num(b)),
        (None, None) => "no range".into(),
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn check_line(c: &CheckView) -> String {
    let value = c.value.map_or("—".to_string(), |v| format!("{v:.2}"));
    format!(
        "{} {} (want {}) {}",
        c.name,
        value,
        threshold_text(c.min, c.max),
        c.outcome
    )
}

/// A `width`-cell bar of the primary/canary split.
pub fn split_bar(canary_weight: i64, width: usize) -> (String, String) {
    let w = usize::try_from(canary_weight.clamp(0, 100)).unwrap_or(0);
    let canary = (w * width + 50) / 100;
    ("█".repeat(width - canary), "█".repeat(canary))
}

/// The terminal frame for `s` (ANSI colours; the caller clears the screen first).
pub fn frame(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{BOLD}serin demo{RESET} · scenario {BOLD}{}{RESET}: {} · {:.1}s",
        s.scenario,
        s.title,
        s.elapsed.as_secs_f64()
    );
    for f in &s.finished {
        let _ = writeln!(o, "  {DIM}done:{RESET} {f}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  phase    {}{BOLD}{}{RESET}   failed checks {}/{}",
        outcome_colour(&s.phase),
        s.phase,
        s.failed_checks,
        s.threshold
    );
    let (p, c) = split_bar(s.canary_weight, 40);
    let _ = writeln!(
        o,
        "  traffic  primary {:>3}% {GREEN}{p}{RESET}{CYAN}{c}{RESET} {:>3}% canary",
        100 - s.canary_weight.clamp(0, 100),
        s.canary_weight.clamp(0, 100)
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "  {BOLD}checks{RESET}");
    if s.checks.is_empty() {
        let _ = writeln!(o, "    {DIM}none yet{RESET}");
    }
    for c in &s.checks {
        let _ = writeln!(
            o,
            "    {:<24} {:>10}  want {:<10} {}{}{RESET}",
            c.name,
            c.value.map_or("—".to_string(), |v| format!("{v:.2}")),
            threshold_text(c.min, c.max),
            outcome_colour(&c.outcome),
            c.outcome
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "  {BOLD}traffic by version{RESET} (last 2s)");
    for r in &s.rates {
        let colour = if r.error_pct > 1.0 { RED } else { GREEN };
        let _ = writeln!(
            o,
            "    {:<6} {:>6.1} req/s   {colour}{:>5.1}% errors{RESET}",
            r.version, r.rps, r.error_pct
        );
    }
    let colour = if s.routing_failures == 0 { GREEN } else { RED };
    let _ = writeln!(
        o,
        "    routing failures at the gateway: {colour}{}{RESET}",
        s.routing_failures
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "  {BOLD}events{RESET}");
    for e in &s.events {
        let colour = if e.type_ == "Warning" { RED } else { DIM };
        let _ = writeln!(
            o,
            "    {colour}{:<8}{RESET} {}",
            e.reason,
            truncate(&e.message, 100)
        );
    }
    o
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    // Halt events carry the query after the headline; the headline is what a reader scans.
    let headline = text.split(" [check ").next().unwrap_or(text);
    if headline.chars().count() <= max {
        return headline.to_string();
    }
    let mut cut: String = headline.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Plain log lines for what changed between `prev` and `s` (nothing when nothing changed).
pub fn plain_lines(prev: Option<&Snapshot>, s: &Snapshot) -> Vec<String> {
    let stamp = format!("[{:>6.1}s] {:<8}", s.elapsed.as_secs_f64(), s.scenario);
    let mut out = Vec::new();
    let changed = prev.is_none_or(|p| p.phase != s.phase || p.canary_weight != s.canary_weight);
    if changed {
        let rates: Vec<String> = s
            .rates
            .iter()
            .map(|r| {
                format!(
                    "{} {:.1} req/s {:.1}% errors",
                    r.version, r.rps, r.error_pct
                )
            })
            .collect();
        out.push(format!(
            "{stamp} phase={} canary_weight={} failed_checks={}/{} traffic: {}",
            s.phase,
            s.canary_weight,
            s.failed_checks,
            s.threshold,
            if rates.is_empty() {
                "none yet".to_string()
            } else {
                rates.join(", ")
            }
        ));
    }
    for c in &s.checks {
        let before = prev.and_then(|p| p.checks.iter().find(|x| x.name == c.name));
        if before != Some(c) {
            out.push(format!("{stamp} check {}", check_line(c)));
        }
    }
    let seen = prev.map_or(0, |p| {
        // Events are a sliding window; find how many of ours are new.
        let mut k = s.events.len();
        while k > 0 && !p.events.ends_with(&s.events[..k]) {
            k -= 1;
        }
        k
    });
    for e in &s.events[seen..] {
        out.push(format!(
            "{stamp} event {} {}: {}",
            e.type_, e.reason, e.message
        ));
    }
    if prev.is_some_and(|p| p.routing_failures != s.routing_failures) {
        out.push(format!(
            "{stamp} routing failures at the gateway: {}",
            s.routing_failures
        ));
    }
    out
}

/// The summary table (ANSI colours when `colour`).
pub fn summary(results: &[ScenarioResult], colour: bool) -> String {
    let paint = |c: &'static str| if colour { c } else { "" };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<9} {:<10} {:>9} {:>9} {:>6}  {:<8} {:>8}  served per version",
        "scenario", "outcome", "duration", "minimum", "steps", "primary", "no-route"
    );
    for r in results {
        let served: Vec<String> = r.served.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        let _ = writeln!(
            o,
            "{:<9} {}{:<10}{} {:>8.1}s {:>8.1}s {:>6}  {:<8} {:>8}  {}",
            r.scenario,
            paint(if r.as_expected() { GREEN } else { RED }),
            r.outcome,
            paint(RESET),
            r.duration.as_secs_f64(),
            r.minimum().as_secs_f64(),
            r.steps(),
            r.primary_version,
            r.routing_failures,
            served.join(", ")
        );
    }
    for r in results {
        let _ = writeln!(o, "  {}: {}", r.scenario, r.states.join(" → "));
    }
    o
}

/// One machine-readable line per scenario (for scripts and the end-to-end test).
pub fn result_line(r: &ScenarioResult) -> String {
    let served: Vec<String> = r.served.iter().map(|(v, n)| format!("{v}:{n}")).collect();
    format!(
        "result scenario={} outcome={} expected={} primary={} expected_primary={} duration_s={:.1} minimum_s={:.1} steps={} routing_failures={} served={}",
        r.scenario,
        r.outcome,
        r.expected,
        r.primary_version,
        r.expected_primary,
        r.duration.as_secs_f64(),
        r.minimum().as_secs_f64(),
        r.steps(),
        r.routing_failures,
        served.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(phase: &str, weight: i64, events: &[&str]) -> Snapshot {
        Snapshot {
            scenario: "promote".into(),
            phase: phase.into(),
            canary_weight: weight,
            threshold: 2,
            events: events
                .iter()
                .map(|m| EventView {
                    type_: "Normal".into(),
                    reason: "Synced".into(),
                    message: m.to_string(),
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn without_colours_the_frame_keeps_its_text_and_loses_every_sgr_code() {
        let s = snap("Progressing", 40, &["a"]);
        let coloured = frame(&s);
        assert!(
            coloured.contains("\x1b[1m"),
            "the frame is coloured: {coloured:?}"
        );
        let plain = strip_colours(&coloured);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("phase    Progressing"), "{plain:?}");
        // Cursor movements are not colours and stay.
        assert_eq!(
            strip_colours("\x1b[H\x1b[31mx\x1b[0m\x1b[K"),
            "\x1b[Hx\x1b[K"
        );
        assert_eq!(strip_colours("no codes"), "no codes");
        assert_eq!(strip_colours("cut \x1b["), "cut \x1b[");
    }

    #[test]
    fn plain_mode_prints_only_what_changed() {
        let a = snap("Progressing", 20, &["a", "b"]);
        let b = snap("Progressing", 20, &["a", "b"]);
        assert!(plain_lines(Some(&a), &b).is_empty());
        let c = snap("Progressing", 40, &["b", "c"]);
        let lines = plain_lines(Some(&b), &c);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("canary_weight=40"));
        assert!(lines[1].ends_with("Synced: c"));
    }

    #[test]
    fn the_split_bar_has_a_fixed_width() {
        let (p, c) = split_bar(20, 40);
        assert_eq!(p.chars().count(), 32);
        assert_eq!(c.chars().count(), 8);
        let (p, c) = split_bar(150, 10);
        assert_eq!((p.chars().count(), c.chars().count()), (0, 10));
    }

    #[test]
    fn a_scenario_is_as_expected_only_with_no_routing_failures() {
        let mut r = ScenarioResult {
            scenario: "rollback".into(),
            outcome: "Failed".into(),
            expected: "Failed".into(),
            duration: Duration::from_secs(9),
            states: vec![
                "Progressing 0".into(),
                "Progressing 20".into(),
                "Failed 0".into(),
            ],
            interval: Duration::from_secs(2),
            served: vec![],
            primary_version: "v2".into(),
            expected_primary: "v2".into(),
            routing_failures: 0,
        };
        assert!(r.as_expected());
        assert_eq!(r.steps(), 1);
        assert_eq!(r.minimum(), Duration::from_secs(2));
        r.routing_failures = 1;
        assert!(!r.as_expected());
        assert!(result_line(&r).contains("routing_failures=1"));
    }

    #[test]
    fn thresholds_read_naturally() {
        assert_eq!(threshold_text(Some(99.0), None), "≥ 99");
        assert_eq!(threshold_text(None, Some(500.0)), "≤ 500");
        assert_eq!(threshold_text(Some(0.5), Some(1.0)), "0.50 – 1");
    }
}
