//! One cached call, written once: look up (the local directory, then the shared tier), take the
//! key's local compute lease, take the fleet-wide lock, look again, compute, store, release.
//!
//! [`Cache::get_or_try_compute`](crate::Cache::get_or_try_compute) and the code
//! `#[disk_cache]` generates (through `__private::Site`, sync and async) all go through
//! [`run`] or [`run_async`]; nothing else repeats these steps.
//!
//! # The steps
//!
//! 1. **Look up**: the local directory, then the shared tier, whose hit is copied locally
//!    (`Cache::lookup`). A hit ends the call.
//! 2. **Lock locally**: the key's compute lease among the processes and threads of this machine
//!    (`crate::lock`). Whoever held it may have stored the value meanwhile: look again.
//! 3. **Lock the fleet**: with a shared tier, its lock item for the key (`crate::remote`).
//!    Another node may have stored the value just before: look in the tier again. If another
//!    node holds the lock, wait for its value; take over when it dies, give up after the tier's
//!    wait timeout.
//! 4. **Compute**, timed: the time is what cost-aware eviction weighs.
//! 5. **Store** locally and in the shared tier, then release the locks (fleet, then local), so a
//!    waiter that wakes finds the value.
//!
//! # Generic code without bounds
//!
//! The attribute's generated code cannot name `T: Serialize + DeserializeOwned` for every
//! return type (a type that fails that check must give one error, not one per use), so the
//! value-typed steps travel as plain `fn`s in a [`Steps`], made where the bound holds.
//!
//! # Performance
//!
//! The hit path is step 1 and nothing else: no lock, no allocation beyond the value's. The
//! arguments' record (`crate::args_record`) is taken only on a miss, except by the async path,
//! which must take it on the caller's thread before the lookup moves to the blocking pool.

use std::any::Any;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::args_record::{self, Args};
use crate::cache::Cache;
use crate::diagnostics::{CALLS, LOCK, Short};
use crate::error::Error;
use crate::index::Record;
use crate::key::{Function, Key};
use crate::lock::{Acquired, Lease, Owner};
use crate::remote::{Attempt, FleetLock, Waited};

/// What the first half of a call came to.
pub(crate) enum Begun<T> {
    /// A stored value: the call's answer.
    Found(T),
    /// Nothing stored: compute, then [`finish`]. Boxed: a hit, the common case, moves only
    /// its value.
    Missed(Box<Miss>),
}

/// A call that missed: the locks it holds for its key (released when it is dropped, after the
/// store) and what its entry will record.
#[derive(Debug)]
pub struct Miss {
    /// Held for its drop, which lets waiters on this machine go. Declared after `fleet`, so
    /// it is released last: a local waiter that wakes and takes the fleet lock finds it free.
    fleet: Option<FleetLock>,
    #[allow(dead_code)]
    local: Option<Lease>,
    args: Args,
    started: Instant,
}

impl Miss {
    /// A computation that holds no lock (a recompute, which replaces what is stored whatever it
    /// is, or a call whose first half could not run).
    pub(crate) fn unlocked(args: Args) -> Box<Miss> {
        Box::new(Miss {
            fleet: None,
            local: None,
            args,
            started: Instant::now(),
        })
    }
}

/// How the values of one type go through the protocol: plain `fn`s made where
/// `T: Serialize + DeserializeOwned` holds (see the module documentation).
pub struct Steps<T> {
    begin: fn(&Cache, &Function, &Key, Owner, Option<Args>) -> Begun<T>,
    store: fn(Box<Miss>, &Cache, &Function, &Key, &T),
}

impl<T> std::fmt::Debug for Steps<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Steps")
    }
}

impl<T: Serialize + DeserializeOwned + Any> Steps<T> {
    /// The steps of `T`.
    pub(crate) const fn of() -> &'static Steps<T> {
        const {
            &Steps {
                begin: begin::<T>,
                store: store::<T>,
            }
        }
    }
}

impl<T> Steps<T> {
    /// Steps that never find nor store anything: what a companion gets for a return type that
    /// failed its check (the cached function itself reports the error, once).
    pub(crate) const fn inert() -> &'static Steps<T> {
        const {
            &Steps {
                begin: |_, _, _, _, args| Begun::Missed(Miss::unlocked(args.unwrap_or_default())),
                store: |_, _, _, _, _| {},
            }
        }
    }
}

/// How a call's result `R` becomes what is stored (`V`), and back; and what else sees each
/// value found or stored (the attribute's in-memory LRU keeps a copy).
pub(crate) struct Handling<R, V, S> {
    /// `Ok(stored)`, or `Err(result)` for a result returned unstored (a `Result`'s `Err`).
    pub split: fn(R) -> Result<V, R>,
    /// The result of a call answered with a stored value.
    pub wrap: fn(V) -> R,
    pub seen: S,
}

/// Where a call is: the cache handle, the function and the key of its arguments.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub cache: &'a Cache,
    pub func: &'a Function,
    pub key: &'a Key,
}

/// The whole protocol, on this thread: look up, lock or wait, compute, store.
pub(crate) fn run<R, V, S: FnOnce(&V)>(
    steps: &Steps<V>,
    at: At<'_>,
    handling: Handling<R, V, S>,
    compute: impl FnOnce() -> R,
) -> R {
    match (steps.begin)(at.cache, at.func, at.key, Owner::thread(), None) {
        Begun::Found(value) => {
            (handling.seen)(&value);
            (handling.wrap)(value)
        }
        Begun::Missed(miss) => finish(steps, miss, at, handling, compute()),
    }
}

/// Stores what `handling` says of `result`, with the time since `miss` began, releases its locks
/// and returns the result.
pub(crate) fn finish<R, V, S: FnOnce(&V)>(
    steps: &Steps<V>,
    miss: Box<Miss>,
    at: At<'_>,
    handling: Handling<R, V, S>,
    result: R,
) -> R {
    match (handling.split)(result) {
        Ok(value) => {
            (steps.store)(miss, at.cache, at.func, at.key, &value);
            (handling.seen)(&value);
            (handling.wrap)(value)
        }
        Err(unstored) => unstored,
    }
}

/// Steps 1 to 3: the stored value, or the locks to compute under.
fn begin<T: DeserializeOwned + Any>(
    cache: &Cache,
    func: &Function,
    key: &Key,
    owner: Owner,
    args: Option<Args>,
) -> Begun<T> {
    if let Some(value) = cache.get_quietly(func, key) {
        return Begun::Found(value);
    }
    let args = args.unwrap_or_else(|| args_record::take(key));
    let (local, look) = local_lock(cache, func, key, owner);
    let mut miss = Box::new(Miss {
        fleet: None,
        local,
        args,
        started: Instant::now(),
    });
    if look {
        // Whoever held the lease, or finished just before we looked, may have stored it; it
        // wrote here. (Another node's value is looked for once we hold the fleet lock.)
        let local = cache.get_local(func, key).unwrap_or_else(|e| {
            cache.warn_once("read", &e);
            None
        });
        if let Some(value) = local {
            tracing::debug!(
                target: CALLS,
                function = func.name(),
                key = %Short(key),
                path = %cache.dir().display(),
                "hit: stored by another thread or process while this call waited"
            );
            return Begun::Found(value);
        }
    }
    if let Some(tier) = cache.tier() {
        let fetched = match tier.try_lock(key) {
            Attempt::Acquired(lock) => {
                miss.fleet = Some(lock);
                // Another node may have stored it and released just before we locked.
                tier.get(key, cache.now_ms(), func.ttl())
            }
            Attempt::Held => match tier.wait(key, func.ttl(), || cache.now_ms()) {
                Waited::Value(fetched) => Some(fetched),
                Waited::Acquired(lock) => {
                    miss.fleet = Some(lock);
                    None
                }
                Waited::GaveUp => None,
            },
            Attempt::Unavailable => None,
        };
        if let Some(fetched) = fetched
            && let Some(value) = cache.accept_remote(func, key, fetched)
        {
            return Begun::Found(value);
        }
    }
    miss.started = Instant::now();
    Begun::Missed(miss)
}

/// Takes the local compute lease of `key`, waiting while a live holder has it. Also says
/// whether the cache should be looked at again before computing: after a wait, whoever held the
/// lease may have stored the value.
fn local_lock(cache: &Cache, func: &Function, key: &Key, owner: Owner) -> (Option<Lease>, bool) {
    if cache.is_read_only() {
        return (None, false);
    }
    let locks = cache.compute_locks();
    let lease = func.lease().unwrap_or(locks.lease());
    let done = || cache.has_local(func, key);
    let (acquired, error) = locks.acquire_within(func.name(), key, owner, lease, done);
    if let Some(e) = error {
        cache.warn_once(
            "lock",
            &Error::io("taking the compute lock in", &cache.layout().locks, e),
        );
    }
    match acquired {
        Acquired::Held(lease) | Acquired::TookOver(lease) => (Some(lease), true),
        Acquired::Done => (None, true),
        Acquired::Reentrant => {
            tracing::debug!(target: LOCK,
                function = func.name(),
                key = %Short(key),
                path = %cache.dir().display(),
                "memo-cache: {} calls itself with the same key; computing without waiting",
                func.name()
            );
            (None, false)
        }
    }
}

/// Step 5: stores `value` (a failure is logged, never returned), then releases the locks.
fn store<T: Serialize + Any>(
    miss: Box<Miss>,
    cache: &Cache,
    func: &Function,
    key: &Key,
    value: &T,
) {
    let record = Record::computed(miss.started.elapsed(), &miss.args);
    cache.put_quietly(func, key, value, &record);
    drop(miss);
}

#[cfg(feature = "tokio")]
pub(crate) use asynchronous::run_async;

#[cfg(feature = "tokio")]
mod asynchronous {
    use std::future::Future;

    use super::*;

    fn task_hash(id: tokio::task::Id) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        hasher.finish()
    }

    /// Runs `work` on tokio's blocking pool; `None` when it panicked or the runtime is closing.
    async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        tokio::task::spawn_blocking(work).await.ok()
    }

    /// The protocol of [`run`] for an async computation: every disk read, wait, encode and write
    /// runs on the blocking pool, so a large value never stalls the executor.
    pub(crate) async fn run_async<R, V, S, Fut>(
        steps: &'static Steps<V>,
        (cache, func, key): (&'static Cache, &'static Function, Key),
        handling: Handling<R, V, S>,
        compute: Fut,
    ) -> R
    where
        V: Send + 'static,
        S: FnOnce(&V) + Send + 'static,
        Fut: Future<Output = R>,
    {
        // Before the first await: the key was made on this thread.
        let args = args_record::take(&key);
        // The task, not the blocking-pool thread: a call that awaits itself with the same key
        // is told so, instead of waiting for itself.
        let owner = match tokio::task::try_id() {
            Some(id) => Owner::Task(task_hash(id)),
            None => Owner::thread(),
        };
        let begun = blocking(move || (steps.begin)(cache, func, &key, owner, Some(args))).await;
        let miss = match begun {
            Some(Begun::Found(value)) => {
                (handling.seen)(&value);
                return (handling.wrap)(value);
            }
            Some(Begun::Missed(miss)) => miss,
            None => Miss::unlocked(Args::default()),
        };
        let mut miss = miss;
        miss.started = Instant::now();
        let result = compute.await;
        finish_async(steps, miss, (cache, func, key), handling, result).await
    }

    /// [`finish`] off the executor: encodes and writes on the blocking pool and hands the value
    /// back. It travels in a shared slot, so even a store that panics or is cancelled cannot
    /// lose it.
    pub(crate) async fn finish_async<R, V, S>(
        steps: &'static Steps<V>,
        miss: Box<Miss>,
        (cache, func, key): (&'static Cache, &'static Function, Key),
        handling: Handling<R, V, S>,
        result: R,
    ) -> R
    where
        V: Send + 'static,
        S: FnOnce(&V) + Send + 'static,
    {
        let value = match (handling.split)(result) {
            Ok(value) => value,
            Err(unstored) => return unstored,
        };
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(value)));
        let shared = std::sync::Arc::clone(&slot);
        let seen = handling.seen;
        blocking(move || {
            let value = shared.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(value) = value.as_ref() {
                (steps.store)(miss, cache, func, &key, value);
                seen(value);
            }
        })
        .await;
        let value = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        (handling.wrap)(value.expect("the stored value is handed back"))
    }
}

#[cfg(feature = "tokio")]
pub(crate) use asynchronous::finish_async;
