//! Every argument form a plain function may take compiles under `#[disk_cache]` and is keyed as
//! documented: `mut` bindings and `_`-prefixed names by their value; ignored `&mut`,
//! `impl Trait` and non-serializable arguments not at all; tuple, struct, slice and reference
//! patterns as the whole argument; `_` not at all (the body cannot read it). A method may take
//! `&mut self` when it says `ignore(self)`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use memo_cache::disk_cache;
use serde::Serialize;

/// How many times each body ran, by function name.
static RUNS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn ran(name: &'static str) {
    RUNS.lock().unwrap().push(name);
}

fn runs(name: &str) -> usize {
    RUNS.lock().unwrap().iter().filter(|n| **n == name).count()
}

#[disk_cache]
fn median(mut v: Vec<f64>) -> f64 {
    ran("median");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[disk_cache(ignore(progress))]
fn fill(n: u64, progress: &mut Vec<String>) -> u64 {
    ran("fill");
    progress.push(format!("filling {n}"));
    n * 10
}

#[disk_cache(ignore(report))]
fn count_up(n: u32, mut report: impl FnMut(u32)) -> u32 {
    ran("count_up");
    for i in 0..n {
        report(i);
    }
    n
}

/// Neither `Serialize` nor `Clone`: only an ignored argument can be one.
struct Connection {
    calls: AtomicU32,
}

#[disk_cache(ignore(conn))]
fn lookup(id: u32, conn: &Connection) -> String {
    ran("lookup");
    conn.calls.fetch_add(1, Ordering::Relaxed);
    format!("row {id}")
}

#[disk_cache]
fn scaled(x: u32, _unit: &str) -> u32 {
    ran("scaled");
    x * 2
}

#[disk_cache]
fn wild(x: u32, _: &mut Vec<u8>) -> u32 {
    ran("wild");
    x + 1
}

#[disk_cache]
fn distance((x1, y1): (i64, i64), (x2, y2): (i64, i64)) -> i64 {
    ran("distance");
    (x2 - x1).abs() + (y2 - y1).abs()
}

#[derive(Serialize, Clone, Copy)]
struct Point {
    x: i64,
    y: i64,
}

#[disk_cache]
fn norm(Point { x, y: mut why }: Point, &scale: &i64, [first, .., last]: [u8; 4]) -> i64 {
    ran("norm");
    why *= scale;
    x.abs() + why.abs() + i64::from(first) + i64::from(last)
}

#[disk_cache]
fn bound(ref mut text: String, (ref a, b): (String, u8)) -> String {
    ran("bound");
    text.push('!');
    format!("{text}{a}{b}")
}

#[derive(Serialize)]
struct Counter {
    step: u64,
    #[serde(skip)]
    seen: u64,
}

impl Counter {
    #[disk_cache(ignore(self))]
    fn double(&mut self, n: u64) -> u64 {
        ran("double");
        self.seen += 1;
        n * 2
    }

    #[disk_cache]
    fn advance(mut self, n: u64) -> u64 {
        ran("advance");
        self.seen += n;
        self.seen * self.step
    }
}

#[disk_cache(ignore(progress))]
async fn fetch_all(mut ids: Vec<u32>, (lo, hi): (u32, u32), progress: &mut Vec<u32>) -> Vec<u32> {
    ran("fetch_all");
    ids.retain(|id| (lo..hi).contains(id));
    progress.extend(&ids);
    ids
}

#[test]
fn every_argument_form_compiles_and_is_keyed_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any cached function runs; the only test in this binary.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };

    // `mut`: the key is the argument as passed, before the body changes it.
    assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    assert_eq!(runs("median"), 1);
    assert_eq!(
        median(vec![1.0, 2.0, 3.0]),
        2.0,
        "another order, another key"
    );
    assert_eq!(runs("median"), 2);

    // An ignored `&mut`: the body's changes happen on a miss, and a hit skips them.
    let mut progress = Vec::new();
    assert_eq!(fill(4, &mut progress), 40);
    assert_eq!(fill(4, &mut progress), 40);
    assert_eq!((runs("fill"), progress), (1, vec!["filling 4".to_owned()]));
    assert!(fill__is_cached(4, &mut Vec::new()));

    let mut reported = Vec::new();
    assert_eq!(count_up(3, |i| reported.push(i)), 3);
    assert_eq!(count_up(3, |_| panic!("a hit runs nothing")), 3);
    assert_eq!((runs("count_up"), reported), (1, vec![0, 1, 2]));

    let conn = Connection {
        calls: AtomicU32::new(0),
    };
    assert_eq!(lookup(7, &conn), "row 7");
    assert_eq!(lookup(7, &conn), "row 7");
    assert_eq!((runs("lookup"), conn.calls.load(Ordering::Relaxed)), (1, 1));

    // `_unit` is an argument like any other: in the key.
    assert_eq!(scaled(5, "m"), 10);
    assert_eq!(scaled(5, "m"), 10);
    assert_eq!(scaled(5, "km"), 10);
    assert_eq!(runs("scaled"), 2);

    // `_` cannot be read by the body, so it is not in the key (and need not be `Serialize`).
    assert_eq!(wild(1, &mut vec![1]), 2);
    assert_eq!(wild(1, &mut vec![2, 3]), 2);
    assert_eq!(runs("wild"), 1);

    // Patterns: keyed as the whole argument.
    assert_eq!(distance((0, 0), (3, -4)), 7);
    assert_eq!(distance((0, 0), (3, -4)), 7);
    assert_eq!(runs("distance"), 1);
    assert_eq!(distance((0, 0), (-3, 4)), 7);
    assert_eq!(
        runs("distance"),
        2,
        "each argument's whole value is in the key"
    );
    assert!(distance__is_cached((0, 0), (-3, 4)));
    assert_eq!(distance__uncached((1, 1), (2, 2)), 2);
    assert_eq!(distance__recompute((0, 0), (3, -4)), 7);
    assert_eq!(runs("distance"), 4);

    let p = Point { x: -2, y: 3 };
    assert_eq!(norm(p, &2, [1, 0, 0, 4]), 2 + 6 + 1 + 4);
    assert_eq!(norm(p, &2, [1, 0, 0, 4]), 13);
    assert_eq!(runs("norm"), 1);
    assert_eq!(
        norm(p, &2, [1, 9, 9, 4]),
        13,
        "the unbound middle is keyed too"
    );
    assert_eq!(norm(Point { x: 2, y: 3 }, &2, [1, 0, 0, 4]), 13);
    assert_eq!(norm(p, &3, [1, 0, 0, 4]), 2 + 9 + 1 + 4);
    assert_eq!(runs("norm"), 4);

    assert_eq!(bound("hi".into(), ("a".into(), 1)), "hi!a1");
    assert_eq!(bound("hi".into(), ("a".into(), 1)), "hi!a1");
    assert_eq!(runs("bound"), 1);

    // `&mut self` with `ignore(self)`; `mut self` by value, keyed by its serialized fields.
    let mut counter = Counter { step: 3, seen: 0 };
    assert_eq!(counter.double(4), 8);
    assert_eq!(counter.double(4), 8);
    assert_eq!((runs("double"), counter.seen), (1, 1));
    assert_eq!(Counter { step: 3, seen: 0 }.advance(2), 6);
    assert_eq!(
        Counter { step: 3, seen: 5 }.advance(2),
        6,
        "`seen` is skipped"
    );
    assert_eq!(runs("advance"), 1);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut progress = Vec::new();
    let all = runtime.block_on(fetch_all(vec![5, 1, 9], (1, 6), &mut progress));
    assert_eq!(all, [5, 1]);
    let again = runtime.block_on(fetch_all(vec![5, 1, 9], (1, 6), &mut progress));
    assert_eq!(again, [5, 1]);
    assert_eq!((runs("fetch_all"), progress), (1, vec![5, 1]));
    let other = runtime.block_on(fetch_all(vec![5, 1, 9], (0, 6), &mut Vec::new()));
    assert_eq!((other, runs("fetch_all")), (vec![5, 1], 2));
}
