//! [`Site`], the state of one `#[disk_cache]` function, and its way through the protocol of a
//! cached call (`crate::protocol`, sync and async), with the in-memory tier (`memory = N`) in
//! front of the disk. The generated code holds a [`SiteRef`] in a `static` and calls the
//! site's methods; everything a call does with the cache goes through here.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use crate::cache::Cache;
use crate::key::{Function, Key};
use crate::memory::Memory;
use crate::protocol::{self, At, Handling, Miss};

use super::args::{KeyArgs, StoreOps, WriteArgs};
use super::memory::{Mem, MemOps, with_memory_key};
use super::probe::Outcome;
use super::registry::{cache_with_remote, open_with_remote};

static SITES: Mutex<Vec<(&'static str, &'static Site)>> = Mutex::new(Vec::new());

/// A function's way to its [`Site`]. The cached function and each of its companions keep one in
/// a `static`; all of them find the same `Site` through `id`, the source position of the
/// `#[disk_cache]` attribute, which is unique per cached function. After the first call, getting
/// the site is one atomic load.
#[derive(Debug)]
pub struct SiteRef {
    id: &'static str,
    dir: Option<&'static str>,
    remote: Option<&'static str>,
    memory: usize,
    site: OnceLock<&'static Site>,
}

impl SiteRef {
    /// The way to the site of the function whose attribute is at `id`.
    pub const fn new(
        id: &'static str,
        dir: Option<&'static str>,
        remote: Option<&'static str>,
        memory: usize,
    ) -> SiteRef {
        SiteRef {
            id,
            dir,
            remote,
            memory,
            site: OnceLock::new(),
        }
    }

    /// The site, registered on first use.
    #[inline]
    pub fn get(&'static self) -> &'static Site {
        self.site.get_or_init(|| {
            let mut sites = SITES.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, site)) = sites.iter().find(|(id, _)| *id == self.id) {
                return site;
            }
            let site: &'static Site =
                Box::leak(Box::new(Site::new(self.dir, self.remote, self.memory)));
            sites.push((self.id, site));
            site
        })
    }
}

/// The state of one `#[disk_cache]` function, kept in a `static` beside it: its identity, its
/// resolved cache handle and its optional in-memory LRU.
///
/// Resolving the directory and the handle once per function (not per call) is what keeps a hit
/// through the attribute as cheap as a hit through [`Cache::get`]: the directory is fixed at the
/// function's first call.
#[derive(Debug)]
pub struct Site {
    dir: Option<&'static str>,
    remote: Option<&'static str>,
    /// The identity of the first instantiation seen, by its path.
    function: OnceLock<(&'static str, Function)>,
    /// Those of any other instantiations (a generic function, or one in a generic `impl`).
    others: RwLock<Vec<(&'static str, &'static Function)>>,
    cache: OnceLock<Cache>,
    memory: Option<Memory>,
}

impl Site {
    /// A site caching in `dir` (else the default directory), with an LRU of `memory` entries in
    /// front of the disk when `memory > 0`.
    const fn new(dir: Option<&'static str>, remote: Option<&'static str>, memory: usize) -> Site {
        Site {
            dir,
            remote,
            function: OnceLock::new(),
            others: RwLock::new(Vec::new()),
            cache: OnceLock::new(),
            memory: if memory > 0 {
                Some(Memory::new(memory))
            } else {
                None
            },
        }
    }

    /// The identity of the function at `path`: the `type_name` of a closure in its body, which
    /// names the function's full path with the type arguments of this instantiation
    /// (`app::Grid<f64>::area::{{closure}}`). Made once per instantiation with `make`, which is
    /// given the path, and kept for the process; after that, one comparison.
    #[inline]
    pub fn function(
        &'static self,
        path: &'static str,
        make: impl FnOnce(&str) -> Function,
    ) -> &'static Function {
        if let Some((first, func)) = self.function.get()
            && (std::ptr::eq(*first, path) || *first == path)
        {
            return func;
        }
        self.other_function(path, make)
    }

    #[cold]
    fn other_function(
        &'static self,
        path: &'static str,
        make: impl FnOnce(&str) -> Function,
    ) -> &'static Function {
        let mut make = Some(make);
        let (first, func) = self
            .function
            .get_or_init(|| (path, (make.take().expect("not yet called"))(path)));
        if *first == path {
            return func;
        }
        let found = |list: &Vec<(&'static str, &'static Function)>| {
            list.iter()
                .find(|(p, _)| std::ptr::eq(*p, path) || *p == path)
                .map(|(_, f)| *f)
        };
        if let Some(func) = found(&self.others.read().unwrap_or_else(|p| p.into_inner())) {
            return func;
        }
        let mut list = self.others.write().unwrap_or_else(|p| p.into_inner());
        if let Some(func) = found(&list) {
            return func;
        }
        let made = (make.expect("made only for a path not seen before"))(path);
        // A companion (`f__recompute`) names the same function as `f` from another body: it
        // shares `f`'s identity object, whose address keys the in-memory LRU.
        let same = |f: &Function| f.identity() == made.identity();
        let func: &'static Function = match list.iter().map(|(_, f)| *f).find(|f| same(f)) {
            Some(existing) => existing,
            None if same(func) => func,
            None => Box::leak(Box::new(made)),
        };
        list.push((path, func));
        func
    }

    /// The cache handle, opened on first use; `None` (warned once) while it cannot be opened.
    pub fn cache(&'static self) -> Option<&'static Cache> {
        if let Some(cache) = self.cache.get() {
            return Some(cache);
        }
        let cache = cache_with_remote(self.dir, self.remote)?;
        Some(self.cache.get_or_init(|| cache))
    }

    /// The handle and key of a call, or `None` when the call must run uncached (no cache, or
    /// arguments that cannot be encoded; both logged).
    #[inline]
    pub fn key<F: WriteArgs>(
        &'static self,
        func: &Function,
        args: &KeyArgs<F>,
    ) -> Option<(&'static Cache, Key)> {
        let cache = self.cache()?;
        match func.key_from_parts(args.len, &args.write) {
            Ok(key) => Some((cache, key)),
            Err(e) => {
                cache.warn_once("key", &e);
                None
            }
        }
    }

    /// True when a sound, unexpired result is stored (in memory or on disk) for `key`.
    pub fn contains<F: WriteArgs>(
        &'static self,
        func: &'static Function,
        args: &KeyArgs<F>,
        key: Option<(&'static Cache, Key)>,
    ) -> bool {
        if let Some(memory) = &self.memory
            && with_memory_key(func, args, |bytes| {
                bytes.is_some_and(|b| memory.contains(b))
            })
        {
            return true;
        }
        let Some((cache, key)) = key else {
            return false;
        };
        match cache.contains_key(&key) {
            Ok(found) => found,
            Err(e) => {
                cache.warn_once("read", &e);
                false
            }
        }
    }

    /// Removes every stored result of `func` (all its versions) and empties the in-memory LRU.
    pub fn clear(&'static self, func: &Function) -> crate::Result<crate::Removal> {
        if let Some(memory) = &self.memory {
            memory.clear();
        }
        match self.cache() {
            Some(cache) => cache.clear_function(func.name()),
            None => {
                let dir = match self.dir {
                    Some(dir) => PathBuf::from(dir),
                    None => crate::layout::default_dir()?,
                };
                open_with_remote(&dir, self.remote)?.clear_function(func.name())
            }
        }
    }

    /// Computes, stores what `outcome` says to store (replacing any stored value) and returns
    /// the result.
    pub fn recompute<R, V, F>(
        &'static self,
        func: &Function,
        key: Option<(&'static Cache, Key)>,
        ops: &StoreOps<V>,
        outcome: Outcome<R, V>,
        mem: Option<Mem<V>>,
        compute: F,
    ) -> R
    where
        F: FnOnce() -> R,
    {
        let args = key
            .as_ref()
            .map(|(_, key)| crate::args_record::take(key))
            .unwrap_or_default();
        let miss = Miss::unlocked(args);
        let result = compute();
        let Some((cache, key)) = key else {
            return result;
        };
        let at = At {
            cache,
            func,
            key: &key,
        };
        protocol::finish(ops, miss, at, self.handling(at, outcome, mem), result)
    }

    /// The whole protocol (`crate::protocol`), the in-memory LRU keeping a copy of each value
    /// found or stored. What is stored, and how a stored value becomes the function's result, is
    /// `outcome`'s: the `Ok` value of a `Result`, the whole value of anything else.
    #[allow(clippy::too_many_arguments)]
    pub fn get_or_compute<R, V, F>(
        &'static self,
        func: &Function,
        cache: &Cache,
        key: &Key,
        ops: &StoreOps<V>,
        outcome: Outcome<R, V>,
        mem: Option<Mem<V>>,
        compute: F,
    ) -> R
    where
        F: FnOnce() -> R,
    {
        let at = At { cache, func, key };
        protocol::run(ops, at, self.handling(at, outcome, mem), compute)
    }

    /// How the protocol treats this function's results: as `outcome` says, each value found or
    /// stored remembered in the LRU.
    fn handling<'a, R, V: 'a>(
        &'static self,
        at: At<'a>,
        outcome: Outcome<R, V>,
        mem: Option<Mem<V>>,
    ) -> Handling<R, V, impl FnOnce(&V) + 'a> {
        Handling {
            split: outcome.split,
            wrap: outcome.wrap,
            seen: move |value: &V| self.remember(at.func, at.cache, at.key, mem.as_ref(), value),
        }
    }

    /// The result of a call that ran uncached (the cache cannot be used, or the arguments
    /// cannot be encoded): with `memory = N` it is still remembered in the in-memory LRU, so a
    /// memoized recursion stays memoized within the process while the disk cannot be used.
    pub fn uncached<R, V>(
        &'static self,
        func: &Function,
        outcome: Outcome<R, V>,
        mem: Option<Mem<V>>,
        result: R,
    ) -> R {
        let (Some(memory), Some(mem)) = (self.memory.as_ref(), mem) else {
            return result;
        };
        match (outcome.split)(result) {
            Ok(value) => {
                let expires = func.ttl().map(|ttl| SystemTime::now() + ttl);
                memory.put(mem.key, (mem.ops.keep)(&value), expires);
                (outcome.wrap)(value)
            }
            Err(unstored) => unstored,
        }
    }

    /// Asks the in-memory LRU first: `Ok(value)` on a hit; on a miss, what the rest of the call
    /// needs to remember its result (`None` without `memory = N`). The hit path encodes the
    /// arguments into a reused buffer and probes a map: no hashing with blake3, no allocation.
    #[inline]
    pub fn recall<F: WriteArgs, T>(
        &'static self,
        func: &'static Function,
        args: &KeyArgs<F>,
        ops: Option<MemOps<T>>,
    ) -> Result<T, Option<Mem<T>>> {
        let (Some(memory), Some(ops)) = (self.memory.as_ref(), ops) else {
            return Err(None);
        };
        let found = with_memory_key(func, args, |bytes| memory.get(bytes?, ops.take));
        match found {
            Some(value) => Ok(value),
            None => Err(self.mem(func, args, Some(ops))),
        }
    }

    /// What a call needs to remember its result in the LRU; `None` without `memory = N`.
    pub fn mem<F: WriteArgs, T>(
        &'static self,
        func: &'static Function,
        args: &KeyArgs<F>,
        ops: Option<MemOps<T>>,
    ) -> Option<Mem<T>> {
        self.memory.as_ref()?;
        let key = with_memory_key(func, args, |bytes| bytes.map(Box::<[u8]>::from))?;
        Some(Mem { ops: ops?, key })
    }

    fn remember<T>(
        &self,
        func: &Function,
        cache: &Cache,
        key: &Key,
        mem: Option<&Mem<T>>,
        value: &T,
    ) {
        let (Some(memory), Some(mem)) = (self.memory.as_ref(), mem) else {
            return;
        };
        // An entry with a ttl must leave memory when it is a miss on disk, not later: when it is
        // `ttl` old, or at the expiry it was stored with if sooner (see `crate::ttl`). Without a
        // ttl the index is not asked (a first hit need not open it), and the copy stays.
        let expires = match func.ttl() {
            None => None,
            Some(ttl) => match cache.expiry(key, Some(ttl)) {
                Ok(Some(expires)) => expires,
                _ => Some(SystemTime::now() + ttl),
            },
        };
        memory.put(mem.key.clone(), (mem.ops.keep)(value), expires);
    }
}

// ---- async ------------------------------------------------------------------------------------

/// The cached items of an `async fn` (the function and its `__recompute`) when the `tokio`
/// feature is on. Otherwise one clear compile error and the fallback (the function as written,
/// uncached), so that callers type-check and no other error follows from the missing feature.
#[cfg(feature = "tokio")]
#[doc(hidden)]
#[macro_export]
macro_rules! __memo_if_tokio {
    ({ $($cached:tt)* } else { $($fallback:tt)* }) => { $($cached)* };
}

/// The cached items of an `async fn` (the function and its `__recompute`) when the `tokio`
/// feature is on. Otherwise one clear compile error and the fallback (the function as written,
/// uncached), so that callers type-check and no other error follows from the missing feature.
#[cfg(not(feature = "tokio"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __memo_if_tokio {
    ({ $($cached:tt)* } else { $($fallback:tt)* }) => {
        ::core::compile_error!(
            "#[disk_cache] on an `async fn` needs memo-cache-rs's `tokio` feature: add \"tokio\" to \
             the `features` of the memo-cache-rs dependency in Cargo.toml, wherever it comes from \
             (`memo-cache-rs = { version = \"0.1\", features = [\"tokio\"] }`, \
             `memo-cache-rs = { path = \"..\", features = [\"tokio\"] }`), \
             or run `cargo add memo-cache-rs --features tokio`"
        );
        $($fallback)*
    };
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::*;
    use std::future::Future;

    impl Site {
        /// The async protocol (`crate::protocol::run_async`): every disk read, wait, encode and
        /// write runs on the blocking pool, so a large value never stalls the executor.
        #[allow(clippy::too_many_arguments)]
        pub async fn get_or_compute_async<R, V, Fut>(
            &'static self,
            func: &'static Function,
            cache: &'static Cache,
            key: Key,
            ops: &'static StoreOps<V>,
            outcome: Outcome<R, V>,
            mem: Option<Mem<V>>,
            compute: Fut,
        ) -> R
        where
            V: Send + 'static,
            Fut: Future<Output = R>,
        {
            let handling = self.handling_async(func, cache, key, outcome, mem);
            protocol::run_async(ops, (cache, func, key), handling, compute).await
        }

        /// Computes, stores what `outcome` says off the executor, and returns the result.
        pub async fn recompute_async<R, V, Fut>(
            &'static self,
            func: &'static Function,
            key: Option<(&'static Cache, Key)>,
            ops: &'static StoreOps<V>,
            outcome: Outcome<R, V>,
            mem: Option<Mem<V>>,
            compute: Fut,
        ) -> R
        where
            V: Send + 'static,
            Fut: Future<Output = R>,
        {
            let args = key
                .as_ref()
                .map(|(_, key)| crate::args_record::take(key))
                .unwrap_or_default();
            let miss = Miss::unlocked(args);
            let result = compute.await;
            let Some((cache, key)) = key else {
                return result;
            };
            let handling = self.handling_async(func, cache, key, outcome, mem);
            protocol::finish_async(ops, miss, (cache, func, key), handling, result).await
        }

        /// Like `handling`, owning what it needs, to run on the blocking pool.
        fn handling_async<R, V: Send + 'static>(
            &'static self,
            func: &'static Function,
            cache: &'static Cache,
            key: Key,
            outcome: Outcome<R, V>,
            mem: Option<Mem<V>>,
        ) -> Handling<R, V, impl FnOnce(&V) + Send + 'static> {
            Handling {
                split: outcome.split,
                wrap: outcome.wrap,
                seen: move |value: &V| self.remember(func, cache, &key, mem.as_ref(), value),
            }
        }
    }
}
