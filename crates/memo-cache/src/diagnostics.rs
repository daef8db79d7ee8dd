//! What memo-cache tells people: `tracing` events under a few public targets, and one line on
//! stderr when a process cannot use its cache and nothing else would say so.
//!
//! # Targets
//!
//! | target | level | what |
//! |--------|-------|------|
//! | `memo_cache` | warn | the cache cannot be used (cannot open, read or write): calls run uncached |
//! | `memo_cache::calls` | debug | each lookup: hit, or miss and why (no entry, expired, another version's entries) |
//! | `memo_cache::store` | warn, debug | entries dropped as bad (warn); each entry stored, evicted, pruned, or not stored (debug) |
//! | `memo_cache::lock` | warn, debug | compute locks: waiting for another process, taking over from a stopped one |
//! | `memo_cache::remote` | warn, debug | the Redis tier: outages, values ignored, values kept local-only |
//!
//! Events carry structured fields where they apply: `function` (its stable name), `key` (the
//! first 16 hex digits of the entry's key, as `memo-cache ls --entries` shows it) and `path` (the
//! cache directory or file concerned). `RUST_LOG=memo_cache=debug` with a subscriber that reads
//! it (`tracing_subscriber::EnvFilter`) answers "why did this call compute again?".
//!
//! # Without a subscriber
//!
//! Inside `#[disk_cache]` a cache failure never changes what a function returns, so a program
//! with no `tracing` subscriber would run uncached, every run, and never know. The first time a
//! process cannot use its cache it therefore prints one line on stderr when no subscriber is
//! installed (one that is installed decides for itself, by its filter, what is shown: an
//! `EnvFilter` needs a default level for when `RUST_LOG` is unset, or it shows errors only; the
//! crate documentation has the pattern). Setting [`QUIET_ENV`] (`MEMO_CACHE_QUIET=1`) turns that
//! line off.
//!
//! # Cost
//!
//! The debug events sit on the hit path. Disabled, each costs what `tracing`'s macros cost: a
//! compare against the static maximum level and a relaxed atomic load of the global one (a
//! callgrind count of the hit path, BENCHMARKS.md). Fields are formatted only when an event is
//! recorded, and explaining a miss reads the index only when its event is enabled.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use crate::cache::Cache;
use crate::error::Error;
use crate::index::{self, Removed};
use crate::key::{Function, Key};
use crate::ttl;

/// Target of "the cache cannot be used" warnings.
pub(crate) const CACHE: &str = "memo_cache";
/// Target of per-call debug events: hit, miss and why.
pub(crate) const CALLS: &str = "memo_cache::calls";
/// Target of events about stored entries: stored, evicted, dropped as bad.
pub(crate) const STORE: &str = "memo_cache::store";
/// Target of events about compute locks.
pub(crate) const LOCK: &str = "memo_cache::lock";
/// Target of events about the shared tier.
pub(crate) const REMOTE: &str = "memo_cache::remote";

/// The environment variable that, set to anything but empty or `0`, keeps memo-cache from
/// printing its one line on stderr when a process cannot use its cache and no `tracing`
/// subscriber is installed.
pub const QUIET_ENV: &str = "MEMO_CACHE_QUIET";

/// Whether this process has printed its line on stderr.
static TOLD: AtomicBool = AtomicBool::new(false);
/// Whether this process has said that a shared tier it was given is not built in.
static TOLD_TIER: AtomicBool = AtomicBool::new(false);

/// The first 16 hex digits of a key, formatted only when an event is recorded.
pub(crate) struct Short<'a>(pub &'a Key);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Says that the cache in `dir` cannot be used, and so `consequence` (e.g. "cached functions
/// run uncached"): a warning under [`CACHE`], and, when no subscriber is installed to show it,
/// one line on stderr, once per process, unless [`QUIET_ENV`] is set. `dir` is `None` when no
/// directory could be decided.
pub(crate) fn cannot_use(dir: Option<&Path>, error: &Error, consequence: &str) {
    tracing::warn!(
        target: CACHE,
        path = dir.map(|d| tracing::field::display(d.display())),
        "memo-cache: {error}; {consequence}"
    );
    if has_subscriber() || quiet() || TOLD.swap(true, Ordering::Relaxed) {
        return;
    }
    eprintln!("{}", stderr_line(dir, error, consequence));
}

/// Says that the shared tier at `urls` was asked for (by `MEMO_CACHE_REMOTE_URL`, the builder or
/// `remote = ..`) but this build lacks its cargo `feature`, so results stay on this machine: a
/// warning under [`REMOTE`] and, as for [`cannot_use`], one line on stderr per process when no
/// subscriber is installed, unless [`QUIET_ENV`] is set. Quietly running local-only would leave
/// a fleet recomputing everything with nobody told why.
pub(crate) fn tier_not_built(urls: &str, tier: &str, feature: &str) {
    let line = format!(
        "memo-cache: warning: the shared {tier} tier {urls} is configured, but this build of \
         memo-cache-rs lacks its `{feature}` feature; results stay on this machine. To fix: \
         enable it (`memo-cache-rs = {{ version = \"..\", features = [\"{feature}\"] }}`), or \
         unset the URL. {QUIET_ENV}=1 hides this line; a tracing subscriber shows every warning"
    );
    tracing::warn!(target: REMOTE, "{line}");
    if has_subscriber() || quiet() || TOLD_TIER.swap(true, Ordering::Relaxed) {
        return;
    }
    eprintln!("{line}");
}

/// Says that the shared tier at `urls` cannot be used as configured (`reason` says why and what
/// to do), so results stay on this machine: like [`tier_not_built`], a warning under [`REMOTE`]
/// and one line on stderr per process when no subscriber is installed, unless [`QUIET_ENV`].
#[cfg_attr(not(feature = "memcached"), allow(dead_code))]
pub(crate) fn tier_unusable(urls: &str, tier: &str, reason: &str) {
    let line = format!(
        "memo-cache: warning: the shared {tier} tier {urls} cannot be used: {reason}; results \
         stay on this machine. {QUIET_ENV}=1 hides this line; a tracing subscriber shows every \
         warning"
    );
    tracing::warn!(target: REMOTE, "{line}");
    if has_subscriber() || quiet() || TOLD_TIER.swap(true, Ordering::Relaxed) {
        return;
    }
    eprintln!("{line}");
}

/// The line for stderr: what failed (the error names its path), in which directory, what
/// happens now, what to do, and how to hide the line.
fn stderr_line(dir: Option<&Path>, error: &Error, consequence: &str) -> String {
    let place = match dir {
        Some(dir) => format!(" in {}", dir.display()),
        None => String::new(),
    };
    let advice = match advice(error) {
        Some(advice) => format!(" To fix: {advice}."),
        None => String::new(),
    };
    format!(
        "memo-cache: warning: cannot use the cache{place}: {error}; {consequence}.{advice} \
         {QUIET_ENV}=1 hides this line; a tracing subscriber shows every warning"
    )
}

/// What to do about `error`, when its own message does not say.
fn advice(error: &Error) -> Option<&'static str> {
    if error.is_disk_full() {
        return Some(
            "free some disk space, or give the cache a size limit (`memo-cache prune --max-size \
             ..` makes room now)",
        );
    }
    match error {
        Error::Io { action, .. } if action.contains("MEMO_CACHE_DIR") => None,
        Error::Io { .. } | Error::Index { .. } => Some(
            "point MEMO_CACHE_DIR (or the attribute's `dir = ..`) at a directory this process \
             can write",
        ),
        Error::EncodeKey { .. } => Some(
            "leave the argument that cannot be encoded out of the key with `ignore(..)`, or make \
             it serialize",
        ),
        Error::EncodeValue { .. } => Some("make the return value serialize with serde"),
        // The others say what to do themselves.
        _ => None,
    }
}

/// Logs, at debug level, why `key` of `func` was a miss: its entry expired, entries of another
/// version of the function exist (its code, version or return type changed), or there is no
/// entry. Reads the index only when the event is enabled.
pub(crate) fn explain_miss(cache: &Cache, func: &Function, key: &Key) {
    if !tracing::enabled!(target: CALLS, tracing::Level::DEBUG) {
        return;
    }
    let why = why_missed(cache, func, key).unwrap_or_else(|e| format!("(cannot tell why: {e})"));
    tracing::debug!(
        target: CALLS,
        function = func.name(),
        key = %Short(key),
        path = %cache.dir().display(),
        "miss: {why}"
    );
}

fn why_missed(cache: &Cache, func: &Function, key: &Key) -> crate::Result<String> {
    let index = cache.index()?;
    if let Some(row) = index.read(|c| index::lookup(c, key))? {
        let now = cache.now_ms();
        if ttl::is_expired(row.created, row.expires, func.ttl(), now) {
            let age = match row.created {
                Some(created) => format!(
                    "stored {} ago",
                    humantime::format_duration(Duration::from_secs(
                        (now.saturating_sub(created) / 1000).max(0) as u64
                    ))
                ),
                None => "stored by an older memo-cache".to_owned(),
            };
            let ttl = match func.ttl() {
                Some(ttl) => format!(", ttl {}", humantime::format_duration(ttl)),
                None => String::new(),
            };
            return Ok(format!("its entry has expired ({age}{ttl})"));
        }
        return Ok(
            "its entry could not be used (dropped as bad, or read as another type; a warning \
             said which)"
                .to_owned(),
        );
    }
    let identity = func.identity();
    let others = index.read(|c| index::other_versions(c, func.name(), &identity))?;
    if others.is_empty() {
        return Ok(
            "no entry for these arguments (never computed into this cache, or evicted, pruned \
             or cleared)"
                .to_owned(),
        );
    }
    let entries: u64 = others.iter().map(|v| v.entries).sum();
    let versions: Vec<String> = others
        .iter()
        .map(|v| format!("fingerprint {} returning {}", v.fingerprint, v.return_type))
        .collect();
    let (stale, are) = match (entries, others.len()) {
        (1, _) => ("1 entry of another version".to_owned(), "is"),
        (n, 1) => (format!("{n} entries of another version"), "are"),
        (n, _) => (format!("{n} entries of other versions"), "are"),
    };
    Ok(format!(
        "no entry for this version of the function (fingerprint {} returning {}); {stale} ({}) \
         {are} stale: its code, `version = ..` or return type changed",
        func.fingerprint(),
        func.return_type(),
        versions.join("; ")
    ))
}

/// The stable names of function versions by their `functions.id`, for the events about removed
/// entries; read only while those events are enabled (see [`FunctionNames::if_logged`]).
#[derive(Debug, Default)]
pub(crate) struct FunctionNames(HashMap<i64, String>);

impl FunctionNames {
    /// The names in the index, when removal events are enabled; none otherwise. Read in the
    /// transaction that removes entries, before it forgets emptied function versions.
    pub(crate) fn if_logged(conn: &rusqlite::Connection) -> rusqlite::Result<FunctionNames> {
        if !tracing::enabled!(target: STORE, tracing::Level::DEBUG) {
            return Ok(FunctionNames::default());
        }
        index::function_names(conn).map(FunctionNames)
    }

    fn of(&self, removed: &Removed) -> Option<&str> {
        self.0.get(&removed.function_id).map(String::as_str)
    }
}

/// Logs, at debug level, each entry `removed` and why (`reason`, e.g. "evicted: ..." or
/// "removed by a prune or clear"), with its function's name from `names`. Nothing is formatted
/// unless the event is enabled.
pub(crate) fn removed(
    removed: &[Removed],
    names: &FunctionNames,
    reason: fmt::Arguments<'_>,
    path: &Path,
) {
    if removed.is_empty() || !tracing::enabled!(target: STORE, tracing::Level::DEBUG) {
        return;
    }
    for r in removed {
        tracing::debug!(
            target: STORE,
            function = names.of(r),
            key = %Short(&r.key),
            bytes = r.size,
            path = %path.display(),
            "{reason}"
        );
    }
}

/// True when a `tracing` subscriber (global, or this thread's default) would receive events.
fn has_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
}

/// True when [`QUIET_ENV`] is set to something other than empty or `0`.
fn quiet() -> bool {
    std::env::var_os(QUIET_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_its_first_sixteen_hex_digits() {
        let key = Key::of(b"x");
        assert_eq!(Short(&key).to_string(), key.to_hex()[..16]);
    }

    #[test]
    fn the_stderr_line_names_the_path_and_what_to_do() {
        let error = Error::NotADirectory {
            path: "/tmp/f".into(),
        };
        let line = stderr_line(
            Some(Path::new("/tmp/f")),
            &error,
            "cached functions run uncached",
        );
        assert!(line.starts_with("memo-cache: warning: cannot use the cache in /tmp/f: "));
        assert!(line.contains("MEMO_CACHE_DIR"), "{line}");
        let io = Error::io(
            "creating cache directory",
            "/proc/x",
            std::io::ErrorKind::NotFound.into(),
        );
        let line = stderr_line(
            Some(Path::new("/proc/x")),
            &io,
            "cached functions run uncached",
        );
        assert!(line.contains("To fix: point MEMO_CACHE_DIR"), "{line}");
        assert!(line.contains("MEMO_CACHE_QUIET=1"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn a_thread_default_subscriber_counts() {
        let none = tracing::subscriber::NoSubscriber::new();
        tracing::subscriber::with_default(none, || assert!(!has_subscriber()));
        let some = tracing_subscriber::registry();
        tracing::subscriber::with_default(some, || assert!(has_subscriber()));
    }
}
