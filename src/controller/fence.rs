//! A write fence on the controller's API client: while closed, every mutating request (anything
//! but GET/HEAD/OPTIONS) fails before it leaves the process, and closing waits for the writes
//! already under way. Leader election opens it on acquiring the Lease and closes it the moment
//! leadership ends, so no reconcile can write after that (a tower layer; no I/O of its own).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a fenced write fails with.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: API writes are fenced")]
pub struct FenceClosed;

#[derive(Debug, Default)]
struct State {
    open: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// The shared switch; clones control the same fence.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<State>);

impl Fence {
    /// A fence that lets nothing write until opened.
    pub fn closed() -> Self {
        Self::default()
    }

    /// A fence that lets everything through (no leader election).
    pub fn open_now() -> Self {
        let f = Self::default();
        f.open();
        f
    }

    /// Lets writes through.
    pub fn open(&self) {
        self.0.open.store(true, Ordering::SeqCst);
    }

    /// Whether writes go through.
    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::SeqCst)
    }

    /// Writes under way (sent, not answered yet).
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Stops every new write at once, without waiting for the writes under way.
    pub fn shut(&self) {
        self.0.open.store(false, Ordering::SeqCst);
    }

    /// Stops every new write at once, then waits up to `drain` for the writes under way to be
    /// answered. True when none is left.
    pub async fn close(&self, drain: Duration) -> bool {
        self.shut();
        let drained = async {
            loop {
                // Registered before the check, so a wake-up in between is not missed.
                let idle = self.0.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(drain, drained).await.is_ok()
    }

    /// Admits one write, or refuses it when closed. Counting first and checking second means a
    /// concurrent `close` either sees this write in flight or this write sees the fence closed.
    fn enter(&self) -> Option<InFlight> {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.clone());
        self.is_open().then_some(guard)
    }
}

/// One admitted write; dropping it marks it answered.
struct InFlight(Fence);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl<S> tower::Layer<S> for Fence {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.clone(),
        }
    }
}

/// A service behind a [`Fence`].
#[derive(Debug, Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

impl<S, B> tower::Service<http::Request<B>> for Fenced<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let reads = matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let guard = if reads {
            None
        } else {
            match self.fence.enter() {
                Some(g) => Some(g),
                None => {
                    tracing::debug!(method = %req.method(), uri = %req.uri(), "write fenced");
                    return Box::pin(async { Err(Box::new(FenceClosed) as BoxError) });
                }
            }
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await.map_err(Into::into);
            drop(guard);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service};

    /// Answers after `delay`, counting the calls that reached it.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
        reached: Arc<AtomicUsize>,
    }

    impl tower::Service<http::Request<()>> for Slow {
        type Response = ();
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            self.reached.fetch_add(1, Ordering::SeqCst);
            let d = self.delay;
            Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(())
            })
        }
    }

    fn req(method: http::Method) -> http::Request<()> {
        let mut r = http::Request::new(());
        *r.method_mut() = method;
        r
    }

    #[tokio::test]
    async fn a_closed_fence_stops_writes_but_not_reads() {
        let reached = Arc::new(AtomicUsize::new(0));
        let fence = Fence::closed();
        let mut svc = fence.layer(Slow {
            delay: Duration::ZERO,
            reached: reached.clone(),
        });
        assert!(svc.call(req(http::Method::GET)).await.is_ok());
        let err = svc
            .call(req(http::Method::PATCH))
            .await
            .expect_err("fenced");
        assert!(err.is::<FenceClosed>());
        assert_eq!(reached.load(Ordering::SeqCst), 1, "the write never left");
        fence.open();
        assert!(svc.call(req(http::Method::PUT)).await.is_ok());
        assert_eq!(reached.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn closing_waits_for_writes_under_way() {
        let reached = Arc::new(AtomicUsize::new(0));
        let fence = Fence::open_now();
        let mut svc = fence.layer(Slow {
            delay: Duration::from_millis(300),
            reached,
        });
        let write = tokio::spawn(svc.call(req(http::Method::POST)));
        tokio::task::yield_now().await;
        assert_eq!(fence.in_flight(), 1);
        let started = tokio::time::Instant::now();
        assert!(fence.close(Duration::from_secs(10)).await);
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(write.await.expect("join").is_ok());
        assert!(
            svc.call(req(http::Method::DELETE)).await.is_err(),
            "closed after draining"
        );
        // A write that never answers is given up on after the drain time.
        let fence = Fence::open_now();
        let mut stuck = fence.layer(Slow {
            delay: Duration::from_secs(3600),
            reached: Arc::new(AtomicUsize::new(0)),
        });
        let _pending = tokio::spawn(stuck.call(req(http::Method::POST)));
        tokio::task::yield_now().await;
        assert!(!fence.close(Duration::from_millis(100)).await);
    }
}
