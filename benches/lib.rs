//! Benchmarks of memo; see `cargo bench -p memo-benches`.
