//! `ls` and `verify` on `cache_directory.example`, the small real cache at the repository root
//! made by the project's example program.

mod common;

use std::path::PathBuf;

use memo_cache::Cache;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../cache_directory.example")
}

#[test]
fn ls_lists_what_the_library_sees() {
    let dir = example_dir();
    let library = Cache::builder(&dir)
        .read_only()
        .open()
        .unwrap()
        .functions()
        .unwrap();
    assert!(!library.is_empty(), "the example cache is empty");

    let rows = common::json(&dir, &["ls"]);
    let rows = rows["functions"].as_array().unwrap();
    assert_eq!(rows.len(), library.len());
    for (row, f) in rows.iter().zip(&library) {
        assert_eq!(row["function"], f.name.as_str());
        assert_eq!(row["entries"], f.entries);
        assert_eq!(row["bytes"], f.bytes);
    }
    let table = common::ok(&dir, &["ls"]);
    assert!(table.starts_with("FUNCTION"), "{table}");
    for f in &library {
        assert!(table.contains(&f.name), "{table}");
    }
    let entries = common::json(&dir, &["ls", "--entries"]);
    let total: u64 = library.iter().map(|f| f.entries).sum();
    assert_eq!(entries["entries"].as_array().unwrap().len() as u64, total);
}

#[test]
fn verify_finds_it_sound() {
    let dir = example_dir();
    let (code, out, err) = common::run(&dir, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("the cache is sound.\n"), "{out}");
}
