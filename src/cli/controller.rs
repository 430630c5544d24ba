//! `serin controller`: runs the operator against a cluster (network I/O).
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;

use crate::controller::fence::Fence;
use crate::controller::observe::ObserveConfig;
use crate::target::builders::BuildConfig;

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
    /// Idle connections to the API server the client keeps for reuse (more cost memory after a
    /// burst of reconciles; fewer cost new connections on the next one).
    #[arg(long, env = "SERIN_API_IDLE_CONNECTIONS", default_value_t = crate::controller::client::IDLE_CONNECTIONS)]
    pub api_idle_connections: usize,
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
    /// Leader election among replicas.
    #[command(flatten)]
    pub leader: LeaderElectionArgs,
}

/// Leader election flags: Flagger's `-enable-leader-election` and `-leader-election-namespace`,
/// plus client-go's three timings (shorter than Flagger's 60s/15s/5s, so that a standby takes
/// over within about 12 s of a leader's death; see docs/leader-election.md).
#[derive(Debug, Clone, Args)]
pub struct LeaderElectionArgs {
    /// Elect a leader among replicas on the Lease `serin-leader-election`; only the leader
    /// watches and reconciles. Takes an optional value, as Go's bool flags: `--enable-leader-election`
    /// or `--enable-leader-election=false`.
    #[arg(
        long,
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_leader_election: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else --namespace, else kube-system).
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// How long standbys wait after the Lease last changed before taking it over (whole seconds).
    #[arg(long, default_value = "10s", value_parser = duration_flag)]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps failing to renew before it stops and exits.
    #[arg(long, default_value = "7s", value_parser = duration_flag)]
    pub leader_election_renew_deadline: Duration,
    /// How often the leader renews and standbys look at the Lease.
    #[arg(long, default_value = "2s", value_parser = duration_flag)]
    pub leader_election_retry_period: Duration,
}

impl LeaderElectionArgs {
    /// The timings.
    pub fn timing(&self) -> crate::controller::leader::Timing {
        crate::controller::leader::Timing {
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
        }
    }
}

/// Parses a duration flag: a Go duration (`10s`, `1m30s`, `500ms`) or a bare number of seconds.
fn duration_flag(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("invalid duration {s:?}"))
        };
    }
    crate::api::duration::parse_duration(s).map_err(|e| e.to_string())
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
    // Colours only on a terminal without NO_COLOR: logs redirected to a file stay plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(super::output::stderr_colour())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Builds a client from an explicit kubeconfig path, or infers one.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(
        client_config(kubeconfig, None).await?,
    )?)
}

/// The client configuration from an explicit kubeconfig path, or inferred. The User-Agent is
/// `serin-controller/<version>`, followed by ` (<identity>)` when one is given, so that API
/// servers (and our tests) can tell the operator's calls, and each process's, apart.
pub async fn client_config(
    kubeconfig: Option<&std::path::Path>,
    identity: Option<&str>,
) -> anyhow::Result<kube::Config> {
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
    const AGENT: &str = concat!("serin-controller/", env!("CARGO_PKG_VERSION"));
    let agent = identity
        .and_then(|id| http::HeaderValue::from_str(&format!("{AGENT} ({id})")).ok())
        .unwrap_or(http::HeaderValue::from_static(AGENT));
    config.headers.push((http::header::USER_AGENT, agent));
    Ok(config)
}

/// Runs `serin controller`.
pub fn run(args: ControllerArgs) -> ExitCode {
    init_logging(&args.log_level, args.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!(
                "serin controller: cannot start the runtime: {e}"
            ));
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
        let elect = args.leader.enable_leader_election;
        if elect {
            args.leader.timing().validate()?;
        }
        let identity = crate::controller::leader::identity();
        let kube_config = client_config(args.kubeconfig.as_deref(), Some(&identity)).await?;
        // With leader election every write of the controller goes through a fence that only
        // the elected leader opens; the Lease itself is written through a client of its own.
        let fence = if elect {
            Fence::closed()
        } else {
            Fence::open_now()
        };
        let client = crate::controller::client::builder(&kube_config, args.api_idle_connections)?
            .with_layer(&fence)
            .build();
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
        tracing::info!(
            provider = args.mesh_provider,
            identity,
            leader_election = elect,
            "starting serin controller"
        );
        if !elect {
            crate::controller::run_with(client, config, providers).await?;
            return Ok(());
        }
        let namespace = crate::controller::leader::namespace_from(
            args.leader.leader_election_namespace.clone(),
            std::env::var("POD_NAMESPACE").ok(),
            args.namespace.clone(),
        );
        let elector = crate::controller::leader::Elector::new(
            kube::Client::try_from(kube_config)?,
            &namespace,
            identity,
            args.leader.timing(),
        )?
        .with_fence(fence.clone());
        run_elected(elector, client, fence, config, providers).await
    });
    // Spawned watchers and servers are abandoned rather than awaited.
    rt.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin controller: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// How long a stopping leader waits for its writes under way to be answered.
const WRITE_DRAIN: Duration = Duration::from_secs(2);

/// Why a leader stopped leading.
enum Stop {
    /// The controller ended by itself (its own SIGTERM/SIGINT handling).
    Ended(Result<(), crate::controller::Error>),
    /// The Lease was lost.
    Lost(crate::controller::leader::Loss),
    /// SIGTERM or SIGINT.
    Signal(&'static str),
}

/// Stands by until elected, then runs the controller until leadership ends. Standbys serve
/// /healthz, /readyz and /metrics but make no writes and start no watches. On loss the fence
/// closes first and the process exits non-zero; on SIGTERM/SIGINT the fence closes, writes under
/// way are awaited, and the Lease is released so a standby takes over at once.
async fn run_elected(
    mut elector: crate::controller::leader::Elector,
    client: kube::Client,
    fence: Fence,
    config: crate::controller::Config,
    providers: crate::controller::Providers,
) -> anyhow::Result<()> {
    let telemetry = crate::controller::start_telemetry(&config, &providers);
    telemetry.set_leader(false);
    let mut signal = Box::pin(shutdown_signal());
    tokio::select! {
        () = elector.acquire() => {}
        sig = &mut signal => {
            tracing::info!("{sig} received while standing by: exiting");
            return Ok(());
        }
    }
    fence.open();
    telemetry.set_leader(true);
    // Fused: when the controller ends first (its own SIGTERM handling can win the race), the
    // drain below must not poll the finished future again.
    let run = crate::controller::run_with_telemetry(client, config, providers, telemetry.clone());
    let mut run = Box::pin(futures::FutureExt::fuse(run));
    let stop = tokio::select! {
        r = &mut run => Stop::Ended(r),
        loss = elector.keep_leading() => Stop::Lost(loss),
        sig = &mut signal => Stop::Signal(sig),
    };
    // Stop writing before anything else; keep the controller polled meanwhile so that the
    // writes already sent are answered (not abandoned on a connection) before the Lease goes.
    let drained = {
        let close = fence.close(WRITE_DRAIN);
        tokio::pin!(close);
        tokio::select! {
            drained = &mut close => drained,
            _ = &mut run => close.await,
        }
    };
    drop(run);
    telemetry.set_leader(false);
    if !drained {
        tracing::warn!("writes still unanswered after {WRITE_DRAIN:?}");
    }
    let result = match stop {
        Stop::Lost(loss) => {
            anyhow::bail!(
                "leadership lost ({loss}); exiting so that this process restarts as a standby"
            )
        }
        Stop::Signal(sig) => {
            tracing::info!("{sig} received: releasing the lease");
            Ok(())
        }
        Stop::Ended(r) => r.map_err(anyhow::Error::from),
    };
    if let Err(e) = elector.release().await {
        tracing::warn!("{e}; a standby takes over once the lease expires");
    }
    result
}

/// Resolves on the first SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Builds the Prometheus-backed metrics checker and probes `--metrics-server` in the background:
/// as in Flagger, an unreachable server is only logged (canaries may name their own servers).
fn metrics_checker(
    client: &kube::Client,
    args: &ControllerArgs,
) -> anyhow::Result<std::sync::Arc<dyn crate::metrics::MetricsChecker>> {
    let analyzer = std::sync::Arc::new(
        crate::metrics::Analyzer::new(
            crate::metrics::KubeObjects(client.clone()),
            args.metrics_server.clone(),
            args.mesh_provider.clone(),
        )?
        .with_kube(client.clone()),
    );
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
    const LONG: [&str; 32] = [
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
        "enable-leader-election",
        "leader-election-namespace",
        "leader-election-lease-duration",
        "leader-election-renew-deadline",
        "leader-election-retry-period",
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

    fn controller_args(flags: &[&str]) -> ControllerArgs {
        let argv = ["serin", "controller"]
            .iter()
            .chain(flags)
            .map(|s| s.to_string());
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(normalize_flagger_flags(argv))
            .expect("flags parse");
        match cli.command {
            crate::cli::Command::Controller(a) => *a,
            _ => unreachable!("controller subcommand"),
        }
    }

    #[test]
    fn leader_election_is_off_by_default_and_takes_flaggers_spellings() {
        let off = controller_args(&[]);
        assert!(!off.leader.enable_leader_election);
        assert_eq!(
            off.leader.timing(),
            crate::controller::leader::Timing::default()
        );
        assert!(
            controller_args(&["--enable-leader-election"])
                .leader
                .enable_leader_election
        );
        let flagger = controller_args(&[
            "-enable-leader-election=true",
            "-leader-election-namespace=flagger-system",
            "-port",
            "9090",
        ]);
        assert!(flagger.leader.enable_leader_election);
        assert_eq!(
            flagger.leader.leader_election_namespace.as_deref(),
            Some("flagger-system")
        );
        assert!(
            !controller_args(&["--enable-leader-election=false"])
                .leader
                .enable_leader_election
        );
        let timings = controller_args(&[
            "--leader-election-lease-duration=15s",
            "--leader-election-renew-deadline",
            "1m",
            "--leader-election-retry-period=500ms",
        ]);
        assert_eq!(
            timings.leader.timing(),
            crate::controller::leader::Timing {
                lease_duration: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(60),
                retry_period: Duration::from_millis(500),
            }
        );
        assert_eq!(duration_flag("3"), Ok(Duration::from_secs(3)));
        assert!(duration_flag("soon").is_err());
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
