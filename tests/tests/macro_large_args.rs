//! Large slice arguments through `#[disk_cache]`: they are hashed as one run each (key format 2),
//! and a hit still needs every element equal: one changed element in the middle is a miss.

use std::sync::atomic::{AtomicUsize, Ordering};

use memo_cache::{Function, disk_cache};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[disk_cache(name = "large::summary", version = "v1")]
fn summary(bytes: &[u8], samples: &[f64]) -> (u64, f64) {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let sum = bytes.iter().map(|&b| u64::from(b)).sum();
    (sum, samples.iter().sum())
}

static MEMORY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// With an in-memory LRU: a large argument is kept in the LRU's key by its digest, not copied.
#[disk_cache(memory = 4)]
fn checksum(bytes: &[u8]) -> u64 {
    MEMORY_RUNS.fetch_add(1, Ordering::SeqCst);
    bytes.iter().map(|&b| u64::from(b)).sum()
}

fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

#[test]
fn large_slices_hit_on_equal_data_and_miss_on_one_changed_element() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any cached function runs; the only test in this binary.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };

    // 8 MiB each: past the size from which the hasher uses every core.
    let bytes: Vec<u8> = (0..8 << 20)
        .map(|i: u32| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let samples: Vec<f64> = (0..1 << 20).map(|i| f64::from(i) * 0.5 - 1.0).collect();

    let first = summary(&bytes, &samples);
    assert_eq!(runs(), 1);
    // Equal data in other allocations: a hit.
    assert_eq!(summary(&bytes.clone(), &samples.clone()), first);
    assert_eq!(runs(), 1, "equal arguments must hit");

    // One byte changed in the middle: a miss.
    let mut changed = bytes.clone();
    changed[4 << 20] ^= 1;
    summary(&changed, &samples);
    assert_eq!(runs(), 2, "a changed byte must miss");

    // One float changed in the middle, even only in sign: a miss.
    let mut changed = samples.clone();
    changed[1 << 19] = -changed[1 << 19];
    summary(&bytes, &changed);
    assert_eq!(runs(), 3, "a changed float must miss");
    assert_eq!(summary(&bytes, &changed).0, first.0);
    assert_eq!(runs(), 3);

    // The attribute's key is the API's key of the tuple of the arguments.
    let f = Function::new("large::summary", "v1", "(u64, f64)");
    let cache = memo_cache::Cache::open(dir.path()).unwrap();
    assert!(
        cache
            .contains_key(&f.key(&(&&bytes[..], &&samples[..])).unwrap())
            .unwrap()
    );

    // Through the LRU: a hit on equal data, a miss on one changed byte, and a small argument
    // (kept whole in the LRU's key) beside them.
    let total = checksum(&bytes);
    assert_eq!(checksum(&bytes.clone()), total);
    assert_eq!(MEMORY_RUNS.load(Ordering::SeqCst), 1);
    let mut changed = bytes.clone();
    changed[(8 << 20) - 1] ^= 1;
    assert_ne!(checksum(&changed), total);
    assert_eq!(MEMORY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(checksum(&changed[..3]), checksum(&bytes[..3]));
    assert_eq!(MEMORY_RUNS.load(Ordering::SeqCst), 3);
    // The LRU is not the only copy: emptied by a `__clear` of the function's disk entries
    // too, the next call computes again.
    assert!(checksum__clear().unwrap().entries >= 3);
    checksum(&bytes);
    assert_eq!(MEMORY_RUNS.load(Ordering::SeqCst), 4);
}
