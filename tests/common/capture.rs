//! A local HTTP server that records every request and answers with a scripted status.
#![allow(dead_code)]
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Captured>,
    /// Answers to give, in order; when empty, `fallback`.
    script: VecDeque<(u16, String)>,
    fallback: (u16, String),
    delay: Duration,
    /// `Retry-After` sent with every 429 and 503 answer.
    retry_after: Option<String>,
}

/// The server's handle.
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

impl Capture {
    pub async fn start() -> Capture {
        let inner = Arc::new(Mutex::new(Inner {
            fallback: (200, "OK".into()),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Capture {
            inner,
            base: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every later request gets this answer.
    pub fn answer(&self, status: u16, body: &str) {
        self.inner.lock().expect("lock").fallback = (status, body.into());
    }

    /// The next requests get these answers, in order.
    pub fn script(&self, answers: &[(u16, &str)]) {
        self.inner.lock().expect("lock").script =
            answers.iter().map(|(s, b)| (*s, b.to_string())).collect();
    }

    /// Sends `Retry-After: value` with every 429 and 503 answer.
    pub fn retry_after(&self, value: &str) {
        self.inner.lock().expect("lock").retry_after = Some(value.into());
    }

    pub fn delay(&self, d: Duration) {
        self.inner.lock().expect("lock").delay = d;
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.inner.lock().expect("lock").requests.clone()
    }

    pub fn clear(&self) {
        self.inner.lock().expect("lock").requests.clear();
    }

    /// Waits up to `secs` for at least `n` requests.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.requests();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (answer, delay, retry_after) = {
        let mut i = inner.lock().expect("lock");
        i.requests.push(Captured {
            path: uri.path().to_string(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        });
        let a = i.script.pop_front().unwrap_or_else(|| i.fallback.clone());
        (a, i.delay, i.retry_after.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(answer.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, answer.1).into_response();
    if let Some(v) = retry_after.filter(|_| matches!(answer.0, 429 | 503))
        && let Ok(v) = axum::http::HeaderValue::from_str(&v)
    {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}
