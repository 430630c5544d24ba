//! `serin cluster`: starts the embedded API server and writes a kubeconfig (network and file I/O).
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Leave pod status to the simulation instead of the server's instant kubelet.
    #[arg(long)]
    pub no_kubelet: bool,
}

/// Runs `serin cluster` until Ctrl-C.
pub fn run(args: ClusterArgs) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serin cluster: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let config = ClusterConfig {
            port: args.port,
            nodes: args.nodes,
            kubelet: !args.no_kubelet,
            ..Default::default()
        };
        let cluster = match start(config).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("serin cluster: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The simulated controllers (src/cluster/sim) hook in here when present; `--no-sim` skips them.
        let _ = args.no_sim;
        if let Err(e) = cluster.write_kubeconfig(&args.kubeconfig) {
            eprintln!("serin cluster: {e}");
            return ExitCode::FAILURE;
        }
        println!(
            "serin cluster: serving {} ; kubeconfig written to {}",
            cluster.url(),
            args.kubeconfig.display()
        );
        println!("  export KUBECONFIG={}", args.kubeconfig.display());
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("serin cluster: waiting for Ctrl-C: {e}");
        }
        cluster.shutdown().await;
        ExitCode::SUCCESS
    })
}
