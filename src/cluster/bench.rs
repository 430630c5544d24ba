//! Benchmark of the embedded API server: memory per object and list/watch latencies (network I/O).
