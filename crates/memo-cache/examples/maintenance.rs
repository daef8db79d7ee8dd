//! Looking after a cache from code: statistics, pruning by size and by age, verifying every
//! stored byte and repairing what is wrong. The same as `memo-cache stats`, `prune` and
//! `verify --fix` on the command line, here on a cache in a temp directory (removed at exit).
//!
//! ```text
//! cargo run -p memo-cache-rs --example maintenance
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memo_cache::{Cache, Function, ManualClock, Prune, Verify};

static SERIES: Function = Function::new("maintenance::series", "v1", "Vec<f64>");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // A clock the example moves forward, standing in for days passing between runs.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let clock = ManualClock::new(i64::try_from(now)?);
    let cache = Cache::builder(dir.path()).clock(clock.clone()).open()?;
    println!("cache directory: {}", cache.dir().display());

    // Thirty results, the last ten large enough (over 16 KiB) to live in blob files.
    for n in 0..30u32 {
        let len = if n < 20 { 100 } else { 4_000 };
        let series: Vec<f64> = (0..len).map(|i| f64::from(i * n).sqrt()).collect();
        cache.put(&SERIES, &(n,), &series)?;
        if n == 9 {
            clock.advance(Duration::from_secs(3 * 24 * 3600));
        }
    }
    let stats = cache.stats()?;
    println!(
        "stored: {} entries, {} value bytes ({} in blob files), {} on disk",
        stats.entries, stats.bytes, stats.blob_bytes, stats.disk_bytes
    );

    // Entries unused for two days: the first ten were stored three days before the rest.
    let by_age = Prune::new().older_than(Duration::from_secs(2 * 24 * 3600));
    println!(
        "older than 2 days: {}",
        cache.prune(&by_age.clone().dry_run())?
    );
    println!("older than 2 days: {}", cache.prune(&by_age)?);

    // Least recently used entries until 100 KiB of values remain. A read counts as a use, so
    // entry 20, read now, outlives the entries stored after it.
    let _: Option<Vec<f64>> = cache.get(&SERIES, &(20u32,))?;
    println!(
        "down to 100 KiB: {}",
        cache.prune(&Prune::new().max_size(100 * 1024))?
    );
    println!("entry 20 kept: {}", cache.contains(&SERIES, &(20u32,))?);

    // Damage one blob file, as bit rot or a hand edit would. A read would never return it (every
    // read checks the value's blake3 hash); verify finds it without reading through the API.
    let blob = first_file(&dir.path().join("blobs")).expect("a blob file");
    let mut bytes = std::fs::read(&blob)?;
    bytes[100] ^= 0xff;
    std::fs::write(&blob, bytes)?;

    let report = cache.verify(&Verify::new())?;
    println!(
        "verify: {} entries checked, {} problem(s)",
        report.entries_checked,
        report.problems.len()
    );
    for problem in &report.problems {
        println!("    {problem}");
    }
    let fixed = cache.verify(&Verify::new().fix(true))?;
    println!("verify --fix: sound now: {}", fixed.is_sound());
    println!("left: {} entries", cache.stats()?.entries);
    Ok(())
}

/// The first regular file under `dir`, depth first.
fn first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    entries.sort();
    entries.into_iter().find_map(|path| {
        if path.is_dir() {
            first_file(&path)
        } else {
            path.is_file().then_some(path)
        }
    })
}
