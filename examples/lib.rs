//! Examples of memo live beside this file; see `cargo run --release --example quickstart`.
