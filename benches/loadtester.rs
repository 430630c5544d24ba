//! Benchmark of `serin loadtester`'s native `hey` engine against a local hello-world server
//! sharing the same two-thread runtime (the 2-core budget). Prints requests/s and latency
//! percentiles; run with `cargo bench --bench loadtester`.
use serin::loadtester::hey;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    serin::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback(|| async { "Hello from the benchmark target" });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!("serin loadtester hey engine, target http://{addr}/ (same process), runtime threads: 2, cores: {cores}");
        for cmd in [
            format!("hey -z 5s -c 50 http://{addr}/"),
            format!("hey -z 5s -c 10 http://{addr}/"),
            format!("hey -z 5s -c 10 -q 200 http://{addr}/"),
        ] {
            let args = hey::parse(&cmd)?;
            // Warm the connection pool, then measure.
            let mut warm = args.clone();
            warm.duration = Some(Duration::from_millis(500));
            hey::run(&warm).await?;
            let r = hey::run(&args).await?;
            let p = |q| r.percentile(q).map(|s| s * 1000.0).unwrap_or(f64::NAN);
            println!(
                "{cmd}\n  requests: {}  errors: {}  requests/s: {:.0}  latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                r.count(),
                r.errors.values().sum::<u64>(),
                r.rps(),
                p(50.0),
                p(90.0),
                p(99.0),
                p(100.0),
            );
        }
        anyhow::Ok(())
    })
}
