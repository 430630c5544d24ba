//! HTTP plumbing shared by the vendor providers: a client with Flagger's 5 s timeout, and failure
//! messages that name the provider, the status and the start of the body, secrets redacted;
//! network I/O.
use std::time::Duration;

use super::evaluate::Reading;
use crate::core::text::{body_prefix, error_chain, redact};

/// Flagger's per-query timeout.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A provider's HTTP client: [`TIMEOUT`] (or a test's), certificates verified unless
/// `insecureSkipVerify`.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
    insecure: bool,
}

impl Http {
    /// A client with [`TIMEOUT`], verifying certificates unless `insecure`.
    pub fn new(insecure: bool) -> Result<Self, reqwest::Error> {
        Self::build(TIMEOUT, insecure)
    }

    /// The same client with another timeout (tests).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::build(timeout, self.insecure)
    }

    fn build(timeout: Duration, insecure: bool) -> Result<Self, reqwest::Error> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .tls_danger_accept_invalid_certs(insecure)
            .build()?;
        Ok(Self {
            client,
            timeout,
            insecure,
        })
    }

    /// The client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `req` and returns the body of a 2xx answer. Anything else is a [`Failure`] naming
    /// the provider, the URL (query values redacted), the status and the start of the body, with
    /// the given secrets scrubbed.
    pub async fn send(
        &self,
        provider: &str,
        req: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<Vec<u8>, Failure> {
        let resp = self.check(provider, req, secrets).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(provider, &e, secrets))?;
        Ok(body.to_vec())
    }

    /// Sends `req` and reads the body of a 2xx answer with `read`; a failed call, another status
    /// or a body `read` rejects is a `Reading::Failed` worded as [`Http::send`] and
    /// [`unparsable`] word them.
    pub async fn reading<E: std::fmt::Display>(
        &self,
        provider: &str,
        req: reqwest::RequestBuilder,
        secrets: &[&str],
        read: impl FnOnce(&[u8]) -> Result<Reading, E>,
    ) -> Reading {
        match self.send(provider, req, secrets).await {
            Ok(body) => {
                read(&body).unwrap_or_else(|e| unparsable(provider, &body, e, secrets).into())
            }
            Err(e) => e.into(),
        }
    }

    /// Sends `req` and returns a 2xx response unread (for streamed bodies); anything else is a
    /// [`Failure`] as [`Http::send`] makes it.
    pub async fn check(
        &self,
        provider: &str,
        req: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<reqwest::Response, Failure> {
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport(provider, &e, secrets))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = redact(resp.url().as_str());
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(provider, &e, secrets))?;
        Err(Failure(scrub(
            &format!(
                "{provider}: HTTP {status} from {url}: {}",
                body_prefix(&body)
            ),
            secrets,
        )))
    }

    /// A transport error (connection refused, timeout, TLS, a body cut short) as a [`Failure`].
    pub fn transport(&self, provider: &str, e: &reqwest::Error, secrets: &[&str]) -> Failure {
        let url = e.url().map(|u| redact(u.as_str())).unwrap_or_default();
        let what = if e.is_timeout() {
            format!(
                "no answer from {url}: timed out after {}s",
                self.timeout.as_secs_f64()
            )
        } else {
            format!("request to {url} failed: {}", reason(e))
        };
        Failure(scrub(&format!("{provider}: {what}"), secrets))
    }
}

/// Replaces every occurrence of a (non-empty) secret in `text` by `<redacted>`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s, "<redacted>"))
}

/// A failed call, as the one line a `Reading::Failed` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Failure> for Reading {
    fn from(f: Failure) -> Self {
        Reading::Failed(f.0)
    }
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
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{what}: {}", error_chain(cause)),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_non_empty_secret() {
        assert_eq!(
            scrub("token abcd1234 and abcd1234, x", &["abcd1234", ""]),
            "token <redacted> and <redacted>, x"
        );
        assert_eq!(scrub("key k9", &["k9"]), "key <redacted>");
    }

    #[test]
    fn a_failure_is_a_failed_reading() {
        assert_eq!(
            Reading::from(Failure("datadog: HTTP 500".into())),
            Reading::Failed("datadog: HTTP 500".into())
        );
    }
}
