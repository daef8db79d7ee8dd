//! memo-cache side by side with its Rust peers:
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench peers            # the disk stores, full run
//! cargo bench -p memo-cache-bench --bench peers -- --quick # a short one
//! cargo bench -p memo-cache-bench --bench remote           # the Redis tier
//! ```
//!
//! This library holds the work both benches measure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The median of `samples` (the upper one of an even count).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

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
