//! `cargo bench --bench cluster_sim`: convergence and rollout times of the simulated controllers.
fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    for (count, replicas) in [(1, 3), (20, 3)] {
        println!(
            "{}",
            rt.block_on(serin::cluster::sim::bench::run(count, replicas))?
        );
    }
    Ok(())
}
