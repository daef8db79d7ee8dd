//! Claims about processes, tested with real child processes (`src/bin/e2e_child.rs`) sharing one
//! cache directory: restarts, maps built in different orders, concurrent mixed use, stampedes, a
//! killed lock holder, a read-only directory and the default directory.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use memo_cache::Cache;
use memo_cache_e2e::functions::{SQUARE, STAMPEDE, TAKEOVER};
use memo_cache_e2e::{
    KillOnDrop, Lines, read_lines, run_bounded, run_ok, slow_value, wait_bounded, wait_for_file,
};

const CHILD: &str = env!("CARGO_BIN_EXE_e2e_child");

fn child(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut cmd = Command::new(CHILD);
    cmd.args(args.iter().map(|a| a.as_ref()));
    cmd
}

/// The `key=value` words of one line of child output.
fn words(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

#[test]
fn a_new_process_reads_what_an_earlier_one_stored() {
    let dir = tempfile::tempdir().unwrap();
    let first = words(&run_ok(&mut child(&[&"square", &dir.path(), &"12"])));
    assert_eq!(
        (first["computed"].as_str(), first["value"].as_str()),
        ("true", "144")
    );
    let second = words(&run_ok(&mut child(&[&"square", &dir.path(), &"12"])));
    assert_eq!(
        (second["computed"].as_str(), second["value"].as_str()),
        ("false", "144")
    );
    // And a different argument is not confused with it.
    let other = words(&run_ok(&mut child(&[&"square", &dir.path(), &"13"])));
    assert_eq!(
        (other["computed"].as_str(), other["value"].as_str()),
        ("true", "169")
    );
}

#[test]
fn maps_built_in_different_orders_in_two_processes_are_computed_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = words(&run_ok(&mut child(&[&"maps", &dir.path(), &"forward"])));
    assert_eq!(first["computed"], "true");
    let second = words(&run_ok(&mut child(&[&"maps", &dir.path(), &"reverse"])));
    assert_eq!(
        second["computed"], "false",
        "the same maps in another order must hit"
    );
    assert_eq!(first["value"], second["value"]);
    assert_eq!(Cache::open(dir.path()).unwrap().stats().unwrap().entries, 1);
}

#[test]
fn four_processes_mixing_reads_and_writes_see_no_errors_and_only_right_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut children: Vec<_> = (1..=4u64)
        .map(|worker| {
            child(&[&"mixed", &dir.path(), &worker.to_string(), &"300"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map(KillOnDrop)
                .unwrap()
        })
        .collect();
    let outputs: Vec<(Lines, Lines)> = children
        .iter_mut()
        .map(|c| {
            (
                Lines::new(c.stdout.take().unwrap()),
                Lines::new(c.stderr.take().unwrap()),
            )
        })
        .collect();
    let statuses: Vec<_> = children.iter_mut().map(|c| wait_bounded(c)).collect();
    let mut computed = 0;
    for (status, (stdout, stderr)) in statuses.into_iter().zip(outputs) {
        let (stdout, stderr) = (stdout.rest(), stderr.rest());
        assert!(
            status.success(),
            "worker failed ({status}):\n{}\n{}",
            stdout.join("\n"),
            stderr.join("\n")
        );
        assert!(
            stderr.is_empty(),
            "a worker logged warnings or errors:\n{}",
            stderr.join("\n")
        );
        let summary = words(stdout.last().expect("a summary line"));
        computed += summary["computed"].parse::<u64>().unwrap();
    }
    // Each of the 48 arguments can be computed at most once per process, and only on a miss.
    assert!(computed <= 4 * 48, "computed {computed} times");

    // What is left in the directory is sound and right.
    let cache = Cache::open(dir.path()).unwrap();
    let report = cache.verify(&memo_cache::Verify::new()).unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    assert!(report.entries_checked > 0);
    for entry in cache.entries(None).unwrap() {
        let i = (0..48u64)
            .find(|i| entry.key == memo_cache_e2e_key(&entry.function, *i))
            .expect("a known key");
        match entry.function.as_str() {
            "e2e::small" => assert_eq!(
                cache
                    .get_key::<String>(&entry.function, &entry.key)
                    .unwrap(),
                Some(memo_cache_e2e::small_value(i))
            ),
            "e2e::large" => assert_eq!(
                memo_cache_e2e::summary(
                    cache
                        .get_key::<Vec<u8>>(&entry.function, &entry.key)
                        .unwrap()
                ),
                memo_cache_e2e::summary(Some(memo_cache_e2e::large_value(i)))
            ),
            "e2e::record" => assert_eq!(
                cache
                    .get_key::<memo_cache_e2e::Record>(&entry.function, &entry.key)
                    .unwrap(),
                Some(memo_cache_e2e::record_value(i))
            ),
            other => panic!("unexpected function {other}"),
        }
    }
}

fn memo_cache_e2e_key(function: &str, i: u64) -> memo_cache::Key {
    use memo_cache_e2e::functions::{LARGE, RECORD, SMALL};
    let f = match function {
        "e2e::small" => &SMALL,
        "e2e::large" => &LARGE,
        _ => &RECORD,
    };
    f.key(&(i,)).unwrap()
}

#[test]
fn four_processes_missing_on_one_slow_key_compute_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (go, log) = (work.path().join("go"), work.path().join("computed.log"));
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            child(&[&"stampede", &dir.path(), &go, &log])
                .stdout(Stdio::piped())
                .spawn()
                .map(KillOnDrop)
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<Lines> = children
        .iter_mut()
        .map(|c| Lines::new(c.stdout.take().unwrap()))
        .collect();
    for out in &mut outputs {
        out.wait_for("ready");
    }
    fs::write(&go, b"go").unwrap();
    for (c, out) in children.iter_mut().zip(outputs) {
        assert!(wait_bounded(c).success());
        assert_eq!(out.rest(), ["ready", "right=true"]);
    }
    let computed = read_lines(&log);
    assert_eq!(computed.len(), 1, "computed more than once: {computed:?}");
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(
        memo_cache_e2e::summary(
            cache
                .get::<_, Vec<u8>>(&STAMPEDE, &("the slow key",))
                .unwrap()
        ),
        memo_cache_e2e::summary(Some(slow_value()))
    );
}

#[test]
fn a_waiter_takes_over_when_the_lock_holder_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (ready, log) = (
        work.path().join("holding"),
        work.path().join("computed.log"),
    );

    let mut holder = KillOnDrop(child(&[&"hold", &dir.path(), &ready]).spawn().unwrap());
    wait_for_file(&ready);
    let mut waiter = child(&[&"takeover", &dir.path(), &log])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let stdout = Lines::new(waiter.stdout.take().unwrap());
    let mut stderr = Lines::new(waiter.stderr.take().unwrap());
    // The library says so at debug level just before it blocks on the lock.
    stderr.wait_for("waiting for another process computing");
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder must still be computing"
    );

    holder.kill().unwrap();
    let killed = holder.wait().unwrap();
    assert_eq!(killed.signal(), Some(libc::SIGKILL));

    assert!(wait_bounded(&mut waiter).success());
    let out = words(&stdout.rest().join("\n"));
    assert_eq!(out["computed"], "true");
    assert_eq!(out["value"], "from-the-waiter");
    assert_eq!(read_lines(&log), ["computed by the waiter"]);
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(
        cache
            .get::<_, String>(&TAKEOVER, &(7u32,))
            .unwrap()
            .as_deref(),
        Some("from-the-waiter")
    );
}

/// Makes `path` and everything under it readable by all and writable by none.
fn make_read_only(path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            make_read_only(&entry.unwrap().path());
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o555)).unwrap();
    } else {
        fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
    }
}

/// True when every ancestor of `path` can be searched by anyone.
fn world_traversable(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// The child program at a path that user `nobody` can run: where it is, or a copy.
fn child_for_nobody(scratch: &Path) -> PathBuf {
    let original = PathBuf::from(CHILD);
    let mode = fs::metadata(&original).unwrap().permissions().mode();
    if world_traversable(&original) && mode & 0o005 == 0o005 {
        return original;
    }
    let copy = scratch.join("e2e_child");
    fs::copy(&original, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

#[test]
fn a_read_only_cache_still_answers_and_serves_its_hits() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    {
        let cache = Cache::open(&dir).unwrap();
        assert_eq!(cache.get_or_compute(&SQUARE, &(1u64,), || 1u64), 1);
    }
    make_read_only(&dir);
    let before = memo_cache_e2e::snapshot(&dir);

    let mut cmd;
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        // Permissions do not stop root: run the child as `nobody`, who must reach the files.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            world_traversable(&dir),
            "{} is not reachable by other users; set TMPDIR",
            dir.display()
        );
        let program = child_for_nobody(root.path());
        cmd = Command::new(program);
        cmd.uid(65534).gid(65534);
    } else {
        cmd = Command::new(CHILD);
    }
    let out = run_bounded(cmd.arg("read-only").arg(&dir));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Restore write permission so the temp dir can be removed.
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(root.path())
        .status();
    assert!(
        out.status.success(),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    let lines: Vec<HashMap<String, String>> = stdout.lines().map(words).collect();
    assert_eq!(lines[0]["read_only"], "true", "{stdout}\n{stderr}");
    let calls: Vec<(&str, &str, &str)> = lines[1..]
        .iter()
        .map(|w| (w["n"].as_str(), w["computed"].as_str(), w["value"].as_str()))
        .collect();
    assert_eq!(
        calls,
        [("1", "false", "1"), ("2", "true", "4"), ("2", "true", "4")],
        "the stored entry is a hit, new calls compute (and cannot store)\n{stderr}"
    );
    let after = memo_cache_e2e::snapshot(&dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
}

#[test]
fn default_dir_honours_memo_cache_dir() {
    let out = run_ok(child(&[&"default-dir"]).env(memo_cache::DIR_ENV, "/somewhere/else"));
    assert_eq!(out.trim(), "/somewhere/else");

    // Empty means unset: the platform directory under $HOME.
    let home = tempfile::tempdir().unwrap();
    let out = run_ok(
        child(&[&"default-dir"])
            .env(memo_cache::DIR_ENV, "")
            .env("HOME", home.path())
            .env_remove("XDG_CACHE_HOME"),
    );
    assert_eq!(
        PathBuf::from(out.trim()),
        home.path().join(".cache").join("memo-cache")
    );
}
