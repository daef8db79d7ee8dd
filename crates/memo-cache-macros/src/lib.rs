//! The `#[disk_cache]` attribute of [memo-cache-rs](https://docs.rs/memo-cache-rs); use it through
//! `memo_cache::disk_cache`, which documents it.
//!
//! The expansion follows thiserror's shape: `options` parses the attribute, `analyze`
//! validates the function and says what each argument means for the key, `expand` writes the
//! cached function and its companions. Any error is reported on the tokens it is about, beside
//! the user's function left as written, so one mistake gives one error.

#![warn(missing_docs)]

mod analyze;
mod expand;
mod fingerprint;
mod options;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

/// Caches a function's results on disk, keyed by what the function is and what it was called
/// with, so a restarted, re-run or parallel program never computes the same call twice.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// use memo_cache::disk_cache;
///
/// #[disk_cache]
/// fn word_lengths(text: &str, min: usize) -> Vec<usize> {
///     text.split_whitespace().map(str::len).filter(|&n| n >= min).collect()
/// }
///
/// assert_eq!(word_lengths("the quick brown fox", 4), vec![5, 5]); // computed and stored
/// assert_eq!(word_lengths("the quick brown fox", 4), vec![5, 5]); // read back
/// ```
///
/// Arguments may be owned or borrowed (`&str`, `&[T]`, `&T`): any `Serialize` type. The return
/// type must be `Serialize + DeserializeOwned`. A `HashMap` argument gives the same key whatever
/// its order; so does an argument whose type is written `HashSet<..>` or `&HashSet<..>` (a set
/// nested inside another type cannot be recognised: wrap it in [`Unordered`] yourself or use a
/// `BTreeSet`). Maps are keyed sorted, whatever their type: for an argument whose maps' order
/// matters (an `IndexMap`, a `serde_json::Value` built with `preserve_order`), name it in
/// `ordered(..)`, or wrap a nested one in [`Ordered`].
///
/// A function returning a `Result` stores only `Ok` values unless `cache_err = true`. That is
/// decided by what the return type is, not how it is written: `Result<T, E>`, `io::Result<T>`,
/// `anyhow::Result<T>`, `std::result::Result<T, E>` and your own `type Answer = Result<u32,
/// String>` all store only `Ok`; a type of your own that is merely named `Result` is stored
/// whole. (A return type the compiler cannot see through at the function, such as a generic
/// `T`, or an associated type of one, `S::Output`, is stored whole, even when it is a `Result`
/// in some instantiation; an associated type of a concrete type is seen through.)
///
/// # Arguments
///
/// Every argument the function takes is in the key, by the value it is called with (before the
/// body runs), except:
///
/// - an argument named in `ignore(..)`: left out, so it may be anything, `&mut T`,
///   `impl FnMut(..)`, a handle that is not `Serialize`; a hit skips whatever the body would
///   have done with it;
/// - an argument written `_`: the body cannot read it, so the result cannot depend on it.
///
/// A `mut` binding (`mut v: Vec<f64>`) and a `_`-prefixed name (`_unit: &str`) are arguments
/// like any other. An argument written as a pattern (`(x, y): (i64, i64)`,
/// `Point { x, y }: Point`, `&n: &u32`, `[a, .., b]: [u8; 4]`, `ref mut s: String`) is keyed as
/// a whole, parts it does not bind included: the generated function takes it under a name of
/// its own and destructures it at the top of the body. To leave one out of the key, name it,
/// `ignore` the name and destructure it in the body. A `#[cfg]` on an argument is an error:
/// put it on two versions of the whole function.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// use memo_cache::disk_cache;
///
/// #[disk_cache(ignore(progress))]
/// fn median(mut values: Vec<f64>, (lo, hi): (f64, f64), progress: &mut Vec<String>) -> f64 {
///     progress.push(format!("sorting {} values", values.len()));
///     values.retain(|v| (lo..hi).contains(v));
///     values.sort_by(f64::total_cmp);
///     values[values.len() / 2]
/// }
///
/// let mut log = Vec::new();
/// assert_eq!(median(vec![9.0, 1.0, 5.0], (0.0, 10.0), &mut log), 5.0);
/// assert_eq!(median(vec![9.0, 1.0, 5.0], (0.0, 10.0), &mut log), 5.0); // a hit: nothing logged
/// assert_eq!(log.len(), 1);
/// ```
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `dir = "path"` | the cache directory; else `MEMO_CACHE_DIR`; else the platform default (resolved at the function's first call) |
/// | `ttl = "90s"` | a stored value is served only while it is younger than this ([humantime] syntax: `"15min"`, `"1h 30m"`, `"7days"`). The ttl of the code that reads applies, in every tier: a ttl added or shortened in a later build makes older values misses at once. A ttl lengthened or removed later applies to values stored from then on; values already stored keep the expiry they were stored with |
/// | `ignore(a, b)` | arguments left out of the key: a logger, a progress flag, a client handle (`ignore(self)` for a method whose result does not depend on `self`) |
/// | `version = "2"` | pins the fingerprint by hand instead of the automatic one |
/// | `name = "stable_name"` | the function's identity, instead of its path; survives moving or renaming it (a generic instantiation adds its type arguments: `stable_name::<f64>`) |
/// | `cache_err = true` | store `Err` results too (`E` must then be `Serialize + DeserializeOwned`) |
/// | `ordered(a, b)` | arguments whose maps, at any depth, are keyed in their iteration order instead of sorted: an `IndexMap`, a `serde_json::Value` with `preserve_order`, a `Vec` of them (see [`Ordered`]) |
/// | `companions = false` | generate no `f__clear`, `f__is_cached`, `f__recompute`, `f__uncached`: needed on a method in a trait impl, which may hold only the trait's items |
/// | `memory = 1000` | an in-process LRU of that many entries in front of the disk, used even while the disk cannot be (a memoized recursion stays linear); the return type must be `Clone` |
/// | `lease = "10s"` | a caller waiting for another thread or process computing the same key takes over when the holder has not renewed its compute lease for this long (a stopped or frozen process; a live one renews several times a second however long it computes); default 30 s or `MEMO_CACHE_LOCK_LEASE`; at least 2 s |
/// | `write_timeout = "2s"` | a store waits at most this long for another process's write lock on the index, then the value is returned unstored, with one warning; default 5 s or `MEMO_CACHE_WRITE_TIMEOUT` |
/// | `compress = 3` | store this function's values zstd-compressed at this level (1 fastest to 22 smallest; 0 never), raw number arrays such as `Vec<f64>` included, when at least 4 KiB and compression saves a tenth; without it the cache's level applies (1 by default, or `MEMO_CACHE_COMPRESS`), to values other than number arrays (see `memo_cache::CacheBuilder::compress`) |
/// | `remote = "redis://host:6379"` | a shared tier behind the local directory, picked by the URL's scheme: Redis (several comma-separated URLs for a Redis Cluster, `rediss://` for TLS) `memcache://host:11211` (several comma-separated servers) or `postgres://user@host:5432/db`; else `MEMO_CACHE_REMOTE_URL` (or `MEMO_CACHE_REDIS_URL`); a tier whose cargo feature is off is reported once on stderr and not used; see `memo_cache::RemoteConfig` |
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// use memo_cache::disk_cache;
///
/// #[disk_cache(ttl = "1h", ignore(verbose), memory = 100, name = "docs::mean")]
/// fn mean(values: &[f64], verbose: bool) -> Option<f64> {
///     if verbose {
///         eprintln!("averaging {} values", values.len());
///     }
///     (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
/// }
///
/// assert_eq!(mean(&[1.0, 2.0, 6.0], true), Some(3.0));
/// assert_eq!(mean(&[1.0, 2.0, 6.0], false), Some(3.0)); // a hit: `verbose` is not in the key
/// ```
///
/// # Identity and staleness
///
/// A function is identified by its stable name, a fingerprint, and the name of its return type.
///
/// The stable name is the function's full path as the compiler names it at run time (the
/// `type_name` of a closure in its body): `app::stats::mean`, `app::Grid::area`,
/// `<app::Grid as app::Shape>::area`, `app::outer::helper` for a function declared inside
/// `outer`, and `app::Grid<f64>::area` or `app::mean<f32>` for each instantiation of a generic
/// `impl` or function. So two distinct functions never share one, however alike their names and
/// tokens: same-named functions in two `impl`s, two trait impls, two enclosing functions or two
/// modules stamped by one `macro_rules!`. Moving or renaming the function, its module or its
/// `impl` type starts a new cache (the old entries are never served and are pruned like stale
/// ones); `name = ".."` pins the name so they survive that. A compiler release that printed
/// paths differently would do the same, never serve a wrong value.
///
/// The compiler's names leave out blocks, closures and `const _: () = { .. }` items, so these are
/// not told apart: two same-named functions with the same tokens declared in two blocks or two
/// closures of one function, or in two `const _` blocks of one module; and two instantiations
/// of a generic function whose type arguments are two local types of the same name in such
/// blocks, or two closure types of one function. Give such functions distinct `name = ..`.
///
/// A pinned `name = ".."` adds the type arguments of the instantiation, the implementing type
/// of a trait impl included (`describe::<u32>` for `impl<T> Describe for T`), so a pinned name
/// in a blanket or generic impl still keeps each instantiation apart.
///
/// The fingerprint is blake3 of the function's tokens at compile time: reformatting it or
/// editing comments keeps its cache, a real edit starts a new one (as does `version = ..`
/// changed by hand). Results of an older fingerprint are never served; `memo-cache ls` shows
/// them as stale and eviction removes them first.
///
/// # Companions
///
/// For a cached function `f`, the attribute also generates, beside it and with its visibility,
/// generics and arguments, four companions. Their names join the function's name and the
/// operation with a double underscore, a spelling that rustc's `non_snake_case` lint rejects in
/// hand-written code, so they cannot collide with your own items:
///
/// | companion | does |
/// |---|---|
/// | `f__clear()` | removes every stored result of `f` (all versions) and empties its LRU; returns the [`Removal`] |
/// | `f__is_cached(args..)` | true when `f(args..)` would be answered from the cache, without running it |
/// | `f__recompute(args..)` | runs `f` whatever is cached, stores and returns the result (`async` for an `async fn`) |
/// | `f__uncached(args..)` | the original `f`: runs the body, reads and stores nothing |
///
/// For a method they are associated functions: `Self::f__clear()`, `point.f__is_cached(..)`.
/// For a generic function, `f__clear::<T>()` clears the instantiation for `T`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// use memo_cache::disk_cache;
///
/// #[disk_cache]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// assert!(!square__is_cached(7));
/// assert_eq!(square(7), 49);
/// assert!(square__is_cached(7));
/// assert_eq!(square__recompute(7), 49); // runs the body again and stores the result
/// assert_eq!(square__uncached(7), 49); // runs the body, touches no cache
/// assert_eq!(square__clear()?.entries, 1);
/// assert!(!square__is_cached(7));
/// # Ok::<(), memo_cache::Error>(())
/// ```
///
/// Methods taking `&self` put `self` in the key, so `Self` must be `Serialize`, or the method
/// must say `ignore(self)`:
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// use memo_cache::disk_cache;
///
/// #[derive(serde::Serialize)]
/// struct Grid {
///     cells: Vec<u32>,
/// }
///
/// impl Grid {
///     #[disk_cache]
///     fn total(&self, scale: u32) -> u64 {
///         self.cells.iter().map(|&c| u64::from(c * scale)).sum()
///     }
/// }
///
/// let grid = Grid { cells: vec![1, 2, 3] };
/// assert_eq!(grid.total(10), 60);
/// assert!(grid.total__is_cached(10));
/// ```
///
/// In a trait impl, which may hold only the trait's items, write `companions = false`:
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// use memo_cache::disk_cache;
///
/// trait Area {
///     fn area(&self) -> f64;
/// }
///
/// #[derive(serde::Serialize)]
/// struct Square(f64);
///
/// impl Area for Square {
///     #[disk_cache(companions = false)]
///     fn area(&self) -> f64 {
///         self.0 * self.0
///     }
/// }
///
/// assert_eq!(Square(3.0).area(), 9.0);
/// ```
///
/// # Recursion
///
/// Recursive calls go through the cache too, so the classic memoized Fibonacci computes each
/// `fib(k)` once, and a later process computes none:
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// #[memo_cache::disk_cache]
/// fn fib(n: u64) -> u64 {
///     if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
/// }
///
/// assert_eq!(fib(90), 2_880_067_194_370_816_120);
/// ```
///
/// # `async fn`
///
/// Under tokio (enable memo-cache-rs's `tokio` feature), disk reads, waits, encoding and writes run
/// on tokio's blocking pool, so a large value never stalls the executor. The return type must
/// then be `Send + 'static`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
/// #[memo_cache::disk_cache(ttl = "1h", ignore(progress))]
/// async fn fetch(url: String, progress: bool) -> Result<String, std::io::Error> {
///     if progress {
///         eprintln!("fetching {url}");
///     }
///     Ok(format!("contents of {url}"))
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// assert_eq!(fetch("https://example.com".into(), true).await.unwrap(), "contents of https://example.com");
/// assert!(fetch__is_cached("https://example.com".into(), false));
/// # });
/// ```
///
/// # Failures
///
/// A cache failure (full disk, read-only directory, corrupt index) never changes what the
/// function returns: it is logged once with `tracing::warn!` and the function runs. When several
/// processes or threads miss on the same key at once, one computes and the others wait for
/// its result.
///
/// # Limits
///
/// Not for `const fn`, `&mut`
/// or `impl Trait` arguments that take part in the key (`ignore` them), `&mut self` unless
/// `ignore(self)`. The body is
/// compiled into the function and into `f__recompute` and `f__uncached`, so a `static` declared
/// inside the body is not shared between them.
///
/// [humantime]: https://docs.rs/humantime
/// [`Unordered`]: https://docs.rs/memo-cache-rs/latest/memo_cache/struct.Unordered.html
/// [`Ordered`]: https://docs.rs/memo-cache-rs/latest/memo_cache/struct.Ordered.html
/// [`Removal`]: https://docs.rs/memo-cache-rs/latest/memo_cache/struct.Removal.html
#[proc_macro_attribute]
pub fn disk_cache(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match disk_cache_impl(attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            // The function as written, beside the error: one error, not a cascade.
            let error = error.to_compile_error();
            quote!(#error #item).into()
        }
    }
}

fn disk_cache_impl(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut options = options::Options::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    syn::parse::Parser::parse2(parser, attr)?;
    let item: syn::ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[disk_cache] goes on a function with a body (`fn` or `async fn`)",
        )
    })?;
    let plan = analyze::analyze(&item, &options)?;
    let fingerprint = fingerprint::of(&item);
    Ok(expand::expand(
        &item,
        &options,
        &plan,
        &fingerprint,
        &crate_path(),
    ))
}

/// The library's package name on crates.io (`memo-cache` there is another crate).
const PACKAGE: &str = "memo-cache-rs";

/// `::memo_cache`, or the name the user's Cargo.toml gives it.
fn crate_path() -> TokenStream2 {
    use proc_macro_crate::{FoundCrate, crate_name};
    match crate_name(PACKAGE) {
        // Not renamed: the crate goes by its lib name, `memo_cache`, which proc-macro-crate does
        // not know (it reads only the user's manifest, and answers with the dependency's key).
        Ok(FoundCrate::Name(name)) if name == PACKAGE.replace('-', "_") => quote!(::memo_cache),
        Ok(FoundCrate::Name(name)) => {
            let ident = proc_macro2::Ident::new(&name, proc_macro2::Span::call_site());
            quote!(::#ident)
        }
        // Itself: memo-cache's own tests and doctests are separate crates that see it by name.
        Ok(FoundCrate::Itself) | Err(_) => quote!(::memo_cache),
    }
}
