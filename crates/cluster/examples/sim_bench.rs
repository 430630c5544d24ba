//! Scale run of the simulated controllers: `cargo run --release -p serin-cluster --example
//! sim_bench -- 1000 [replicas] [services]` creates that many Deployments (one Service each unless
//! `services` is `no`), waits until all are available, rolls all of them out, and prints the times
//! and the process RSS (run one size per process, so the peak RSS is that size's).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let replicas: i32 = args.next().as_deref().unwrap_or("1").parse()?;
    let services = args.next().as_deref() != Some("no");
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "{}",
        rt.block_on(serin_cluster::sim::bench::run_with(
            count, replicas, services
        ))?
    );
    Ok(())
}
