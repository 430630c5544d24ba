//! One webhook POST with Flagger's rules: success at status ≤ 202, retries with exponential
//! backoff (or the `Retry-After` a 429/503 asks for) on transport errors, 429 and 5xx (except
//! 501); URLs are redacted before they are shown.
//! Does network I/O.
use std::time::Duration;

pub use crate::core::text::{BODY_PREFIX, body_prefix, error_chain, redact};

/// Backoff between retries (go-retryablehttp's defaults are 1s and 30s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first retry; doubled for each later one.
    pub min: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry number `n` (0-based).
    pub fn wait(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.min(16));
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// Why a call failed; its text carries the redacted URL, the status and the body's first bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server answered with a status that is not success.
    #[error("POST {url} returned {status}{}: {body}", giving_up(*attempts))]
    Status {
        /// Redacted URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The first [`BODY_PREFIX`] bytes of the body.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer (connection refused, timeout, TLS error, …).
    #[error("POST {url} failed{}: {detail}", giving_up(*attempts))]
    Transport {
        /// Redacted URL.
        url: String,
        /// What went wrong (without the URL).
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The URL is not a usable http(s) URL.
    #[error("invalid webhook URL {url}: {detail}")]
    InvalidUrl {
        /// Redacted URL.
        url: String,
        /// Why.
        detail: String,
    },
}

fn giving_up(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (giving up after {attempts} attempt(s))")
    } else {
        String::new()
    }
}

impl CallError {
    /// The status code, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The wait a 429 or 503 answer asks for in `Retry-After` (delay-seconds or an HTTP date, as
/// RFC 9110 allows), capped at `max` so a receiver cannot hold the analysis longer than the
/// backoff would. `None` for other statuses and for values that do not parse.
pub fn retry_after(
    status: u16,
    header: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    max: Duration,
) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let value = header?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(max))
}

fn retryable(status: u16) -> bool {
    status == 429 || (status >= 500 && status != 501)
}

/// Success as Flagger counts it: 2xx up to 202.
pub fn is_success(status: u16) -> bool {
    (200..=202).contains(&status)
}

/// POSTs `body` as JSON, retrying `retries` times. Returns the successful status code.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &impl serde::Serialize,
    timeout: Duration,
    retries: u32,
    backoff: Backoff,
) -> Result<u16, CallError> {
    let shown = redact(url);
    let parsed = url::Url::parse(url).map_err(|e| CallError::InvalidUrl {
        url: shown.clone(),
        detail: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CallError::InvalidUrl {
            url: shown,
            detail: "the scheme must be http or https".into(),
        });
    }
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let res = client
            .post(parsed.clone())
            .timeout(timeout)
            .json(body)
            .send()
            .await;
        let mut asked: Option<Duration> = None;
        let (err, again) = match res {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if is_success(status) {
                    return Ok(status);
                }
                asked = retry_after(
                    status,
                    resp.headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()),
                    chrono::Utc::now(),
                    backoff.max,
                );
                let bytes = resp.bytes().await.unwrap_or_default();
                (
                    CallError::Status {
                        url: shown.clone(),
                        status,
                        body: body_prefix(&bytes),
                        attempts: attempt,
                    },
                    retryable(status),
                )
            }
            // `without_url`: reqwest's message would otherwise repeat the unredacted URL.
            Err(e) => (
                CallError::Transport {
                    url: shown.clone(),
                    detail: error_chain(&e.without_url()),
                    attempts: attempt,
                },
                true,
            ),
        };
        if !again || attempt > retries {
            return Err(err);
        }
        tokio::time::sleep(asked.unwrap_or_else(|| backoff.wait(attempt - 1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_user_info_and_query_values() {
        assert_eq!(
            redact("https://user:pw@hooks.example.com/x?token=abc&b=1"),
            "https://redacted@hooks.example.com/x?token=redacted&b=redacted"
        );
        assert_eq!(
            redact("http://lt.test/gate/check"),
            "http://lt.test/gate/check"
        );
        assert_eq!(redact("not a url with secret"), "<invalid url>");
    }

    #[test]
    fn bodies_are_cut_to_200_bytes_on_a_character_boundary() {
        let long = "é".repeat(150);
        let cut = body_prefix(long.as_bytes());
        assert!(cut.len() <= BODY_PREFIX);
        assert_eq!(cut, "é".repeat(100));
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_and_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let max = Duration::from_secs(30);
        assert_eq!(
            retry_after(429, Some("3"), now, max),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(503, Some("Sun, 22 Nov 2026 10:00:05 GMT"), now, max),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(503, Some("Sun, 22 Nov 2026 09:00:00 GMT"), now, max),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(429, Some("3600"), now, max), Some(max));
        assert_eq!(retry_after(500, Some("3"), now, max), None);
        assert_eq!(retry_after(429, Some("soon"), now, max), None);
        assert_eq!(retry_after(429, None, now, max), None);
    }

    #[test]
    fn success_stops_at_202() {
        assert!(is_success(200) && is_success(202));
        assert!(!is_success(203) && !is_success(204) && !is_success(403));
    }

    #[test]
    fn retries_cover_429_and_5xx_but_not_501() {
        assert!(retryable(429) && retryable(500) && retryable(503));
        assert!(!retryable(501) && !retryable(403) && !retryable(204));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff::default();
        assert_eq!(b.wait(0), Duration::from_secs(1));
        assert_eq!(b.wait(3), Duration::from_secs(8));
        assert_eq!(b.wait(10), Duration::from_secs(30));
    }
}
