//! Alerts to chat and webhook destinations behind [`Notifier`]; [`ProviderNotifier`] reads
//! AlertProviders and Secrets from the API and POSTs to them (network I/O).
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::time::Duration;

use crate::api::Canary;
use crate::api::alert_provider::AlertProvider;
use crate::core::AlertSeverity;
use crate::core::text::{body_prefix, error_chain, redact};

pub mod payload;

pub use payload::{Kind, Message};

/// Flagger's notifier timeout.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Notifier errors; variants name the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the AlertProvider failed.
    #[error("cannot read AlertProvider {0}: {1}")]
    GetProvider(String, #[source] kube::Error),
    /// Reading the provider's Secret failed.
    #[error("cannot read Secret {0}: {1}")]
    GetSecret(String, #[source] kube::Error),
    /// The provider is unusable (unknown type, no address, bad key).
    #[error("AlertProvider {0}: {1}")]
    InvalidProvider(String, String),
    /// The HTTP client (or its proxy) could not be built.
    #[error("cannot build the notifier HTTP client: {0}")]
    BuildClient(String),
    /// The POST failed or was answered with a non-2xx status.
    #[error("POST {url} failed: {detail}")]
    Post {
        /// Scheme and host only: chat webhook paths are secrets.
        url: String,
        /// Status and body, or the transport error.
        detail: String,
    },
}

impl Error {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::GetProvider(..) => "GetProvider",
            Self::GetSecret(..) => "GetSecret",
            Self::InvalidProvider(..) => "InvalidProvider",
            Self::BuildClient(_) => "BuildClient",
            Self::Post { .. } => "Post",
        }
    }
}

/// Sends a canary's alerts to its AlertProviders (or the global notifier).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one alert; failures are logged and counted by the implementation, never returned:
    /// a notification must not block the analysis.
    async fn alert(&self, canary: &Canary, severity: AlertSeverity, message: &str);

    /// The delivered and failed counters, for the controller's `/metrics` (`None`: not counted).
    fn delivery_counters(&self) -> Option<DeliveryCounters> {
        None
    }
}

/// Alerts delivered and alerts that could not be delivered, as exported on `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct DeliveryCounters {
    /// Delivered alerts.
    pub delivered: prometheus_client::metrics::counter::Counter,
    /// Alerts that could not be delivered (provider missing, Secret missing, POST failed).
    pub failed: prometheus_client::metrics::counter::Counter,
}

/// A notifier that only logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn alert(&self, canary: &Canary, severity: AlertSeverity, message: &str) {
        tracing::info!(
            canary = canary.metadata.name.as_deref().unwrap_or_default(),
            ?severity,
            "alert: {message}"
        );
    }
}

/// A resolved destination: what to POST, where, through which proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// Body shape.
    pub kind: Kind,
    /// The URL (a secret for most chat services; never logged).
    pub address: String,
    /// Channel (Slack-shaped payloads).
    pub channel: String,
    /// User name (Slack-shaped payloads).
    pub username: String,
    /// HTTP(S) proxy.
    pub proxy: Option<String>,
    /// Bearer token (Slack bot tokens); never logged.
    pub token: Option<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("kind", &self.kind)
            .field("address", &host_only(&self.address))
            .field("channel", &self.channel)
            .field("username", &self.username)
            .field("proxy", &self.proxy.as_deref().map(redact))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Scheme, host and port of a URL: chat webhook URLs carry their secret in the path.
pub fn host_only(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<invalid url>".into(),
    }
}

/// Resolves an AlertProvider (and its Secret, if it names one) into a destination: the Secret's
/// `address` overrides the spec's, its `token` becomes a bearer token.
pub fn resolve(provider: &AlertProvider, secret: Option<&Secret>) -> Result<Destination, Error> {
    let name = provider.metadata.name.clone().unwrap_or_default();
    let invalid = |why: String| Error::InvalidProvider(name.clone(), why);
    let spec = &provider.spec;
    let kind: Kind = spec
        .type_
        .parse()
        .map_err(|e: payload::UnknownKind| invalid(e.to_string()))?;
    let key = |k: &str| -> Result<Option<String>, Error> {
        let Some(s) = secret else { return Ok(None) };
        let raw = s
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|v| v.clone().into_bytes())
            });
        raw.map(|b| {
            String::from_utf8(b)
                .map(|v| v.trim().to_string())
                .map_err(|_| invalid(format!("secret key {k} is not UTF-8")))
        })
        .transpose()
    };
    let address = match key("address")? {
        Some(a) if !a.is_empty() => a,
        _ if secret.is_some() => return Err(invalid("the secret has no address key".into())),
        _ => spec.address.clone().unwrap_or_default(),
    };
    if address.is_empty() {
        return Err(invalid("no address".into()));
    }
    Ok(Destination {
        kind,
        address,
        channel: spec
            .channel
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "general".into()),
        username: spec
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "flagger".into()),
        proxy: spec.proxy.clone().filter(|p| !p.is_empty()),
        token: key("token")?.filter(|t| !t.is_empty()),
    })
}

/// Whether an alert configured at `min` receives a message of `severity` (`info` receives all,
/// `warn` receives warn and error, `error` only error).
pub fn delivers(min: AlertSeverity, severity: AlertSeverity) -> bool {
    severity >= min
}

/// POSTs one message; non-2xx is an error.
pub async fn send(dest: &Destination, message: &Message) -> Result<(), Error> {
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("serin/", env!("CARGO_PKG_VERSION")))
        .timeout(TIMEOUT);
    if let Some(p) = &dest.proxy {
        let proxy = reqwest::Proxy::all(p.as_str())
            .map_err(|e| Error::BuildClient(format!("proxy {}: {}", redact(p), e.without_url())))?;
        builder = builder.proxy(proxy);
    }
    let client = builder
        .build()
        .map_err(|e| Error::BuildClient(error_chain(&e)))?;
    let url = payload::endpoint(dest.kind, &dest.address);
    let body = payload::body(dest.kind, message, &dest.channel, &dest.username);
    let mut req = client.post(&url).json(&body);
    if let Some(t) = &dest.token {
        req = req.bearer_auth(t);
    }
    let shown = host_only(&url);
    let resp = req.send().await.map_err(|e| Error::Post {
        url: shown.clone(),
        detail: error_chain(&e.without_url()),
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    Err(Error::Post {
        url: shown,
        detail: format!("status {}: {}", status.as_u16(), body_prefix(&bytes)),
    })
}

/// Sends alerts as Flagger does: to the canary's `analysis.alerts` (severity-filtered), or to
/// the global notifier when the canary lists none.
#[derive(Clone)]
pub struct ProviderNotifier {
    client: Option<kube::Client>,
    global: Option<Destination>,
    cluster_name: String,
    counters: DeliveryCounters,
}

impl ProviderNotifier {
    /// `client` reads AlertProviders and Secrets (none: only the global notifier works).
    pub fn new(
        client: Option<kube::Client>,
        global: Option<Destination>,
        cluster_name: impl Into<String>,
    ) -> Self {
        Self {
            client,
            global,
            cluster_name: cluster_name.into(),
            counters: DeliveryCounters::default(),
        }
    }

    /// Notifications delivered so far.
    pub fn sent(&self) -> u64 {
        self.counters.delivered.get()
    }

    /// Notifications that could not be delivered so far.
    pub fn failed(&self) -> u64 {
        self.counters.failed.get()
    }

    async fn destination(
        &self,
        canary_ns: &str,
        alert: &crate::api::canary::CanaryAlert,
    ) -> Result<Destination, Error> {
        let ns = alert
            .provider_ref
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| canary_ns.to_string());
        let name = &alert.provider_ref.name;
        let Some(client) = &self.client else {
            return Err(Error::InvalidProvider(
                format!("{name}.{ns}"),
                "no API client to read it".into(),
            ));
        };
        let provider = Api::<AlertProvider>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .map_err(|e| Error::GetProvider(format!("{name}.{ns}"), e))?;
        let secret = match &provider.spec.secret_ref {
            Some(r) => Some(
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .get(&r.name)
                    .await
                    .map_err(|e| Error::GetSecret(format!("{}.{ns}", r.name), e))?,
            ),
            None => None,
        };
        resolve(&provider, secret.as_ref())
    }

    fn count(&self, canary: &Canary, target: &str, r: Result<(), Error>) {
        match r {
            Ok(()) => {
                self.counters.delivered.inc();
            }
            Err(e) => {
                self.counters.failed.inc();
                tracing::warn!(
                    canary = canary.metadata.name.as_deref().unwrap_or_default(),
                    namespace = canary.metadata.namespace.as_deref().unwrap_or_default(),
                    alert = target,
                    category = e.category(),
                    "alert not delivered: {e}"
                );
            }
        }
    }
}

#[async_trait]
impl Notifier for ProviderNotifier {
    fn delivery_counters(&self) -> Option<DeliveryCounters> {
        Some(self.counters.clone())
    }

    async fn alert(&self, canary: &Canary, severity: AlertSeverity, text: &str) {
        let message = Message {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            text: text.to_string(),
            severity,
            fields: payload::fields(canary, &self.cluster_name, text),
        };
        let alerts = canary.spec.alerts();
        if alerts.is_empty() {
            if let Some(g) = &self.global {
                self.count(canary, "global", send(g, &message).await);
            }
            return;
        }
        for alert in alerts {
            let min = AlertSeverity::parse_or_info(alert.severity_or_default());
            if !delivers(min, severity) {
                continue;
            }
            let r = match self.destination(&message.namespace, alert).await {
                Ok(dest) => send(&dest, &message).await,
                Err(e) => Err(e),
            };
            self.count(canary, &alert.name, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::alert_provider::AlertProviderSpec;
    use crate::api::metric_template::SecretRef;
    use k8s_openapi::ByteString;

    fn provider(spec: AlertProviderSpec) -> AlertProvider {
        AlertProvider::new("on-call", spec)
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn severity_filtering_follows_the_documentation() {
        use AlertSeverity::*;
        assert!(delivers(Info, Info) && delivers(Info, Warn) && delivers(Info, Error));
        assert!(!delivers(Warn, Info) && delivers(Warn, Warn) && delivers(Warn, Error));
        assert!(!delivers(Error, Info) && !delivers(Error, Warn) && delivers(Error, Error));
    }

    #[test]
    fn the_secret_address_and_token_override_the_spec() {
        let p = provider(AlertProviderSpec {
            type_: "slack".into(),
            address: Some("https://spec.example/x".into()),
            secret_ref: Some(SecretRef { name: "s".into() }),
            ..Default::default()
        });
        let d = resolve(
            &p,
            Some(&secret(&[
                ("address", "https://secret.example/y\n"),
                ("token", "xoxb"),
            ])),
        )
        .expect("resolves");
        assert_eq!(d.address, "https://secret.example/y");
        assert_eq!(d.token.as_deref(), Some("xoxb"));
        assert_eq!(
            (d.channel.as_str(), d.username.as_str()),
            ("general", "flagger")
        );
        let shown = format!("{d:?}");
        assert!(!shown.contains("/y") && !shown.contains("xoxb"), "{shown}");
    }

    #[test]
    fn a_provider_without_any_address_is_rejected() {
        let p = provider(AlertProviderSpec {
            type_: "msteams".into(),
            ..Default::default()
        });
        assert!(matches!(resolve(&p, None), Err(Error::InvalidProvider(..))));
        let p = provider(AlertProviderSpec {
            type_: "msteams".into(),
            secret_ref: Some(SecretRef { name: "s".into() }),
            ..Default::default()
        });
        assert!(resolve(&p, Some(&secret(&[("token", "t")]))).is_err());
    }

    #[test]
    fn unknown_types_are_rejected_by_name() {
        let p = provider(AlertProviderSpec {
            type_: "pager".into(),
            address: Some("https://x".into()),
            ..Default::default()
        });
        let e = resolve(&p, None).expect_err("unknown");
        assert!(e.to_string().contains("\"pager\""), "{e}");
    }
}
