//! `cargo bench --bench cluster`: memory and list/watch latencies of the embedded API server.
fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serin::cluster::bench::run(&[1_000, 10_000], 10_000))?;
    Ok(())
}
