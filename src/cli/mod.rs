//! Command-line interface: one submodule per `serin` subcommand; does I/O (files, stdout, network).
use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod bench;
pub mod cluster;
pub mod controller;
pub mod crds;
pub mod demo;
pub mod loadtester;
pub mod manifests;
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
    /// Measure the controller at N canaries on the embedded cluster: memory, idle requests,
    /// rollout time against steps × interval, tick lag and writes per traffic step.
    Bench(bench::BenchArgs),
    /// Serve flagger-loadtester's API (gates, rollback gates, hey/helm/kubectl tasks).
    Loadtester(loadtester::LoadtesterArgs),
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
        Command::Bench(args) => bench::run(args),
    }
}
