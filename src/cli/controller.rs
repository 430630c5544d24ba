//! `serin controller`: runs the operator against a cluster (network I/O).
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;

use crate::controller::builders::BuildConfig;
use crate::controller::observe::ObserveConfig;

/// Arguments of `serin controller`. Flagger's single-dash spellings (`-mesh-provider`) work too.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Namespace to watch (default: all).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Default traffic provider for Canaries without spec.provider.
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Default Prometheus address for builtin checks, inline queries and MetricTemplates without
    /// an address (probed at startup; a failure is only logged).
    #[arg(long, default_value = "http://prometheus:9090")]
    pub metrics_server: String,
    /// Labels that may carry the workload selector, in order of preference.
    #[arg(
        long,
        default_value = "app,name,app.kubernetes.io/name",
        value_delimiter = ','
    )]
    pub selector_labels: Vec<String>,
    /// Label prefixes copied to primaries (`*` = all).
    #[arg(long, default_value = "", value_delimiter = ',')]
    pub include_label_prefix: Vec<String>,
    /// Track ConfigMaps and Secrets referenced by targets.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_config_tracking: bool,
    /// Cluster name shown in alerts.
    #[arg(long, default_value = "")]
    pub cluster_name: String,
    /// Port for /healthz, /readyz and /metrics (0 disables the server).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Smallest analysis interval, in seconds (Flagger: 10). Lower it for tests and demos.
    #[arg(long, default_value_t = 10.0)]
    pub min_interval: f64,
    /// Annotation prefix of the NGINX ingress controller.
    #[arg(long, default_value = "nginx.ingress.kubernetes.io")]
    pub ingress_annotations_prefix: String,
    /// Ingress class Contour HTTPProxies are annotated with.
    #[arg(long, default_value = "")]
    pub ingress_class: String,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Global notifier and event webhook.
    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// Flagger's global notifier and event webhook flags (env vars as in Flagger; a flag given on the
/// command line wins over its env var).
#[derive(Debug, Clone, Default, Args)]
pub struct NotifyArgs {
    /// Slack incoming webhook URL for canaries without `analysis.alerts`.
    #[arg(long, env = "SLACK_URL", default_value = "", hide_env_values = true)]
    pub slack_url: String,
    /// Slack bot token (sent as a bearer token).
    #[arg(long, env = "SLACK_TOKEN", default_value = "", hide_env_values = true)]
    pub slack_token: String,
    /// Proxy for Slack calls.
    #[arg(
        long,
        env = "SLACK_PROXY_URL",
        default_value = "",
        hide_env_values = true
    )]
    pub slack_proxy_url: String,
    /// Slack user name.
    #[arg(long, default_value = "flagger")]
    pub slack_user: String,
    /// Slack channel (required for the Slack notifier).
    #[arg(long, default_value = "")]
    pub slack_channel: String,
    /// MS Teams connector URL (wins over Slack when both are set).
    #[arg(long, env = "MSTEAMS_URL", default_value = "", hide_env_values = true)]
    pub msteams_url: String,
    /// Proxy for MS Teams calls.
    #[arg(
        long,
        env = "MSTEAMS_PROXY_URL",
        default_value = "",
        hide_env_values = true
    )]
    pub msteams_proxy_url: String,
    /// Receives every event of canaries without `event` webhooks.
    #[arg(
        long,
        env = "EVENT_WEBHOOK_URL",
        default_value = "",
        hide_env_values = true
    )]
    pub event_webhook: String,
}

impl NotifyArgs {
    /// The global notifier, as Flagger picks it: MS Teams if set, else Slack if it has a channel.
    pub fn global(&self) -> Option<crate::notifier::Destination> {
        use crate::notifier::{Destination, Kind};
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        if !self.msteams_url.is_empty() {
            return Some(Destination {
                kind: Kind::MsTeams,
                address: self.msteams_url.clone(),
                channel: String::new(),
                username: String::new(),
                proxy: some(&self.msteams_proxy_url),
                token: None,
            });
        }
        if self.slack_url.is_empty() {
            return None;
        }
        if self.slack_channel.is_empty() {
            tracing::warn!("--slack-url is set without --slack-channel: Slack notifier disabled");
            return None;
        }
        Some(Destination {
            kind: Kind::Slack,
            address: self.slack_url.clone(),
            channel: self.slack_channel.clone(),
            username: self.slack_user.clone(),
            proxy: some(&self.slack_proxy_url),
            token: some(&self.slack_token),
        })
    }
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up tracing once per process.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("serin={level},kube=warn,warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Builds a client from an explicit kubeconfig path, or infers one.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    crate::install_crypto_provider();
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    // A distinct User-Agent lets API servers (and our tests) tell the operator's calls apart.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("serin-controller/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(kube::Client::try_from(config)?)
}

/// Runs `serin controller`.
pub fn run(args: ControllerArgs) -> ExitCode {
    init_logging(&args.log_level, args.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serin controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        if let Err(e) = args.mesh_provider.parse::<crate::api::Provider>() {
            anyhow::bail!("--mesh-provider: {e}");
        }
        if !(args.min_interval > 0.0 && args.min_interval.is_finite()) {
            anyhow::bail!("--min-interval must be a positive number of seconds");
        }
        let client = client(args.kubeconfig.as_deref()).await?;
        let config = crate::controller::Config {
            observe: ObserveConfig {
                mesh_provider: args.mesh_provider.clone(),
                min_interval: Duration::from_secs_f64(args.min_interval),
                build: BuildConfig {
                    selector_labels: args.selector_labels.clone(),
                    include_label_prefix: args
                        .include_label_prefix
                        .iter()
                        .filter(|p| !p.is_empty())
                        .cloned()
                        .collect(),
                },
                config_tracking: args.enable_config_tracking,
            },
            namespace: args.namespace.clone(),
            listen: (args.port != 0).then(|| std::net::SocketAddr::from(([0, 0, 0, 0], args.port))),
        };
        let event_webhook = Some(args.notify.event_webhook.clone()).filter(|u| !u.is_empty());
        let providers = crate::controller::Providers {
            webhooks: std::sync::Arc::new(crate::webhook::HttpWebhooks::new(event_webhook)?),
            notifier: std::sync::Arc::new(crate::notifier::ProviderNotifier::new(
                Some(client.clone()),
                args.notify.global(),
                args.cluster_name.clone(),
            )),
            metrics: metrics_checker(&client, &args)?,
            routers: crate::router::RouterConfig {
                ingress_annotations_prefix: Some(args.ingress_annotations_prefix.clone()),
                ingress_class: Some(args.ingress_class.clone()).filter(|c| !c.is_empty()),
            },
        };
        tracing::info!(provider = args.mesh_provider, "starting serin controller");
        crate::controller::run_with(client, config, providers).await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serin controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the Prometheus-backed metrics checker and probes `--metrics-server` in the background:
/// as in Flagger, an unreachable server is only logged (canaries may name their own servers).
fn metrics_checker(
    client: &kube::Client,
    args: &ControllerArgs,
) -> anyhow::Result<std::sync::Arc<dyn crate::metrics::MetricsChecker>> {
    let analyzer = std::sync::Arc::new(crate::metrics::Analyzer::new(
        crate::metrics::KubeObjects(client.clone()),
        args.metrics_server.clone(),
        args.mesh_provider.clone(),
    )?);
    let probe = analyzer.clone();
    let server = args.metrics_server.clone();
    tokio::spawn(async move {
        match probe.probe_default_server().await {
            Ok(()) => tracing::info!(server, "metrics server is reachable"),
            Err(e) => tracing::warn!(
                server,
                "metrics server probe failed: {e}; metric checks that use it will report Error until it answers"
            ),
        }
    });
    Ok(analyzer)
}

/// Rewrites Flagger's single-dash long flags (`-mesh-provider=x`) to clap's `--mesh-provider=x`.
pub fn normalize_flagger_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const LONG: [&str; 27] = [
        // serin loadtester (flagger-loadtester's flags)
        "timeout",
        "log-cmd-output",
        "namespace-regexp",
        "enable-types",
        "slack-url",
        "slack-token",
        "slack-proxy-url",
        "slack-user",
        "slack-channel",
        "msteams-url",
        "msteams-proxy-url",
        "event-webhook",
        "kubeconfig",
        "namespace",
        "mesh-provider",
        "metrics-server",
        "selector-labels",
        "include-label-prefix",
        "enable-config-tracking",
        "cluster-name",
        "port",
        "log-level",
        "log-format",
        "min-interval",
        "ingress-annotations-prefix",
        "ingress-class",
        "version",
    ];
    args.into_iter()
        .map(|a| {
            let name = a.strip_prefix('-').filter(|r| !r.starts_with('-'));
            match name {
                Some(rest) if LONG.contains(&rest.split('=').next().unwrap_or_default()) => {
                    format!("-{a}")
                }
                _ => a,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagger_single_dash_flags_become_double_dash() {
        let got = normalize_flagger_flags(
            [
                "serin",
                "controller",
                "-mesh-provider=kubernetes",
                "-port",
                "9090",
                "-v",
            ]
            .map(String::from),
        );
        assert_eq!(
            got,
            vec![
                "serin",
                "controller",
                "--mesh-provider=kubernetes",
                "--port",
                "9090",
                "-v"
            ]
        );
    }

    fn notify(pairs: &[(&str, &str)]) -> NotifyArgs {
        let mut n = NotifyArgs {
            slack_user: "flagger".into(),
            ..Default::default()
        };
        for (k, v) in pairs {
            let v = v.to_string();
            match *k {
                "slack-url" => n.slack_url = v,
                "slack-channel" => n.slack_channel = v,
                "msteams-url" => n.msteams_url = v,
                "slack-proxy-url" => n.slack_proxy_url = v,
                _ => unreachable!("test key"),
            }
        }
        n
    }

    #[test]
    fn msteams_wins_over_slack_and_slack_needs_a_channel() {
        use crate::notifier::Kind;
        let both = notify(&[
            ("slack-url", "https://s"),
            ("slack-channel", "c"),
            ("msteams-url", "https://t"),
        ]);
        assert_eq!(both.global().map(|d| d.kind), Some(Kind::MsTeams));
        let slack = notify(&[
            ("slack-url", "https://s"),
            ("slack-channel", "c"),
            ("slack-proxy-url", "http://p"),
        ]);
        let d = slack.global().expect("slack");
        assert_eq!(
            (d.kind, d.channel.as_str(), d.username.as_str()),
            (Kind::Slack, "c", "flagger")
        );
        assert_eq!(d.proxy.as_deref(), Some("http://p"));
        assert!(notify(&[("slack-url", "https://s")]).global().is_none());
        assert!(notify(&[]).global().is_none());
    }
}
