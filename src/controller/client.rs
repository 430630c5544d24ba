//! The controller's API client: kube's client stack on a connection pool that keeps few idle
//! connections. Builds the client only; the I/O happens when it is used.
//!
//! kube's default client keeps every HTTP/1 connection it opened idle for 90 s. A burst of N
//! concurrent reconciles (every Canary's first reconcile, or a rollout of every Canary at once)
//! opens up to N connections, and the pool then holds N idle sockets, each with its buffers and
//! task, long after the burst. Capping the idle connections lets that memory go with the burst;
//! requests are never limited.
use http::{Request, Response};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// How many idle connections to the API server the pool keeps by default
/// (`--api-idle-connections`).
pub const IDLE_CONNECTIONS: usize = 16;

/// The boxed service stack a client is built on (the one kube's own builder returns).
pub type Stack = BoxService<Request<Body>, Response<Box<DynBody>>, BoxError>;

/// kube's client stack (TLS, connect/read/write timeouts, base URI, retries of 429/503/504,
/// auth, extra headers) on a hyper client that keeps at most `idle` idle connections. A proxy or an exec credential plugin keeps kube's own builder, which handles them.
pub fn builder(config: &kube::Config, idle: usize) -> Result<ClientBuilder<Stack>, kube::Error> {
    if config.proxy_url.is_some() || config.auth_info.exec.is_some() {
        return ClientBuilder::try_from(config.clone());
    }
    let https = config.rustls_https_connector()?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http: HyperClient<_, Body> = HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle)
        .build(connector);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http)
        .map_response(|res| {
            res.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        })
        .boxed();
    Ok(ClientBuilder::new(
        service,
        config.default_namespace.clone(),
    ))
}
