//! Session-affinity cookies shared by the Istio and Gateway API routers; pure.
use crate::api::Canary;
use crate::api::canary::SessionAffinity;
use crate::core::session_cookie;

/// The request header sticky routes match on.
pub const COOKIE_HEADER: &str = "Cookie";
/// The response header that hands out the cookie.
pub const SET_COOKIE_HEADER: &str = "Set-Cookie";

/// The cookies of the current run, as the router needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookies {
    /// The settings.
    pub spec: SessionAffinity,
    /// `<cookieName>=<value>` of the current run.
    pub canary: String,
    /// `<primaryCookieName>=<value>` when a primary cookie name is set.
    pub primary: Option<String>,
    /// The cookie to expire once the canary weight is back to 0.
    pub expire: Option<String>,
    /// The analysis interval in seconds (the primary cookie's lifetime).
    pub interval_secs: u64,
}

/// The canary's session-affinity cookies, or `None` without `analysis.sessionAffinity`.
///
/// The plan writes the cookies of a run into status when the run starts; a Canary that has none
/// there (a run started by Flagger) gets values derived from its uid and run start instead.
pub fn cookies(canary: &Canary) -> Option<Cookies> {
    let a = canary.spec.analysis.as_ref()?;
    let spec = a.session_affinity.clone()?;
    let status = canary.status.clone().unwrap_or_default();
    let uid = canary.metadata.uid.clone().unwrap_or_default();
    let start = status
        .run_start_time
        .as_ref()
        .map(crate::api::time::from_time)
        .unwrap_or_default();
    let canary_cookie = status
        .session_affinity_cookie
        .clone()
        .unwrap_or_else(|| session_cookie(&spec.cookie_name, &uid, start));
    let primary = spec
        .primary_cookie_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(|n| {
            status
                .primary_session_affinity_cookie
                .clone()
                .unwrap_or_else(|| session_cookie(n, &uid, start))
        });
    // Flagger: with weight 0, a cookie still in status belongs to the run that just ended.
    let expire = status
        .session_affinity_cookie
        .clone()
        .or(status.previous_session_affinity_cookie.clone());
    let interval_secs = a
        .interval
        .as_deref()
        .and_then(|i| crate::api::duration::parse_duration(i).ok())
        .map(|d| d.as_secs())
        .unwrap_or(60);
    Some(Cookies {
        spec,
        canary: canary_cookie,
        primary,
        expire,
        interval_secs,
    })
}

/// The `Set-Cookie` value for `cookie` (`name=value`) with Flagger's attribute order.
pub fn set_cookie(spec: &SessionAffinity, cookie: &str, max_age: i64) -> String {
    let mut out = format!("{cookie}; Max-Age={max_age}");
    if let Some(d) = spec.domain.as_deref().filter(|d| !d.is_empty()) {
        out.push_str(&format!("; Domain={d}"));
    }
    if spec.http_only.unwrap_or(false) {
        out.push_str("; HttpOnly");
    }
    if spec.partitioned.unwrap_or(false) {
        out.push_str("; Partitioned");
    }
    if let Some(p) = spec.path.as_deref().filter(|p| !p.is_empty()) {
        out.push_str(&format!("; Path={p}"));
    }
    if let Some(s) = spec.same_site.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&format!("; SameSite={s}"));
    }
    if spec.secure.unwrap_or(false) {
        out.push_str("; Secure");
    }
    out
}

/// The regex a sticky route matches the `Cookie` header with: `.*<name>.*<value>.*`.
pub fn cookie_regex(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
    format!(".*{name}.*{value}.*")
}

/// The canary cookie's lifetime (`maxAge`, default 86400 seconds).
pub fn max_age(spec: &SessionAffinity) -> i64 {
    spec.max_age.map(i64::from).unwrap_or(86400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_lists_attributes_in_flaggers_order() {
        let spec = SessionAffinity {
            cookie_name: "c".into(),
            domain: Some("example.com".into()),
            http_only: Some(true),
            partitioned: Some(true),
            path: Some("/".into()),
            same_site: Some("Lax".into()),
            secure: Some(true),
            ..Default::default()
        };
        assert_eq!(
            set_cookie(&spec, "c=abc", 10),
            "c=abc; Max-Age=10; Domain=example.com; HttpOnly; Partitioned; Path=/; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn cookie_regex_matches_name_then_value() {
        assert_eq!(
            cookie_regex("flagger-cookie=xyz"),
            ".*flagger-cookie.*xyz.*"
        );
    }
}
