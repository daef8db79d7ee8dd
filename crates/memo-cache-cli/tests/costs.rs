//! What entries cost and saved, through the real binary: `ls` columns and sorts, `stats` with
//! its histogram, `show` and `show --args`, and `prune --policy`.

mod common;

use std::time::Duration;

use common::*;
use memo_cache::{Cache, Function, ManualClock};

static SIM: Function = Function::new("demo::simulate", "v1", "Vec<u8>");
static LOOKUP: Function = Function::new("demo::lookup", "v1", "u64");

/// A cache with one dear function (two entries, one hit three times) and one cheap one, each
/// step a second after the last.
fn costly_cache(dir: &std::path::Path) {
    let clock = ManualClock::new(1_700_000_000_000);
    let cache = Cache::builder(dir).clock(clock.clone()).open().unwrap();
    let tick = || clock.advance(Duration::from_secs(1));
    cache
        .put_timed(
            &SIM,
            &("north", 3u32),
            &vec![1u8; 100],
            Duration::from_secs(2 * 3600),
        )
        .unwrap();
    tick();
    cache
        .put_timed(
            &SIM,
            &("south", 4u32),
            &vec![2u8; 100],
            Duration::from_secs(60),
        )
        .unwrap();
    for _ in 0..3 {
        tick();
        assert!(
            cache
                .get::<_, Vec<u8>>(&SIM, &("north", 3u32))
                .unwrap()
                .is_some()
        );
    }
    for i in 0..5u64 {
        tick();
        cache
            .put_timed(&LOOKUP, &(i,), &i, Duration::from_millis(2))
            .unwrap();
    }
    tick();
    cache.put(&LOOKUP, &(vec![0u8; 3000],), &99u64).unwrap();
}

#[test]
fn ls_shows_compute_time_hits_and_time_saved_per_function() {
    let dir = tempfile::tempdir().unwrap();
    costly_cache(dir.path());
    let text = ok(dir.path(), &["ls", "--sort", "saved"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("COMPUTE") && lines[0].contains("SAVED") && lines[0].contains("HITS"),
        "{text}"
    );
    assert!(lines[1].starts_with("demo::simulate"), "{text}");
    assert!(
        lines[1].contains("2h 1m") && lines[1].contains("6h 0m"),
        "{text}"
    );

    let json = json(dir.path(), &["ls", "--sort", "cost"]);
    let first = &json["functions"][0];
    assert_eq!(first["function"], "demo::simulate");
    assert_eq!(first["hits"], 3);
    assert_eq!(first["compute_ms"], 2.0 * 3_600_000.0 + 60_000.0);
    assert_eq!(first["saved_ms"], 3.0 * 2.0 * 3_600_000.0);
    assert!(first["saved_ms_per_mib"].as_f64().unwrap() > first["saved_ms"].as_f64().unwrap());
}

#[test]
fn ls_entries_names_each_call_by_its_arguments_and_sorts_by_value() {
    let dir = tempfile::tempdir().unwrap();
    costly_cache(dir.path());
    let text = ok(dir.path(), &["ls", "--entries", "--sort", "saved"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("ARGS"), "{text}");
    assert!(lines[1].contains(r#"("north", 3)"#), "{text}");
    assert!(text.contains("(4)"), "{text}");
    assert!(
        text.contains("2.9 KiB"),
        "too long to keep: its size: {text}"
    );

    let json = json(dir.path(), &["ls", "--entries", "--sort", "cost"]);
    let first = &json["entries"][0];
    assert_eq!(first["args"], serde_json::json!(["north", 3]));
    assert_eq!(first["compute_ms"], 7_200_000.0);
    assert_eq!(first["saved_ms"], 3.0 * 7_200_000.0);
    let unkept = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["args"].is_null())
        .expect("the entry with the 3000-byte argument");
    assert!(unkept["args_bytes"].as_u64().unwrap() > 3000);
}

#[test]
fn stats_says_how_much_compute_was_saved_and_draws_histograms() {
    let dir = tempfile::tempdir().unwrap();
    costly_cache(dir.path());
    let text = ok(dir.path(), &["stats", "--histogram"]);
    assert!(
        text.contains("Saved:") && text.contains("6h 0m of compute in 3 hits"),
        "{text}"
    );
    assert!(text.contains("Entries by size"), "{text}");
    assert!(text.contains("Entries by compute time"), "{text}");
    assert!(
        text.contains("not measured") && text.contains('█'),
        "{text}"
    );

    let json = json(dir.path(), &["stats", "--histogram"]);
    assert_eq!(json["hits"], 3);
    assert_eq!(json["saved_ms"], 3.0 * 7_200_000.0);
    let by_time = json["histogram"]["compute_time"].as_array().unwrap();
    let counted: u64 = by_time.iter().map(|b| b["entries"].as_u64().unwrap()).sum();
    assert_eq!(counted, 8);
    assert_eq!(
        by_time[0]["entries"], 1,
        "the one stored with put is not measured"
    );
}

#[test]
fn show_and_show_args_give_the_arguments_back() {
    let dir = tempfile::tempdir().unwrap();
    costly_cache(dir.path());
    let key = SIM.key(&("north", 3u32)).unwrap().to_hex();
    let text = ok(dir.path(), &["show", &key[..12]]);
    assert!(text.contains(r#"arguments:     ("north", 3)"#), "{text}");
    assert!(text.contains("compute time:  2h 0m"), "{text}");
    assert!(text.contains("saved:         6h 0m"), "{text}");

    let args: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["show", &key[..12], "--args"])).unwrap();
    assert_eq!(args, serde_json::json!(["north", 3]));
    let json = json(dir.path(), &["show", &key[..12], "--args"]);
    assert_eq!(json["args"], serde_json::json!(["north", 3]));

    let big = LOOKUP.key(&(vec![0u8; 3000],)).unwrap().to_hex();
    let (code, _, err) = run(dir.path(), &["show", &big[..12], "--args"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("were not recorded") && err.contains("only up to 1 KiB is kept"),
        "{err}"
    );
}

#[test]
fn prune_by_value_keeps_the_dear_entries_and_lru_does_not() {
    for (policy, survives) in [("cost", true), ("lru", false)] {
        let dir = tempfile::tempdir().unwrap();
        costly_cache(dir.path());
        // The dear entry was stored first and last used before the cheap ones.
        let out = ok(
            dir.path(),
            &["prune", "--max-entries", "3", "--policy", policy],
        );
        assert!(out.contains("Removed 5 entries"), "{policy}: {out}");
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(
            cache.contains(&SIM, &("north", 3u32)).unwrap(),
            survives,
            "{policy}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    costly_cache(dir.path());
    let (code, _, err) = run(
        dir.path(),
        &["prune", "--max-entries", "3", "--policy", "fifo"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("cost") && err.contains("lru"), "{err}");
}
