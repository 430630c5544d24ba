//! The controller's API client (`serin::controller::client`) against the embedded API server:
//! kube's stack on a pool with few idle connections still serves every request, with the
//! configured headers.
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serin::controller::client::{IDLE_CONNECTIONS, builder};

#[tokio::test]
async fn the_bounded_client_talks_to_the_api_with_the_configured_headers() -> anyhow::Result<()> {
    let cluster = serin::cluster::start(serin::cluster::ClusterConfig::default()).await?;
    let mut config = kube::Config::new(cluster.url().parse()?);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("serin-client-test/1"),
    ));
    let client = builder(&config, IDLE_CONNECTIONS)?.build();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // More requests at once than the pool keeps idle: every one still succeeds.
    let params = ListParams::default();
    let lists = (0..IDLE_CONNECTIONS * 3).map(|_| api.list(&params));
    for r in futures::future::join_all(lists).await {
        r?;
    }
    let counted: u64 = cluster
        .requests()
        .snapshot()
        .iter()
        .filter(|c| c.key.user_agent == "serin-client-test/1")
        .map(|c| c.count)
        .sum();
    assert_eq!(counted, (IDLE_CONNECTIONS * 3) as u64);
    cluster.shutdown().await;
    Ok(())
}
