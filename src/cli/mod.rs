//! Command-line interface: one submodule per `serin` subcommand; does I/O (files, stdout, network).
use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::core::plan::requests::Verb;

pub mod cluster;
pub mod controller;
pub mod crds;
pub mod demo;
pub mod loadtester;
pub mod manifests;
pub mod output;
pub mod plugin;
pub mod query;
pub mod validate;

/// Serin: progressive delivery for Kubernetes, API-compatible with Flagger.
#[derive(Debug, Parser)]
#[command(name = "serin", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lint Canary, MetricTemplate and AlertProvider manifests offline.
    Validate(validate::ValidateArgs),
    /// Print the CustomResourceDefinitions Serin serves (flagger.app/v1beta1).
    Crds(crds::CrdsArgs),
    /// Print the install bundle (deploy/install.yaml), or write every generated file of deploy/
    /// and charts/serin/ with `--write .`.
    Manifests(manifests::ManifestsArgs),
    /// Run the embedded Kubernetes-compatible API server with simulated workloads.
    Cluster(cluster::ClusterArgs),
    /// Run a real progressive delivery on the embedded cluster, with live traffic and Prometheus.
    Demo(demo::DemoArgs),
    /// Run the canary controller against a cluster.
    Controller(Box<controller::ControllerArgs>),
    /// Run one metric of a Canary once against its real provider and print the query, value and
    /// outcome (exit 0 Pass, 1 Fail or NoData, 2 Error).
    Query(query::QueryArgs),
    /// Serve flagger-loadtester's API (gates, rollback gates, hey/helm/kubectl tasks).
    Loadtester(loadtester::LoadtesterArgs),
    /// List Canaries: phase, weight, failed checks, iteration, last check, age.
    Get(plugin::get::GetArgs),
    /// Show one Canary: phase, traffic split, checks, gates, what it waits for, last events.
    Status(plugin::status::StatusArgs),
    /// Ask the controller to skip the rest of the analysis and promote the current revision.
    Promote(plugin::request::RequestArgs),
    /// Ask the controller to roll the current run back now.
    Abort(plugin::request::RequestArgs),
    /// Ask the controller to run a Failed revision again.
    Retry(plugin::request::RequestArgs),
    /// Ask the controller to hold the current run at its step (no weight changes, no analysis).
    Pause(plugin::request::RequestArgs),
    /// Ask the controller to continue a paused run.
    Resume(plugin::request::RequestArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Crds(args) => crds::run(args),
        Command::Manifests(args) => manifests::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Controller(args) => controller::run(*args),
        Command::Loadtester(args) => loadtester::run(args),
        Command::Query(args) => query::run(args),
        Command::Get(args) => plugin::get::run(args),
        Command::Status(args) => plugin::status::run(args),
        Command::Promote(args) => plugin::request::run(Verb::Promote, args),
        Command::Abort(args) => plugin::request::run(Verb::Abort, args),
        Command::Retry(args) => plugin::request::run(Verb::Retry, args),
        Command::Pause(args) => plugin::request::run(Verb::Pause, args),
        Command::Resume(args) => plugin::request::run(Verb::Resume, args),
    }
}

/// Parses a command line; invoked as `kubectl-serin` (the kubectl plugin), help and errors
/// name the command `kubectl serin`.
pub fn parse<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let argv0 = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Cli::command();
    if plugin::invoked_as_plugin(&argv0) {
        cmd = cmd.bin_name("kubectl serin");
    }
    let matches = cmd.get_matches_from(args);
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_serin_get_runs_serin_get() {
        let cli = parse(["/usr/local/bin/kubectl-serin", "get", "-A"]);
        assert!(matches!(cli.command, Command::Get(a) if a.all_namespaces));
        let cli = parse([
            "kubectl-serin",
            "promote",
            "podinfo",
            "-n",
            "shop",
            "--context",
            "prod",
        ]);
        assert!(matches!(
            cli.command,
            Command::Promote(a) if a.name == "podinfo"
                && a.kube.namespace.as_deref() == Some("shop")
                && a.kube.context.as_deref() == Some("prod")
        ));
    }
}
