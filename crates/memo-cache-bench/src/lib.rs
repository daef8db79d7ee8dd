//! memo-cache side by side with its Rust peers:
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench peers            # the disk stores, full run
//! cargo bench -p memo-cache-bench --bench peers -- --quick # a short one
//! cargo bench -p memo-cache-bench --bench remote           # the Redis tier
//! ```
//!
//! This library holds the work both benches measure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The median of `samples` (the upper one of an even count).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median of `samples` in seconds (the upper one of an even count).
pub fn median_secs(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The Python peers' interpreter: `MEMO_BENCH_PYTHON`, else the virtual environment
/// `scripts/python-peers.sh` makes (joblib, diskcache and numpy from PyPI; made on first use,
/// under `$CARGO_TARGET_DIR/python-peers`, else `target/python-peers`).
pub fn python_peers() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("MEMO_BENCH_PYTHON") {
        return Ok(python.into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python-peers.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(stdout.lines().last().unwrap_or("").trim()))
}

/// `len` bytes that look random to a compressor (splitmix64 from a fixed seed): the large-bytes
/// cases compare raw stores, as the Python peers' `rng.integers(0, 256, n, dtype=uint8)` does,
/// not how well a patterned buffer compresses.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
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
