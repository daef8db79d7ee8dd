//! memo-cache side by side with its Rust peers:
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench peers            # the disk stores, full run
//! cargo bench -p memo-cache-bench --bench peers -- --quick # a short one
//! cargo bench -p memo-cache-bench --bench remote           # the Redis tier
//! ```
//!
//! This library holds the work both benches measure.

use serde::{Deserialize, Serialize};

/// The small value of the small-hit and small-store cases.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Small {
    /// An id.
    pub id: u64,
    /// A short name.
    pub name: String,
    /// A score.
    pub score: f64,
    /// A few tags.
    pub tags: Vec<u32>,
}

/// The `i`th small value.
pub fn small(i: u64) -> Small {
    Small {
        id: i,
        name: format!("item-{i:08}"),
        score: i as f64 * 0.25,
        tags: vec![1, 2, 3, i as u32],
    }
}
