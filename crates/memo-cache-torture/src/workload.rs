//! The cached functions every suite calls, and how a call is checked.
//!
//! Each function's result is a pure function of its argument, so any process can compute the
//! right answer afresh and compare it with what the cache returned. Sizes are spread so that some
//! values of every function live inline in the index and others in blob files.

use std::any::Any;
use std::cell::Cell;
use std::fmt::Debug;

use memo_cache::{Cache, Function};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A `u64`: always inline.
pub static SMALL: Function = Function::new("torture::small", "v1", "u64");
/// A `String` of up to 24 000 bytes: inline or blob.
pub static TEXT: Function = Function::new("torture::text", "v1", "String");
/// A `Vec<f64>` (raw fast path) of up to 48 KB: inline or blob.
pub static FLOATS: Function = Function::new("torture::floats", "v1", "Vec<f64>");
/// A `Vec<u8>` (raw fast path) of up to 80 KB: mostly blob.
pub static BYTES: Function = Function::new("torture::bytes", "v1", "Vec<u8>");
/// A struct stored as MessagePack: inline or blob.
pub static RECORD: Function = Function::new("torture::record", "v1", "torture::Record");

/// A struct result, stored through the MessagePack path.
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
pub struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
    data: Vec<u32>,
}

/// Which cached function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Small,
    Text,
    Floats,
    Bytes,
    Record,
}

/// Every function, in a fixed order.
pub const KINDS: [Kind; 5] = [
    Kind::Small,
    Kind::Text,
    Kind::Floats,
    Kind::Bytes,
    Kind::Record,
];

/// What one call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A value came from the cache and equals a fresh computation.
    Hit,
    /// Nothing was cached; for `Call`, the value was computed (and is right).
    Miss,
    /// An explicit store or removal went through.
    Done,
    /// The cache returned a value that differs from a fresh computation.
    Wrong(String),
    /// An explicit API call returned an error.
    Error(String),
}

/// What to do with the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `get_or_compute`, checked against a fresh computation.
    Call,
    /// `get`, checked when it returns a value.
    Get,
    /// `put` of the right value.
    Put,
    /// `remove`.
    Remove,
}

/// splitmix64: small, fast, and the same in every process.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// The splitmix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn small(arg: u64) -> u64 {
    mix(arg ^ 0x5EED)
}

fn text(arg: u64) -> String {
    let mut rng = Rng::new(arg ^ 0x7E47);
    let len = if arg.is_multiple_of(3) {
        rng.between(17_000, 24_000)
    } else {
        rng.between(1, 3_000)
    };
    (0..len)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect()
}

fn floats(arg: u64) -> Vec<f64> {
    let mut rng = Rng::new(arg ^ 0xF10A);
    let len = rng.between(0, 6_000);
    (0..len)
        .map(|i| (rng.next_u64() >> 11) as f64 / (i + 1) as f64)
        .collect()
}

fn bytes(arg: u64) -> Vec<u8> {
    let mut rng = Rng::new(arg ^ 0xB17E);
    let len = if arg.is_multiple_of(4) {
        rng.between(1, 4_000)
    } else {
        rng.between(16_000, 80_000)
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn record(arg: u64) -> Record {
    let mut rng = Rng::new(arg ^ 0x4EC0);
    let tags = (0..rng.below(8))
        .map(|i| format!("tag-{i}-{}", rng.next_u64()))
        .collect();
    let data = (0..rng.between(0, 8_000))
        .map(|_| rng.next_u64() as u32)
        .collect();
    Record {
        id: arg,
        name: format!("record {arg}"),
        tags,
        data,
    }
}

/// A random entry (of `keys` arguments per function) whose value is larger than the inline
/// threshold, so it lives in a blob file: a `Vec<u8>` of at least 16 000 bytes (a few, under
/// 16 KiB, stay inline), or a `String` of at least 17 000.
pub fn blob_sized(rng: &mut Rng, keys: u64) -> (Kind, u64) {
    loop {
        let arg = rng.below(keys.max(4));
        if rng.below(2) == 0 && !arg.is_multiple_of(4) {
            return (Kind::Bytes, arg);
        }
        if arg.is_multiple_of(3) {
            return (Kind::Text, arg);
        }
    }
}

/// Performs `op` on the entry of `kind` for `arg`, and checks any value returned.
pub fn exercise(cache: &Cache, kind: Kind, arg: u64, op: Op) -> Outcome {
    match kind {
        Kind::Small => with(cache, &SMALL, &(arg,), || small(arg), op),
        Kind::Text => with(cache, &TEXT, &(arg,), || text(arg), op),
        Kind::Floats => with(cache, &FLOATS, &(arg, "floats"), || floats(arg), op),
        Kind::Bytes => with(cache, &BYTES, &(arg,), || bytes(arg), op),
        Kind::Record => with(
            cache,
            &RECORD,
            &(format!("r{arg}"), arg),
            || record(arg),
            op,
        ),
    }
}

fn with<A, T>(cache: &Cache, func: &Function, args: &A, fresh: impl Fn() -> T, op: Op) -> Outcome
where
    A: Serialize,
    T: Serialize + DeserializeOwned + PartialEq + Any + Debug,
{
    let wrong = |what: &str| Outcome::Wrong(format!("{} {}: {what}", func.name(), describe(args)));
    match op {
        Op::Call => {
            let computed = Cell::new(false);
            let value = cache.get_or_compute(func, args, || {
                computed.set(true);
                fresh()
            });
            if value != fresh() {
                wrong("get_or_compute returned a value that differs from a fresh computation")
            } else if computed.get() {
                Outcome::Miss
            } else {
                Outcome::Hit
            }
        }
        Op::Get => match cache.get::<A, T>(func, args) {
            Ok(Some(value)) if value == fresh() => Outcome::Hit,
            Ok(Some(_)) => wrong("get returned a value that differs from a fresh computation"),
            Ok(None) => Outcome::Miss,
            Err(e) => Outcome::Error(format!("get {} {}: {e}", func.name(), describe(args))),
        },
        Op::Put => match cache.put(func, args, &fresh()) {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Error(format!("put {} {}: {e}", func.name(), describe(args))),
        },
        Op::Remove => match cache.remove(func, args) {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Error(format!("remove {} {}: {e}", func.name(), describe(args))),
        },
    }
}

fn describe<A: Serialize>(args: &A) -> String {
    match memo_cache::canonical_bytes(args) {
        Ok(bytes) => format!("args {:02x?}", &bytes[..bytes.len().min(24)]),
        Err(_) => "args ?".into(),
    }
}

/// Tallies of outcomes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub calls: u64,
    pub hits: u64,
    pub misses: u64,
    pub wrong: u64,
    pub errors: u64,
    pub first_problems: Vec<String>,
}

impl Tally {
    /// Counts `outcome`; keeps the first few problems' descriptions.
    pub fn add(&mut self, outcome: Outcome) {
        self.calls += 1;
        let problem = match outcome {
            Outcome::Hit => {
                self.hits += 1;
                None
            }
            Outcome::Miss => {
                self.misses += 1;
                None
            }
            Outcome::Done => None,
            Outcome::Wrong(what) => {
                self.wrong += 1;
                Some(format!("WRONG {what}"))
            }
            Outcome::Error(what) => {
                self.errors += 1;
                Some(format!("ERROR {what}"))
            }
        };
        if let Some(p) = problem
            && self.first_problems.len() < 10
        {
            self.first_problems.push(p);
        }
    }

    /// Adds another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.calls += other.calls;
        self.hits += other.hits;
        self.misses += other.misses;
        self.wrong += other.wrong;
        self.errors += other.errors;
        for p in &other.first_problems {
            if self.first_problems.len() < 10 {
                self.first_problems.push(p.clone());
            }
        }
    }
}

/// Checks every entry the workload can make (`keys` arguments per function) with `op`.
pub fn check_all(cache: &Cache, keys: u64, op: Op) -> Tally {
    let mut tally = Tally::default();
    for kind in KINDS {
        for arg in 0..keys {
            tally.add(exercise(cache, kind, arg, op));
        }
    }
    tally
}
