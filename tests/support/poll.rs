//! Polling until a condition holds, shared by the end-to-end harness (`tests/common`) and the
//! simulator suites (`tests/support/sim.rs`); sleeps on the tokio clock.
use anyhow::bail;
use std::future::Future;
use std::time::Duration;

/// Polls `check` every `every` until it yields a value or `secs` pass.
pub async fn poll_until<T, F, Fut>(
    every: Duration,
    secs: u64,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}
