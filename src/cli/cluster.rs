//! `serin cluster`: starts the embedded API server and writes a kubeconfig (network and file I/O).
use crate::core::text::error_chain;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cluster::sim::{self, SimConfig};
use crate::cluster::{ClusterConfig, start};

/// Arguments of `serin cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Where to write the kubeconfig once the server is ready.
    #[arg(long, default_value = "serin-cluster.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// How many Nodes the simulated controllers create.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Serve the API only, without the simulated workload controllers.
    #[arg(long)]
    pub no_sim: bool,
    /// Instant workloads: Deployments and DaemonSets report a finished rollout as soon as they
    /// are written, with no ReplicaSets or Pods (cheap enough for thousands of canaries, as
    /// `serin bench` runs them).
    #[arg(long, conflicts_with = "no_sim")]
    pub instant_workloads: bool,
    /// Leave pod status to the simulation instead of the server's instant kubelet.
    #[arg(long)]
    pub no_kubelet: bool,
    /// The Kubernetes version to impersonate, `1.<minor>` (default 1.34). `1.24` turns off
    /// server-side field validation, so kubectl validates client-side as against a real 1.24.
    #[arg(long, value_parser = parse_kube_version)]
    pub kube_version: Option<u32>,
}

/// `1.24` (or `v1.24`) → 24.
fn parse_kube_version(s: &str) -> Result<u32, String> {
    s.trim_start_matches('v')
        .strip_prefix("1.")
        .and_then(|m| m.split('.').next())
        .and_then(|m| m.parse().ok())
        .filter(|m| (20..=99).contains(m))
        .ok_or_else(|| format!("expected a Kubernetes version like 1.24, got {s:?}"))
}

/// Runs `serin cluster` until Ctrl-C.
pub fn run(args: ClusterArgs) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin cluster: starting the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let config = ClusterConfig {
            port: args.port,
            nodes: args.nodes,
            kubelet: !args.no_kubelet,
            kube_minor: args.kube_version.unwrap_or(crate::cluster::KUBE_MINOR),
            ..Default::default()
        };
        // The simulated controllers run unless `--no-sim`; their kubelet then owns pod status.
        let started = if args.no_sim {
            start(config)
                .await
                .map(|c| (c, None))
                .map_err(|e| e.to_string())
        } else {
            let sims = SimConfig {
                instant: args.instant_workloads,
                ..SimConfig::default()
            };
            sim::start_cluster(config, sims)
                .await
                .map(|(c, s)| (c, Some(s)))
                .map_err(|e| error_chain(&e))
        };
        let (cluster, sims) = match started {
            Ok(c) => c,
            Err(e) => {
                crate::cli::output::stderr_line(&format!("serin cluster: {e}"));
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = cluster.write_kubeconfig(&args.kubeconfig) {
            crate::cli::output::stderr_line(&format!("serin cluster: {e}"));
            return ExitCode::FAILURE;
        }
        let written = super::output::write_stdout(&format!(
            "serin cluster: serving {} ; kubeconfig written to {}\n  export KUBECONFIG={}\n",
            cluster.url(),
            args.kubeconfig.display(),
            args.kubeconfig.display()
        ));
        // A stdout that cannot be written (a closed pipe) ends the server at once, quietly, as
        // for every command (`cli::output`).
        if written.is_ok()
            && let Err(e) = tokio::signal::ctrl_c().await
        {
            crate::cli::output::stderr_line(&format!("serin cluster: waiting for Ctrl-C: {e}"));
        }
        if let Some(sims) = sims {
            sims.shutdown().await;
        }
        cluster.shutdown().await;
        super::output::finish("serin cluster", written, ExitCode::SUCCESS)
    })
}
