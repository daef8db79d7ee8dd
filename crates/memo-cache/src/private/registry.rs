//! The process-wide handles of `#[disk_cache]` functions: one [`Cache`] per directory and
//! `remote = ..` URL, opened on first use, tried again a few seconds after it fails to open, and
//! flushed at process exit (the handles live in a `static` and are never dropped). And the stable
//! name of a cached function, made from the `type_name` of a closure in its body.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::cache::Cache;

/// How long a directory that failed to open is left alone before trying again.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

enum Slot {
    Open(Cache),
    Failed(Instant),
}

/// Open handles by directory and `remote = ..` URL.
type Registry = HashMap<(PathBuf, Option<&'static str>), Slot>;

static CACHES: Mutex<Option<Registry>> = Mutex::new(None);
static FLUSH_AT_EXIT: Once = Once::new();

/// The process-wide handle of the cache in `dir` (else `MEMO_CACHE_DIR`, else the platform
/// default) with the Redis tier at `remote` (else `MEMO_CACHE_REDIS_URL`, if set), opened on
/// first use. `None`, with one warning, when it cannot be opened; a failed directory is tried
/// again after a few seconds, so a cache that comes back is used again.
pub(super) fn cache_with_remote(dir: Option<&str>, remote: Option<&'static str>) -> Option<Cache> {
    let path = match dir {
        Some(dir) => PathBuf::from(dir),
        None => match crate::layout::default_dir() {
            Ok(path) => path,
            Err(e) => {
                warn_open_failure(None, &e);
                return None;
            }
        },
    };
    let mut caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
    let caches = caches.get_or_insert_with(HashMap::new);
    let slot = (path, remote);
    match caches.get(&slot) {
        Some(Slot::Open(cache)) => return Some(cache.clone()),
        Some(Slot::Failed(at)) if at.elapsed() < REOPEN_AFTER => return None,
        _ => {}
    }
    match open_with_remote(&slot.0, remote) {
        Ok(cache) => {
            FLUSH_AT_EXIT.call_once(register_exit_flush);
            caches.insert(slot, Slot::Open(cache.clone()));
            Some(cache)
        }
        Err(e) => {
            let first = !caches.contains_key(&slot);
            if first {
                warn_open_failure(Some(&slot.0), &e);
            }
            caches.insert(slot, Slot::Failed(Instant::now()));
            None
        }
    }
}

pub(super) fn open_with_remote(
    path: &std::path::Path,
    remote: Option<&str>,
) -> crate::Result<Cache> {
    let builder = Cache::builder(path);
    let builder = match remote {
        Some(url) => builder.remote(crate::RemoteConfig::new(url)?),
        None => builder,
    };
    builder.open()
}

fn warn_open_failure(dir: Option<&std::path::Path>, e: &crate::Error) {
    crate::diagnostics::cannot_use(dir, e, "cached functions run uncached");
}

/// Does for every registered cache what dropping it would (they are never dropped): writes its
/// batched hit statistics and first-hit files, and closes its index. Called at process exit.
pub fn flush_all() {
    let caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
    for slot in caches.iter().flat_map(|c| c.values()) {
        if let Slot::Open(cache) = slot {
            cache.close();
        }
    }
}

#[cfg(unix)]
fn register_exit_flush() {
    extern "C" fn at_exit() {
        flush_all();
    }
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(at_exit);
    }
}

#[cfg(not(unix))]
fn register_exit_flush() {}

/// The stable name of a cached function, from `path`, the `type_name` of a closure in the body
/// of `generated` (the function itself, or one of its companions such as `f__clear`):
/// `app::Grid<f64>::area::{{closure}}` becomes `app::Grid<f64>::area`. With a `pinned` name
/// (`name = ".."`), that name, followed by the instantiation's type arguments if there are any,
/// so that two instantiations never share entries: `grid_area::<f64>`.
pub fn function_name(path: &str, generated: &str, ident: &str, pinned: Option<&str>) -> String {
    let mut path = path;
    while let Some(rest) = path.strip_suffix("::{{closure}}") {
        path = rest;
    }
    let split = last_separator(path).map_or(0, |at| at + 2);
    let (head, last) = path.split_at(split);
    let full = match last.strip_prefix(generated) {
        Some(arguments) => format!("{head}{ident}{arguments}"),
        None => path.to_owned(),
    };
    match pinned {
        None => full,
        Some(name) => {
            let arguments = type_arguments(&full);
            if arguments.is_empty() {
                name.to_owned()
            } else {
                format!("{name}::<{}>", arguments.join("; "))
            }
        }
    }
}

/// Where the last `::` outside angle brackets is (`<a::B as c::D>::f` gives the one before `f`).
fn last_separator(path: &str) -> Option<usize> {
    let bytes = path.as_bytes();
    let (mut depth, mut found) = (0usize, None);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' => depth += 1,
            // `->` in a function pointer type closes nothing.
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => found = Some(i),
            _ => {}
        }
    }
    found
}

/// The type argument lists in a path, outermost first: `<app::W<u8> as app::T>::f<String>` has
/// `app::W<u8>` (the implementing type of a trait impl, which a blanket `impl<T> Tr for T`
/// varies), `u8` and `String`. Lists of lifetimes only (`P<'_>`) are left out.
fn type_arguments(path: &str) -> Vec<&str> {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let after_name = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if bytes[i] == b'<' && !after_name {
            // `<Type as Trait>`: the implementing type, up to ` as ` at this depth.
            let (start, mut depth) = (i + 1, 0usize);
            let mut end = start;
            while end < bytes.len() {
                match bytes[end] {
                    b'<' | b'(' | b'[' => depth += 1,
                    b'>' if bytes[end - 1] == b'-' => {}
                    b'>' | b')' | b']' if depth > 0 => depth -= 1,
                    b' ' if depth == 0 && path[end..].starts_with(" as ") => break,
                    _ => {}
                }
                end += 1;
            }
            if end < bytes.len() {
                out.push(&path[start..end]);
                i = end;
            } else {
                i += 1;
            }
        } else if bytes[i] == b'<' && after_name {
            let (start, mut depth) = (i + 1, 1usize);
            i += 1;
            while i < bytes.len() && depth > 0 {
                match bytes[i] {
                    b'<' => depth += 1,
                    b'>' if bytes[i - 1] != b'-' => depth -= 1,
                    _ => {}
                }
                i += 1;
            }
            let list = &path[start..i.saturating_sub(1).max(start)];
            if !list.split(", ").all(|a| a.starts_with('\'')) {
                out.push(list);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn names_come_from_the_path_of_the_function_or_its_companion() {
        let name = |path, generated| function_name(path, generated, "f", None);
        assert_eq!(name("app::f::{{closure}}", "f"), "app::f");
        assert_eq!(name("app::f__clear::{{closure}}", "f__clear"), "app::f");
        assert_eq!(name("app::f::{{closure}}::{{closure}}", "f"), "app::f");
        assert_eq!(name("app::f<u8>::{{closure}}", "f"), "app::f<u8>");
        assert_eq!(
            name(
                "app::f__recompute<u8, fn(u8) -> u8>::{{closure}}",
                "f__recompute"
            ),
            "app::f<u8, fn(u8) -> u8>"
        );
        assert_eq!(
            name("<app::W<u8> as app::T>::f::{{closure}}", "f"),
            "<app::W<u8> as app::T>::f"
        );
        assert_eq!(name("app::outer::f::{{closure}}", "f"), "app::outer::f");
    }

    #[test]
    fn a_pinned_name_keeps_the_instantiation() {
        let pinned = |path| function_name(path, "f", "f", Some("pin"));
        assert_eq!(pinned("app::f::{{closure}}"), "pin");
        assert_eq!(pinned("app::P<'_>::f::{{closure}}"), "pin");
        assert_eq!(pinned("app::f<u8>::{{closure}}"), "pin::<u8>");
        assert_eq!(pinned("app::W<u8>::f<i8>::{{closure}}"), "pin::<u8; i8>");
        assert_eq!(
            pinned("<u32 as app::Describe>::f::{{closure}}"),
            "pin::<u32>"
        );
        assert_eq!(
            pinned("<u64 as app::Describe>::f::{{closure}}"),
            "pin::<u64>"
        );
        assert_eq!(
            pinned("<[u8; 3] as app::Width>::f::{{closure}}"),
            "pin::<[u8; 3]>"
        );
        assert_eq!(
            pinned("<app::W<u8> as app::From<i8>>::f::{{closure}}"),
            "pin::<app::W<u8>; i8>"
        );
    }
}
