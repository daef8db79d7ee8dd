//! The options every command takes (`--dir`, `--json`, `--color`, `-v`, `-q`), what they do to
//! stderr and stdout, and the documents made from the command line: completion scripts and man
//! pages. Run through the real binary.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use memo_cache::{Cache, Function};
use serde_json::Value;

fn demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    drop(demo_cache(dir.path()));
    dir
}

fn key_hex(func: &Function, args: &(impl serde::Serialize + ?Sized)) -> String {
    func.key(args).unwrap().to_hex()
}

/// Runs the binary on `dir` with `env` set, returning (status, stdout, stderr).
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = memo(dir);
    cmd.env_remove("RUST_LOG").env_remove("MEMO_CACHE_QUIET");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let output = cmd.args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

// ---- help -------------------------------------------------------------------------------------

#[test]
fn global_options_have_their_own_heading_in_every_commands_help() {
    for args in [
        &["--help"][..],
        &["ls", "--help"],
        &["prune", "--help"],
        &["remote", "stats", "--help"],
    ] {
        let out = ok(Path::new("."), args);
        let (own, global) = out
            .split_once("Global options:")
            .unwrap_or_else(|| panic!("{args:?}: no Global options heading:\n{out}"));
        for flag in [
            "--dir <DIR>",
            "--json",
            "--color <WHEN>",
            "-v, --verbose",
            "-q, --quiet",
        ] {
            assert!(
                global.contains(flag),
                "{args:?}: {flag} not under Global options:\n{out}"
            );
            assert!(
                !own.contains(flag),
                "{args:?}: {flag} among the command's own options:\n{out}"
            );
        }
    }
}

// ---- -v, -q and RUST_LOG ------------------------------------------------------------------------

/// The demo cache with one blob's bytes flipped; returns it and the key of that entry.
fn damaged() -> (tempfile::TempDir, String) {
    let dir = demo();
    let blob = blob_files(dir.path())
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&key_hex(&BLOB, &(0u8,)))
        })
        .unwrap();
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    (dir, key_hex(&BLOB, &(0u8,)))
}

#[test]
fn the_librarys_warnings_show_on_stderr_unless_quiet() {
    let (dir, key) = damaged();
    let (code, out, err) = run_env(dir.path(), &["show", &key, "--value"], &[]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "a warning, then the error:\n{err}");
    assert!(
        lines[0].contains("WARN memo_cache::store:") && lines[0].contains("dropping cache entry"),
        "{err}"
    );
    assert!(lines[0].contains(&format!("key={}", &key[..16])), "{err}");
    assert!(
        lines[1].starts_with("memo-cache: the value of entry"),
        "{err}"
    );

    // -q: the error alone.
    let (code, _, err) = run_env(dir.path(), &["show", &key, "--value", "-q"], &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("memo-cache: the value of entry"), "{err}");
    // RUST_LOG can turn a target off, too.
    let (_, _, err) = run_env(
        dir.path(),
        &["show", &key, "--value"],
        &[("RUST_LOG", "memo_cache::store=off")],
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn debug_events_come_with_vv_or_rust_log() {
    let removed = |err: &str| {
        err.lines()
            .filter(|l| l.contains("DEBUG memo_cache::store:") && l.contains("removed by a prune"))
            .count()
    };
    for (args, env) in [
        (&["prune", "--max-entries", "4", "-vv"][..], &[][..]),
        (
            &["prune", "--max-entries", "4"],
            &[("RUST_LOG", "memo_cache=debug")],
        ),
        (
            &["prune", "--max-entries", "4", "-v"],
            &[("RUST_LOG", "memo_cache::store=debug")],
        ),
    ] {
        let dir = demo();
        let (code, out, err) = run_env(dir.path(), args, env);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("Removed 10 entries"), "{out}");
        assert_eq!(removed(&err), 10, "{args:?} {env:?}:\n{err}");
        // Each removal names its function, key and cache, and says "removed" once.
        for line in err.lines() {
            assert!(line.contains("function="), "{line}");
            assert!(line.contains("key="), "{line}");
            assert!(
                line.contains(&format!("path={}", dir.path().display())),
                "{line}"
            );
            assert_eq!(line.matches("removed").count(), 1, "{line}");
        }
    }
    // By default, and with -v: none.
    for args in [
        &["prune", "--max-entries", "4"][..],
        &["prune", "--max-entries", "4", "-v"],
    ] {
        let dir = demo();
        let (code, _, err) = run_env(dir.path(), args, &[]);
        assert_eq!((code, removed(&err)), (0, 0), "{args:?}:\n{err}");
    }
}

#[test]
fn quiet_hides_notes_too_and_conflicts_with_verbose() {
    let dir = demo();
    let (code, _, err) = run_env(dir.path(), &["prune", "--func", "nope"], &[]);
    assert_eq!(code, 0);
    assert!(
        err.contains("memo-cache: note: no function is named"),
        "{err}"
    );
    let (code, _, err) = run_env(dir.path(), &["prune", "--func", "nope", "-q"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    // Wherever they are given, before or after the command, together or apart.
    for args in [
        &["ls", "-q", "-v"][..],
        &["-q", "-v", "ls"],
        &["-q", "ls", "-v"],
        &["-v", "ls", "--quiet"],
        &["-qv", "ls"],
        &["prune", "-vv", "-q", "--dry-run"],
    ] {
        let (code, out, err) = run_env(dir.path(), args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(
            err.starts_with("error: the argument '--"),
            "{args:?}: {err}"
        );
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
}

// ---- JSON ---------------------------------------------------------------------------------------

#[test]
fn every_json_document_carries_its_format_version() {
    let dir = demo();
    let key = key_hex(&POINT, &(0,));
    for args in [
        &["dir"][..],
        &["ls"],
        &["ls", "--entries"],
        &["stats"],
        &["show", &key],
        &["show", &key, "--value"],
        &["verify"],
        &["prune", "--dry-run"],
        &["prune"],
        &["clear", "--yes"],
    ] {
        let v = json(dir.path(), args);
        assert_eq!(v["format"], 1, "{args:?}: {v}");
        assert!(v.is_object(), "{args:?}");
    }
    let man = tempfile::tempdir().unwrap();
    let v = json(dir.path(), &["generate-man", man.path().to_str().unwrap()]);
    assert_eq!(v["format"], 1, "{v}");
    // A missing directory's removal, too.
    let v = json(&dir.path().join("gone"), &["prune"]);
    assert_eq!(
        (v["format"].as_u64(), v["entries"].as_u64()),
        (Some(1), Some(0))
    );
}

// ---- --dir --------------------------------------------------------------------------------------

#[test]
fn a_dir_that_is_a_file_is_named_as_one_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cache.txt");
    fs::write(&file, "not a cache").unwrap();
    let expected = format!(
        "memo-cache: {} is a file, not a cache directory; ",
        file.display()
    );
    for args in [
        &["ls"][..],
        &["stats"],
        &["show", "ab"],
        &["show", "ab", "--value"],
        &["prune"],
        &["clear", "--yes"],
        &["verify"],
        &["verify", "--fix"],
    ] {
        let (code, out, err) = run(&file, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with(&expected), "{args:?}: {err}");
        assert!(err.contains("MEMO_CACHE_DIR"), "{args:?}: {err}");
    }
    // A directory under the file.
    let under = file.join("sub");
    let (code, _, err) = run(&under, &["ls"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "memo-cache: {} is a file, so {} cannot be a cache directory; ",
            file.display(),
            under.display()
        )),
        "{err}"
    );
    // `dir` prints it, and says what it is.
    let (code, out, err) = run(&file, &["dir"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("{}\n", file.display()));
    assert!(err.contains("is a file, not a cache directory"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"not a cache", "left alone");
}

// ---- numbers ------------------------------------------------------------------------------------

#[test]
fn counts_in_text_have_thousands_separators_and_json_plain_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    for i in 0..1_200u32 {
        cache.put(&SQUARE, &(i,), &u64::from(i)).unwrap();
    }
    drop(cache);
    let stats = ok(dir.path(), &["stats"]);
    assert!(stats.contains("Entries:    1,200"), "{stats}");
    let ls = ok(dir.path(), &["ls"]);
    assert!(ls.contains("1,200"), "{ls}");
    assert_eq!(
        ok(dir.path(), &["verify"]),
        "Checked 1,200 entries: the cache is sound.\n"
    );
    let dry = ok(dir.path(), &["prune", "--max-entries", "100", "--dry-run"]);
    assert!(dry.starts_with("Would remove 1,100 entries ("), "{dry}");
    let v = json(dir.path(), &["prune", "--max-entries", "100", "--dry-run"]);
    assert_eq!(v["entries"], 1_100);
    let out = ok(dir.path(), &["clear", "--yes"]);
    assert!(out.starts_with("Removed 1,200 entries ("), "{out}");
}

#[test]
fn a_u128_value_shows_as_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let big = Function::new("demo::big", "v1", "u128");
    let signed = Function::new("demo::signed", "v1", "core::option::Option<i128>");
    let cache = Cache::open(dir.path()).unwrap();
    cache.put(&big, &(1,), &u128::MAX).unwrap();
    cache.put(&big, &(2,), &200_977u128).unwrap();
    cache.put(&signed, &(1,), &Some(i128::MIN)).unwrap();
    drop(cache);
    let show =
        |func: &Function, arg: i32| ok(dir.path(), &["show", &key_hex(func, &(arg,)), "--value"]);
    assert_eq!(show(&big, 1), format!("{}\n", u128::MAX));
    assert_eq!(show(&big, 2), "200977\n");
    assert_eq!(show(&signed, 1), format!("{}\n", i128::MIN));
    let (_, out, _) = run(
        dir.path(),
        &["show", &key_hex(&big, &(1,)), "--value", "--json"],
    );
    assert!(out.contains(&format!("\"value\": {}", u128::MAX)), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["return_type"], "u128");
}

// ---- completions and man pages ------------------------------------------------------------------

#[test]
fn completion_scripts_do_not_offer_cache_options_to_completions() {
    let bash = ok(Path::new("."), &["completions", "bash"]);
    let options_of = |case: &str| -> String {
        let at = bash
            .find(case)
            .unwrap_or_else(|| panic!("no {case} in the script"));
        let line = bash[at..]
            .lines()
            .find(|l| l.trim_start().starts_with("opts="))
            .unwrap();
        line.to_owned()
    };
    let completions = options_of("memo__subcmd__cache__subcmd__completions)");
    assert!(!completions.contains("--json"), "{completions}");
    assert!(!completions.contains("--dir"), "{completions}");
    assert!(completions.contains("--color"), "{completions}");
    let ls = options_of("memo__subcmd__cache__subcmd__ls)");
    assert!(ls.contains("--json") && ls.contains("--dir"), "{ls}");
    let zsh = ok(Path::new("."), &["completions", "zsh"]);
    let section = &zsh[zsh.find("(completions)").unwrap()..];
    let section = &section[..section.find(";;").unwrap()];
    assert!(!section.contains("--json"), "{section}");
}

#[test]
fn completions_refuse_json_and_ignore_dir() {
    for args in [
        &["completions", "bash", "--json"][..],
        &["--json", "completions", "zsh"],
    ] {
        let (code, out, err) = run_env(Path::new("."), args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(
            err.starts_with("error: the argument '--json' cannot be used with 'completions'"),
            "{err}"
        );
        assert!(err.contains("leave out --json"), "{err}");
    }
    // --dir (given by `run_env`) reads no cache here: ignored, as uv ignores its cache options.
    let (code, out, _) = run_env(Path::new("/nonexistent"), &["completions", "bash"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("memo-cache"), "{out}");
}

#[test]
fn generate_man_at_a_file_names_it_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pages");
    fs::write(&file, "not a directory").unwrap();
    for target in [file.clone(), file.join("man1")] {
        let (code, out, err) = run_env(
            Path::new("."),
            &["generate-man", target.to_str().unwrap()],
            &[],
        );
        assert_eq!(code, 1, "{err}");
        assert_eq!(out, "");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "memo-cache: cannot write man pages into {}: {} is a file, not a directory; \
                 nothing was written. Name a directory instead",
                target.display(),
                file.display()
            )),
            "{err}"
        );
        assert!(!err.contains("File exists"), "{err}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");
}

#[test]
fn generate_man_writes_a_page_per_command() {
    let man = tempfile::tempdir().unwrap();
    let out = ok(
        Path::new("."),
        &["generate-man", man.path().to_str().unwrap()],
    );
    let mut pages: Vec<String> = fs::read_dir(man.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "memo-cache-clear.1",
            "memo-cache-completions.1",
            "memo-cache-dir.1",
            "memo-cache-ls.1",
            "memo-cache-prune.1",
            "memo-cache-remote-clear.1",
            "memo-cache-remote-prune.1",
            "memo-cache-remote-stats.1",
            "memo-cache-remote.1",
            "memo-cache-show.1",
            "memo-cache-stats.1",
            "memo-cache-verify.1",
            "memo-cache.1",
        ]
    );
    assert_eq!(out.lines().count(), pages.len(), "{out}");
    let main = fs::read_to_string(man.path().join("memo-cache.1")).unwrap();
    assert!(
        main.starts_with(".ie \\n(.g .ds Aq") || main.contains(".TH memo-cache 1"),
        "{main}"
    );
    assert!(main.contains(".SH \"GLOBAL OPTIONS\""), "{main}");
    assert!(main.contains("Exit status"), "{main}");
    let prune = fs::read_to_string(man.path().join("memo-cache-prune.1")).unwrap();
    assert!(prune.contains(".TH memo-cache-prune 1"), "{prune}");
    assert!(prune.contains("max\\-size"), "{prune}");
    let completions = fs::read_to_string(man.path().join("memo-cache-completions.1")).unwrap();
    assert!(!completions.contains("json"), "{completions}");
    // Hidden: not in the help, nor a page of its own.
    assert!(!ok(Path::new("."), &["--help"]).contains("generate-man"));
}
