//! memo-cache side by side with its Rust peers; the benchmark is `benches/peers.rs`:
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench peers            # full run
//! cargo bench -p memo-cache-bench --bench peers -- --quick # a short one
//! ```
