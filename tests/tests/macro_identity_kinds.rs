//! Two distinct functions never share an identity, however alike their names and code, and a
//! return type is classified by what it is, not how it is written.
//!
//! Each function below has a twin with the same name and the same tokens elsewhere (another
//! `impl`, another trait impl, another enclosing function, another module stamped by one
//! `macro_rules!`, another instantiation of a generic `impl`); each must compute its own value
//! and keep it under its own name. Then `Result`s spelled through aliases store only `Ok`, and a
//! type of the user's merely named `Result` is stored whole.

use std::sync::Mutex;

use memo_cache::disk_cache;
use serde::{Deserialize, Serialize};

static RUNS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ran(what: impl Into<String>) {
    RUNS.lock().unwrap().push(what.into());
}

fn runs(what: &str) -> usize {
    RUNS.lock().unwrap().iter().filter(|r| *r == what).count()
}

// ---- Same-named functions in two inherent impls --------------------------------------------

struct Alpha;
struct Beta;

impl Alpha {
    const TAG: &'static str = "A";
    #[disk_cache]
    fn make(x: u32) -> String {
        ran(format!("{}::make", Self::TAG));
        format!("{}{}", Self::TAG, x)
    }
}

impl Beta {
    const TAG: &'static str = "B";
    #[disk_cache]
    fn make(x: u32) -> String {
        ran(format!("{}::make", Self::TAG));
        format!("{}{}", Self::TAG, x)
    }
}

// ---- Same-named functions in two trait impls of one trait ----------------------------------

trait Label {
    const NAME: &'static str;
    fn label(x: u32) -> String;
}

impl Label for Alpha {
    const NAME: &'static str = "alpha";
    // A trait impl may hold only the trait's items: no `label__clear` and kin.
    #[disk_cache(companions = false)]
    fn label(x: u32) -> String {
        ran(format!("{} label", Self::NAME));
        format!("{}-{}", Self::NAME, x)
    }
}

impl Label for Beta {
    const NAME: &'static str = "beta";
    #[disk_cache(companions = false)]
    fn label(x: u32) -> String {
        ran(format!("{} label", Self::NAME));
        format!("{}-{}", Self::NAME, x)
    }
}

// ---- Nested functions of one name inside two functions -------------------------------------

fn tens(x: u32) -> u32 {
    const SCALE: u32 = 10;
    #[disk_cache]
    fn scaled(x: u32) -> u32 {
        ran(format!("scaled by {SCALE}"));
        x * SCALE
    }
    scaled(x)
}

fn hundreds(x: u32) -> u32 {
    const SCALE: u32 = 100;
    #[disk_cache]
    fn scaled(x: u32) -> u32 {
        ran(format!("scaled by {SCALE}"));
        x * SCALE
    }
    scaled(x)
}

// ---- One macro_rules! stamping the same function into two modules --------------------------

macro_rules! offset_module {
    ($module:ident, $offset:expr) => {
        mod $module {
            const OFFSET: u32 = $offset;
            #[memo_cache::disk_cache]
            pub fn shifted(x: u32) -> u32 {
                super::ran(format!("shifted by {OFFSET}"));
                x + OFFSET
            }
        }
    };
}

offset_module!(low, 1);
offset_module!(high, 1000);

// ---- Two instantiations of a generic impl, a function that does not name `Self` -----------

trait Unit {
    const SYMBOL: &'static str;
}

struct Metres;
struct Feet;

impl Unit for Metres {
    const SYMBOL: &'static str = "m";
}

impl Unit for Feet {
    const SYMBOL: &'static str = "ft";
}

struct Length<U>(std::marker::PhantomData<U>);

impl<U: Unit> Length<U> {
    #[disk_cache]
    fn show(x: u32) -> String {
        ran(format!("show {}", U::SYMBOL));
        format!("{x}{}", U::SYMBOL)
    }
}

// ---- Two instantiations of a const generic function ------------------------------------------

#[disk_cache]
fn repeat<const N: usize>(s: &str) -> String {
    ran(format!("repeat {N}"));
    s.repeat(N)
}

// ---- A pinned name on a blanket impl and on a const generic impl ---------------------------

trait Describe {
    fn describe(&self) -> String;
}

impl<T: Serialize> Describe for T {
    #[disk_cache(name = "kinds::describe", companions = false)]
    fn describe(&self) -> String {
        ran(format!("describe {}", std::any::type_name::<T>()));
        std::any::type_name::<T>().to_owned()
    }
}

trait Width {
    fn width(&self) -> usize;
}

impl<const N: usize> Width for [u8; N] {
    #[disk_cache(name = "kinds::width", companions = false, ignore(self))]
    fn width(&self) -> usize {
        ran(format!("width {N}"));
        N
    }
}

// ---- One macro_rules! invocation stamping two functions with different options -------------

macro_rules! two_directories {
    ($($module:ident => $dir:literal),*) => {$(
        mod $module {
            #[memo_cache::disk_cache(dir = $dir)]
            pub fn where_am_i(x: u32) -> u32 {
                x
            }
        }
    )*};
}

two_directories!(
    in_a => "/tmp/memo-cache-e2e-kinds-a",
    in_b => "/tmp/memo-cache-e2e-kinds-b"
);

// ---- The in-memory LRU and a companion --------------------------------------------------

static SOURCE: Mutex<u32> = Mutex::new(901);

#[disk_cache(memory = 4)]
fn remembered(id: u32) -> u32 {
    *SOURCE.lock().unwrap() + id - id
}

// ---- Results however they are spelled -------------------------------------------------------

type Answer = Result<u32, String>;

mod anyhow_like {
    /// How `anyhow::Result` is declared.
    pub type Result<T, E = String> = core::result::Result<T, E>;
}

static FAIL: Mutex<bool> = Mutex::new(true);

/// Fails while `FAIL` is set, as a transient outage would.
fn flaky(what: &str, id: u32) -> Result<u32, String> {
    ran(what.to_owned());
    if *FAIL.lock().unwrap() {
        Err(format!("{what}: service unavailable"))
    } else {
        Ok(id * 2)
    }
}

#[disk_cache]
fn through_alias(id: u32) -> Answer {
    flaky("alias", id)
}

#[disk_cache]
fn through_default_param(id: u32) -> anyhow_like::Result<u32> {
    flaky("default param", id)
}

#[disk_cache]
fn through_full_path(id: u32) -> std::result::Result<u32, String> {
    flaky("full path", id)
}

#[disk_cache]
fn through_io(id: u32) -> std::io::Result<u32> {
    flaky("io", id).map_err(std::io::Error::other)
}

/// A type of the user's that is merely named `Result`: stored whole, its failure included.
mod mine {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub enum Result<T> {
        Done(T),
        Failed(String),
    }
}

#[disk_cache]
fn own_result(id: u32) -> mine::Result<u32> {
    ran("own");
    mine::Result::Failed(format!("{id} is remembered as failed"))
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Reading {
    id: u32,
}

#[disk_cache]
fn async_alias_free(id: u32) -> Result<Reading, String> {
    ran("reading");
    Ok(Reading { id })
}

#[test]
fn distinct_functions_never_share_a_result_and_results_are_classified_by_type() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: the only test in this binary; set before any cached call.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };

    for _ in 0..2 {
        assert_eq!(Alpha::make(1), "A1");
        assert_eq!(Beta::make(1), "B1");
        assert_eq!(<Alpha as Label>::label(2), "alpha-2");
        assert_eq!(<Beta as Label>::label(2), "beta-2");
        assert_eq!(tens(3), 30);
        assert_eq!(hundreds(3), 300);
        assert_eq!(low::shifted(4), 5);
        assert_eq!(high::shifted(4), 1004);
        assert_eq!(Length::<Metres>::show(5), "5m");
        assert_eq!(Length::<Feet>::show(5), "5ft");
        assert_eq!(repeat::<2>("ab"), "abab");
        assert_eq!(repeat::<3>("ab"), "ababab");
    }
    for _ in 0..2 {
        assert_eq!(5u32.describe(), "u32");
        assert_eq!(
            5u64.describe(),
            "u64",
            "a pinned name keeps instantiations apart"
        );
        assert_eq!([0u8; 3].width(), 3);
        assert_eq!([0u8; 4].width(), 4);
    }
    for what in ["describe u32", "describe u64", "width 3", "width 4"] {
        assert_eq!(runs(what), 1, "{what} runs once");
    }

    // Each stamped function keeps its own directory.
    for dir in ["/tmp/memo-cache-e2e-kinds-a", "/tmp/memo-cache-e2e-kinds-b"] {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(in_a::where_am_i(1), 1);
    assert_eq!(in_b::where_am_i(2), 2);
    let stored = |dir| {
        let cache = memo_cache::Cache::open(dir).unwrap();
        cache.entries(None).unwrap().len()
    };
    assert_eq!(stored("/tmp/memo-cache-e2e-kinds-a"), 1);
    assert_eq!(stored("/tmp/memo-cache-e2e-kinds-b"), 1);
    for dir in ["/tmp/memo-cache-e2e-kinds-a", "/tmp/memo-cache-e2e-kinds-b"] {
        let _ = std::fs::remove_dir_all(dir);
    }

    // `f__recompute` refreshes what `f` finds in memory, not a copy `f` never reads.
    assert_eq!(remembered(9), 901);
    *SOURCE.lock().unwrap() = 902;
    assert_eq!(remembered(9), 901, "a hit, from memory");
    assert_eq!(remembered__recompute(9), 902);
    assert_eq!(
        remembered(9),
        902,
        "the recomputed value, in memory and on disk"
    );

    for what in [
        "A::make",
        "B::make",
        "alpha label",
        "beta label",
        "scaled by 10",
        "scaled by 100",
        "shifted by 1",
        "shifted by 1000",
        "show m",
        "show ft",
        "repeat 2",
        "repeat 3",
    ] {
        assert_eq!(runs(what), 1, "{what} runs once, then hits its own entry");
    }

    let cache = memo_cache::Cache::open(dir.path()).unwrap();
    let names: Vec<String> = cache
        .functions()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    for expected in [
        "macro_identity_kinds::Alpha::make",
        "macro_identity_kinds::Beta::make",
        "<macro_identity_kinds::Alpha as macro_identity_kinds::Label>::label",
        "<macro_identity_kinds::Beta as macro_identity_kinds::Label>::label",
        "macro_identity_kinds::tens::scaled",
        "macro_identity_kinds::hundreds::scaled",
        "macro_identity_kinds::low::shifted",
        "macro_identity_kinds::high::shifted",
        "macro_identity_kinds::Length<macro_identity_kinds::Metres>::show",
        "macro_identity_kinds::Length<macro_identity_kinds::Feet>::show",
        "macro_identity_kinds::repeat<2>",
        "macro_identity_kinds::repeat<3>",
        "kinds::describe::<u32>",
        "kinds::describe::<u64>",
        "kinds::width::<[u8; 3]>",
        "kinds::width::<[u8; 4]>",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not among {names:?}"
        );
    }

    // A transient failure is returned, never stored, however the Result is spelled.
    assert!(through_alias(7).is_err());
    assert!(through_default_param(7).is_err());
    assert!(through_full_path(7).is_err());
    assert!(through_io(7).is_err());
    *FAIL.lock().unwrap() = false;
    assert_eq!(through_alias(7), Ok(14));
    assert_eq!(through_default_param(7), Ok(14));
    assert_eq!(through_full_path(7), Ok(14));
    assert_eq!(through_io(7).unwrap(), 14);
    *FAIL.lock().unwrap() = true;
    assert_eq!(through_alias(7), Ok(14), "the Ok value is served");
    assert_eq!(through_default_param(7), Ok(14));
    assert_eq!(through_full_path(7), Ok(14));
    assert_eq!(through_io(7).unwrap(), 14);
    for what in ["alias", "default param", "full path", "io"] {
        assert_eq!(runs(what), 2, "{what}: the Err is not stored, the Ok is");
    }

    // The user's own `Result` is an ordinary value: stored, failure and all.
    let failed = mine::Result::Failed("9 is remembered as failed".to_owned());
    assert_eq!(own_result(9), failed);
    assert_eq!(own_result(9), failed);
    assert_eq!(runs("own"), 1);
    assert_eq!(
        async_alias_free(3),
        Ok(Reading { id: 3 }),
        "computed and stored"
    );
    assert_eq!(async_alias_free(3), Ok(Reading { id: 3 }), "read back");
    assert_eq!(runs("reading"), 1);
}
