//! A `#[disk_cache]` call is stored under the key the API gives the same function identity and
//! the tuple of its key arguments: `Function::key(&(&a, &b, ..))`, sets as `Unordered`, ignored
//! arguments left out. So entries written through the attribute and through the API are one cache.

use std::collections::HashSet;

use memo_cache::{Cache, Function, Unordered, disk_cache};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[disk_cache(name = "keys::none", version = "v1")]
fn none() -> u64 {
    7
}

#[disk_cache(name = "keys::plain", version = "v1")]
fn plain(text: &str, n: u64, point: Point, maybe: Option<Vec<u8>>) -> String {
    format!("{text}{n}{point:?}{maybe:?}")
}

#[disk_cache(name = "keys::sets", version = "v1", ignore(verbose))]
fn sets(owned: HashSet<u32>, borrowed: &HashSet<String>, verbose: bool) -> usize {
    owned.len() + borrowed.len() + usize::from(verbose)
}

#[disk_cache(name = "keys::fallible", version = "v1", memory = 4)]
fn fallible(n: i64) -> Result<i64, String> {
    Ok(n * 2)
}

#[disk_cache(name = "keys::async", version = "v1")]
async fn later(n: u8, label: String) -> Vec<String> {
    vec![label; n as usize]
}

#[derive(Serialize)]
struct Scale(u32);

impl Scale {
    #[disk_cache(name = "keys::by_ref", version = "v1")]
    fn by_ref(&self, x: u32) -> u32 {
        self.0 * x
    }

    #[disk_cache(name = "keys::by_value", version = "v1")]
    fn by_value(self, x: u32) -> u32 {
        self.0 + x
    }
}

fn function(name: &'static str, ret: &'static str) -> Function {
    Function::new(name, "v1", ret)
}

#[test]
fn attribute_keys_equal_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any cached function runs; the only test in this binary.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };

    assert_eq!(none(), 7);
    plain("a", 3, Point { x: 1, y: -2 }, Some(vec![1, 2]));
    let owned: HashSet<u32> = (0..20).collect();
    let borrowed: HashSet<String> = ["x", "y", "z"].map(String::from).into();
    sets(owned.clone(), &borrowed, true);
    assert_eq!(fallible(21), Ok(42));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(later(2, "l".into()));
    Scale(3).by_ref(5);
    Scale(4).by_value(6);

    let cache = Cache::open(dir.path()).unwrap();
    let stored = |func: Function, key: memo_cache::Key| {
        assert!(
            cache.contains_key(&key).unwrap(),
            "no entry of {} under the API's key",
            func.name()
        );
    };
    let f = function("keys::none", "u64");
    stored(f.clone(), f.key(&()).unwrap());
    let f = function("keys::plain", "alloc::string::String");
    let (text, n, point, maybe) = ("a", 3u64, Point { x: 1, y: -2 }, Some(vec![1u8, 2]));
    stored(f.clone(), f.key(&(&text, &n, &point, &maybe)).unwrap());
    let f = function("keys::sets", "usize");
    stored(
        f.clone(),
        f.key(&(Unordered(&owned), Unordered(&borrowed))).unwrap(),
    );
    let f = function(
        "keys::fallible",
        "core::result::Result<i64, alloc::string::String>",
    );
    stored(f.clone(), f.key(&(&21i64,)).unwrap());
    let f = function("keys::async", "alloc::vec::Vec<alloc::string::String>");
    stored(f.clone(), f.key(&(&2u8, &"l")).unwrap());
    let f = function("keys::by_ref", "u32");
    stored(f.clone(), f.key(&(&Scale(3), &5u32)).unwrap());
    let f = function("keys::by_value", "u32");
    stored(f.clone(), f.key(&(&Scale(4), &6u32)).unwrap());

    // And the other way round: an entry put through the API is a hit through the attribute.
    let f = function("keys::plain", "alloc::string::String");
    let point = Point { x: 0, y: 0 };
    cache
        .put(
            &f,
            &(&"api", &9u64, &point, &None::<Vec<u8>>),
            &"from the api".to_owned(),
        )
        .unwrap();
    assert_eq!(plain("api", 9, point, None), "from the api");
    assert!(plain__is_cached("api", 9, Point { x: 0, y: 0 }, None));
}
