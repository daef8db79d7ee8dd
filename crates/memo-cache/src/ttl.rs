//! The ttl in force: when a stored value is too old to serve.
//!
//! A function's `ttl` belongs to the code that calls it, not to the entries it stored: a build
//! that adds `ttl = "1s"` to a function, or shortens its ttl, under the same pinned name and
//! version, must not be served values the older build stored three seconds, or three days, ago.
//! So every tier (the memory tier, the local index and its first-hit files, Redis) keeps the
//! time a value was created, and a read with [`Function::ttl`](crate::Function::ttl) `ttl` is a
//! hit only while
//!
//! ```text
//! now < created + ttl      (no ttl: no bound)
//! now < expires            (no expiry: no bound)
//! ```
//!
//! `expires` is the expiry fixed at store time; it stays a bound so that
//! [`Cache::put_with_ttl`](crate::Cache::put_with_ttl) keeps its promise whatever ttl the reader
//! has. A store clamps it to `created + ttl` of the storing function, so rows agree with the ttl
//! that wrote them. The consequence: a ttl lengthened or removed later applies to values stored
//! from then on; values already stored keep their earlier expiry (a miss, never a stale value).
//!
//! # The CLI's view
//!
//! `memo-cache ls`, `stats` and `prune --expired`, and eviction, see only the `expires` column:
//! they cannot know what ttl the code has now. So the rows of a function are brought to the
//! ttl in force (`expires = min(expires, created + ttl)`) by a process that uses it:
//!
//! - **When a row disagrees.** A read that finds a row of its function not bound by its ttl
//!   (no expiry, or a later one than `created + ttl`) notes the function. Rows agree in the
//!   common case (the ttl did not change), which costs nothing beyond the comparison.
//! - **At the first store.** The first store of a function by a handle also looks at the
//!   function's least recently used rows (a few, through the index on the function column): a
//!   build that stores only new keys still brings the old ones to its ttl.
//! - **Once per function and ttl per handle, never on a hit's time.** The update runs in the
//!   write transaction of the next store, or in the hit bookkeeping's flush, which is tried
//!   without waiting and kept for later when the write lock is taken (and run at close).
//!   It scans the function's rows once (`UPDATE ... WHERE function_id = ?`), and moves the
//!   removal epoch when it changed any, so that first-hit files copying the old expiry are
//!   read no more.
//!
//! # Two builds at once
//!
//! Two programs running at the same time with different ttls for the same function each apply
//! their own ttl to their calls, which is always right for that program. The rows follow the
//! shorter one as far as one program has brought them to it, and rows stored by the other
//! program afterwards carry its own expiry: the CLI then shows what the programs stored, not
//! what either would now serve. Nothing is ever served past the reader's ttl.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::duration_ms;
use crate::key::{Digest, Function};

/// How many of a function's least recently used rows its first store in a handle looks at.
pub(crate) const FIRST_STORE_PROBE: i64 = 16;

/// The time (Unix ms) from which a value created at `created` with the stored expiry `expires`
/// is a miss for a reader whose ttl is `ttl`; `None` when it never is. An unknown creation time
/// (`None`: a value from an older memo-cache) is a miss at once under a ttl.
pub(crate) fn deadline(
    created: Option<i64>,
    expires: Option<i64>,
    ttl: Option<Duration>,
) -> Option<i64> {
    let by_age = ttl.map(|ttl| match created {
        Some(created) => created.saturating_add(duration_ms(ttl)),
        None => i64::MIN,
    });
    match (expires, by_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// True when a value is a miss at `now` (see [`deadline`]).
pub(crate) fn is_expired(
    created: Option<i64>,
    expires: Option<i64>,
    ttl: Option<Duration>,
    now: i64,
) -> bool {
    deadline(created, expires, ttl).is_some_and(|at| at <= now)
}

/// True when the stored expiry already says what `ttl` says: no row update needed for it.
pub(crate) fn agrees(created: i64, expires: Option<i64>, ttl: Option<Duration>) -> bool {
    match ttl {
        None => true,
        Some(ttl) => expires.is_some_and(|at| at <= created.saturating_add(duration_ms(ttl))),
    }
}

/// The expiry to store for a value created at `now`: `ttl`'s when given, bounded by the ttl of
/// the function that stores it.
pub(crate) fn store_expiry(now: i64, ttl: Option<Duration>, func: &Function) -> Option<i64> {
    deadline(
        Some(now),
        ttl.map(|t| now.saturating_add(duration_ms(t))),
        func.ttl(),
    )
}

/// One function and the ttl its rows are to be brought to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub identity: Digest,
    pub ttl_ms: i64,
}

impl Target {
    /// `None` for a function without a ttl: rows need no update for it.
    pub fn of(func: &Function) -> Option<Target> {
        Some(Target {
            identity: func.identity(),
            ttl_ms: duration_ms(func.ttl()?),
        })
    }
}

/// Which functions a handle has brought to their ttl, and which it is to.
#[derive(Debug, Default)]
pub(crate) struct RowSync {
    state: Mutex<SyncState>,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Done, or due: each target is taken up once per handle.
    seen: HashSet<Target>,
    due: Vec<Target>,
    /// Functions whose first store looked at their oldest rows already.
    probed: HashSet<Target>,
}

impl RowSync {
    /// Notes that rows of `target` disagree with its ttl; true when this is new.
    pub fn note(&self, target: Target) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let new = state.seen.insert(target);
        if new {
            state.due.push(target);
        }
        new
    }

    /// True the first time `target` is asked about: its first store should probe its rows.
    pub fn first_store(&self, target: Target) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        !state.seen.contains(&target) && state.probed.insert(target)
    }

    /// The targets due, taken; [`RowSync::put_back`] returns them when their update failed.
    pub fn take_due(&self) -> Vec<Target> {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()).due)
    }

    /// True when some target is due.
    pub fn any_due(&self) -> bool {
        !self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due
            .is_empty()
    }

    /// Keeps `targets` due for a later try, and `probe` to be made again, after a write that
    /// failed.
    pub fn put_back(&self, targets: Vec<Target>, probe: Option<Target>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.due.extend(targets);
        if let Some(probe) = probe {
            state.probed.remove(&probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn the_readers_ttl_and_the_stored_expiry_both_bound_a_value() {
        // Stored without a ttl at 0: a reader without one never misses, one with 1 s from 1000.
        assert!(!is_expired(Some(0), None, None, i64::MAX));
        assert!(!is_expired(Some(0), None, S, 999));
        assert!(is_expired(Some(0), None, S, 1000));
        // A stored expiry holds whatever the reader's ttl.
        assert!(is_expired(Some(0), Some(500), None, 500));
        assert!(is_expired(Some(0), Some(500), S, 500));
        assert!(is_expired(Some(0), Some(5000), S, 1000));
        // No creation time known: a miss under a ttl, the stored expiry otherwise.
        assert!(is_expired(None, None, S, 0));
        assert!(!is_expired(None, Some(10), None, 9));
        // Far ends do not overflow.
        assert!(!is_expired(Some(i64::MAX), None, S, i64::MAX - 1));
    }

    #[test]
    fn rows_agree_when_their_expiry_is_within_the_ttl() {
        assert!(agrees(0, None, None));
        assert!(agrees(0, Some(1000), S));
        assert!(agrees(0, Some(10), S));
        assert!(!agrees(0, None, S));
        assert!(!agrees(0, Some(1001), S));
    }

    #[test]
    fn stores_are_bounded_by_the_storing_functions_ttl() {
        let plain = Function::new("t::f", "v1", "u8");
        let short = Function::new("t::f", "v1", "u8").with_ttl(Duration::from_secs(1));
        assert_eq!(store_expiry(10, None, &plain), None);
        assert_eq!(store_expiry(10, S, &plain), Some(1010));
        assert_eq!(store_expiry(10, None, &short), Some(1010));
        assert_eq!(
            store_expiry(10, Some(Duration::from_secs(60)), &short),
            Some(1010)
        );
        assert_eq!(store_expiry(10, Some(Duration::ZERO), &short), Some(10));
    }

    #[test]
    fn a_target_is_taken_up_once() {
        let sync = RowSync::default();
        let t = Target {
            identity: Digest([1; 32]),
            ttl_ms: 1000,
        };
        assert!(sync.first_store(t));
        assert!(!sync.first_store(t));
        assert!(sync.note(t));
        assert!(!sync.note(t));
        assert_eq!(sync.take_due(), vec![t]);
        assert!(!sync.any_due());
        sync.put_back(vec![t], None);
        assert_eq!(sync.take_due(), vec![t]);
    }
}
