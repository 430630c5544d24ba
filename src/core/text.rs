//! Text shown to users from outside data: redacted URLs, cut bodies, error chains; pure.

/// How many bytes of a response body an error keeps.
pub const BODY_PREFIX: usize = 200;

/// Shows a URL without secrets: user info and query values are replaced by `redacted`.
/// Unparsable URLs are shown as `<invalid url>` since they may hold anything.
pub fn redact(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "<invalid url>".into();
    };
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("redacted");
        let _ = url.set_password(None);
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), "redacted".to_string()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Cuts a body to its first [`BODY_PREFIX`] bytes (on a character boundary).
pub fn body_prefix(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_PREFIX)]).into_owned();
    text.trim_end_matches('\u{FFFD}').trim().to_string()
}

/// An error and its sources on one line (reqwest hides the useful part in the sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
