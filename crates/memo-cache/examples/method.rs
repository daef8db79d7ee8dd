//! `#[disk_cache]` on a method taking `&self`: `self` is part of the key, so each distinct value
//! of the type has its own entries (the type must be `Serialize`, or the method says
//! `ignore(self)`).
//!
//! ```text
//! cargo run -p memo-cache-rs --example method
//! ```
//!
//! The cache directory is `MEMO_CACHE_DIR` when set, else the platform cache directory
//! (`~/.cache/memo-cache` on Linux). The example clears its own entries at the start, so each
//! run shows the same thing.

use std::collections::BTreeMap;

use memo_cache::disk_cache;
use serde::Serialize;

/// Some texts to study. Two corpora with the same documents share entries; any difference in
/// the documents is a different key.
#[derive(Serialize)]
struct Corpus {
    documents: Vec<String>,
}

impl Corpus {
    /// How often each word of at least `min_len` letters appears: the expensive part.
    #[disk_cache]
    fn word_counts(&self, min_len: usize) -> BTreeMap<String, u64> {
        println!(
            "    counting words of {min_len}+ letters in {} documents",
            self.documents.len()
        );
        let mut counts = BTreeMap::new();
        for document in &self.documents {
            for word in document.split(|c: char| !c.is_alphanumeric()) {
                if word.chars().count() >= min_len {
                    *counts.entry(word.to_lowercase()).or_insert(0) += 1;
                }
            }
        }
        counts
    }
}

fn main() {
    let fox = Corpus {
        documents: vec![
            "The quick brown fox jumps over the lazy dog.".into(),
            "The dog sleeps; the fox jumps again.".into(),
        ],
    };
    // The companions every cached method gets: forget stored results, ask whether one is stored.
    match Corpus::word_counts__clear() {
        Ok(removed) => println!("cleared what an earlier run stored: {removed}"),
        Err(e) => println!("could not clear ({e}); the calls below still work"),
    }

    println!("first call:");
    let counts = fox.word_counts(4);
    println!("    {counts:?}");
    println!(
        "second call, same corpus: stored = {}",
        fox.word_counts__is_cached(4)
    );
    let again = fox.word_counts(4);
    assert_eq!(again, counts);
    println!("    served from the cache");

    let other = Corpus {
        documents: vec!["A different text about a different fox.".into()],
    };
    println!(
        "another corpus: stored = {}",
        other.word_counts__is_cached(4)
    );
    let counts = other.word_counts(4);
    println!("    {counts:?}");
}
