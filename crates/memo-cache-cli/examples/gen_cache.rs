//! Generates a large cache for benchmarking the CLI (see BENCHMARKS.md):
//!
//! ```text
//! cargo run --release -p memo-cache-rs-cli --example gen_cache -- DIR [ENTRIES]
//! ```
//!
//! Storing a million entries one `put` (one transaction) each takes far too long, so the library
//! creates the cache and one entry per function (the schema and the function rows), and the
//! rest are inserted with rusqlite in one transaction, exactly as `put` would write them: keys
//! from `Function::key`, values encoded by `memo_cache::codec` and kept inline, blake3 hashes of
//! the stored bytes. The triggers keep the per-function totals, as for any insert.
//!
//! Ten functions share the entries; last-use times are spread over 30 days in an order unrelated
//! to the keys or insertion; one entry in a hundred has an expiry, half of those past.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memo_cache::{Cache, Function, INDEX_FILE, codec};
use rusqlite::params;

const FUNCTIONS: u64 = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: gen_cache DIR [ENTRIES]")?);
    let total: u64 = args
        .next()
        .map(|n| n.to_string_lossy().parse())
        .transpose()?
        .unwrap_or(1_000_000);
    if dir.exists() {
        return Err(format!("{} exists; give a new directory", dir.display()).into());
    }
    let functions: Vec<Function> = (0..FUNCTIONS)
        .map(|f| Function::owned(format!("bench::pipeline::stage_{f}"), "v1", "String"))
        .collect();
    {
        let cache = Cache::open(&dir)?;
        for f in &functions {
            cache.put(f, &(u64::MAX,), &String::from("schema"))?;
        }
    }

    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let month_ms = Duration::from_secs(30 * 86_400).as_millis() as i64;
    let mut conn = rusqlite::Connection::open(dir.join(INDEX_FILE))?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")?;
    let tx = conn.transaction()?;
    {
        let mut ids = Vec::new();
        for f in &functions {
            ids.push(tx.query_row(
                "SELECT id FROM functions WHERE name = ?1",
                [f.name()],
                |r| r.get::<_, i64>(0),
            )?);
        }
        let mut insert = tx.prepare(
            "INSERT INTO entries (key, function_id, size, hash, value, created, last_used, hits, expires,
                                  compute_us, priority)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, (1 + ?8) * ?10 / (?3 + 256.0))",
        )?;
        for i in 0..total.saturating_sub(FUNCTIONS) {
            let f = (i % FUNCTIONS) as usize;
            let key = functions[f].key(&(i,))?;
            let value = codec::encode(&format!("result {i:>12} of a pipeline stage"))
                .map_err(|e| format!("encoding: {e}"))?;
            let hash = blake3::hash(&value);
            // A permutation of 0..total, so last use is unrelated to key and insertion order.
            let spread = (i.wrapping_mul(2_654_435_761) % total) as i64;
            let last_used = now_ms - month_ms + spread * month_ms / total as i64;
            let created = last_used - 3_600_000;
            let expires = (i % 100 == 7).then(|| {
                if i % 200 == 7 {
                    now_ms - 60_000
                } else {
                    now_ms + month_ms
                }
            });
            // Compute times from 1 ms to about 17 min, log-uniform-ish, unrelated to the rest;
            // the priority is what a store and its hits would give it (clock 0).
            let compute_us = 1_000i64 << ((i.wrapping_mul(40_503) >> 3) % 20);
            insert.execute(params![
                &key.0[..],
                ids[f],
                value.len() as i64,
                &hash.as_bytes()[..],
                &value,
                created,
                last_used,
                (i % 5) as i64,
                expires,
                compute_us
            ])?;
        }
    }
    tx.commit()?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    drop(conn);
    let stats = Cache::builder(&dir).existing_only().open()?.stats()?;
    println!(
        "{}: {} entries, {} stored bytes, {} on disk",
        dir.display(),
        stats.entries,
        stats.bytes,
        stats.disk_bytes
    );
    Ok(())
}
