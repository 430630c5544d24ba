//! HTTP plumbing shared by the vendor providers (CloudWatch, Stackdriver, Splunk): clients with
//! Flagger's 5 s timeout, Secret keys, and failure messages with secrets redacted; network I/O.
use std::collections::BTreeMap;
use std::time::Duration;

use crate::core::text::{body_prefix, redact};

/// Flagger's per-query timeout.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Builds an HTTP client with [`TIMEOUT`], verifying certificates unless `insecure`.
pub fn client(insecure: bool) -> Result<reqwest::Client, reqwest::Error> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .tls_danger_accept_invalid_certs(insecure)
        .build()
}

/// A Secret key as text without a trailing newline (`kubectl create secret --from-file` keeps
/// one); `None` when absent or empty.
pub fn secret_text(secret: Option<&BTreeMap<String, Vec<u8>>>, key: &str) -> Option<String> {
    let v = secret?.get(key)?;
    let text = String::from_utf8_lossy(v)
        .trim_end_matches(['\r', '\n'])
        .to_string();
    (!text.is_empty()).then_some(text)
}

/// Replaces every occurrence of a secret in `text` by `<redacted>`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "<redacted>");
    }
    out
}

/// A failed call, as the one line a `Reading::Failed` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sends `req` and returns the body of a 2xx answer. Anything else is a [`Failure`] naming the
/// provider, the URL (query values redacted), the status and the start of the body, with the
/// given secrets scrubbed.
pub async fn send(
    provider: &str,
    req: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<Vec<u8>, Failure> {
    let resp = check(provider, req, secrets).await?;
    let body = resp
        .bytes()
        .await
        .map_err(|e| transport(provider, &e, secrets))?;
    Ok(body.to_vec())
}

/// Sends `req` and returns a 2xx response unread (for streamed bodies); anything else is a
/// [`Failure`] as [`send`] makes it.
pub async fn check(
    provider: &str,
    req: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<reqwest::Response, Failure> {
    let resp = req
        .send()
        .await
        .map_err(|e| transport(provider, &e, secrets))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let url = redact(resp.url().as_str());
    let body = resp
        .bytes()
        .await
        .map_err(|e| transport(provider, &e, secrets))?;
    Err(Failure(scrub(
        &format!(
            "{provider}: {url} answered {status}: {}",
            body_prefix(&body)
        ),
        secrets,
    )))
}

/// A transport error (connection refused, timeout, TLS) as a [`Failure`].
pub fn transport(provider: &str, e: &reqwest::Error, secrets: &[&str]) -> Failure {
    let url = e.url().map(|u| redact(u.as_str())).unwrap_or_default();
    let what = if e.is_timeout() {
        format!("timed out after {}s", TIMEOUT.as_secs())
    } else {
        reason(e)
    };
    Failure(scrub(
        &format!("{provider}: request to {url} failed: {what}"),
        secrets,
    ))
}

/// An answer that is not the documented shape.
pub fn unparsable(
    provider: &str,
    body: &[u8],
    why: impl std::fmt::Display,
    secrets: &[&str],
) -> Failure {
    Failure(scrub(
        &format!(
            "{provider}: cannot read the answer ({why}): {}",
            body_prefix(body)
        ),
        secrets,
    ))
}

/// The reason of a reqwest error without its URL (reqwest's own message repeats the URL, query
/// and all; the sources carry the reason).
fn reason(e: &reqwest::Error) -> String {
    let mut out = if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_body() || e.is_decode() {
        "reading the body failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_text_drops_trailing_newlines_and_empty_values() {
        let s: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"tok\n".to_vec()),
            ("b".to_string(), b"".to_vec()),
        ]
        .into();
        assert_eq!(secret_text(Some(&s), "a").as_deref(), Some("tok"));
        assert_eq!(secret_text(Some(&s), "b"), None);
        assert_eq!(secret_text(Some(&s), "c"), None);
        assert_eq!(secret_text(None, "a"), None);
    }

    #[test]
    fn scrub_removes_every_secret_but_ignores_tiny_ones() {
        assert_eq!(
            scrub("token abcd1234 and abcd1234, x", &["abcd1234", "x"]),
            "token <redacted> and <redacted>, x"
        );
    }
}
