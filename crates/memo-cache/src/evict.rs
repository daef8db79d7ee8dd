//! What to remove, and when: the criteria of a prune (size, count, age, expiry, function and
//! staleness), the order of eviction under a size limit, and the statements that select and
//! delete those rows inside a transaction they are given. This module decides; it knows no
//! [`Cache`](crate::Cache). Removing through a cache (running that transaction and committing it,
//! then removing the blob files, sweeping stray files and giving the space back) is
//! `crate::prune`.
//!
//! Order of removal, everywhere: entries of stale function versions first, then expired ones,
//! then the rest in the order of the [`Policy`].
//!
//! # The cost-aware order
//!
//! [`Policy::CostAware`] is GreedyDual-Size-Frequency (Cherkasova, 1998; the policy joblib's
//! tracker asked for and dask's `cachey` keeps in memory). Each entry has a priority
//!
//! ```text
//! priority = clock + (1 + hits) x compute time / (size + 256 bytes)
//! ```
//!
//! set when it is stored and again whenever its hits are written to the index (the compute time
//! in microseconds, as the cache measured it; the 256 bytes stand for its row). Eviction removes
//! the lowest priority first and raises the clock to the priority of the last entry it removed,
//! so an entry that is not used again falls behind the ones stored or hit since, whatever it
//! cost: the clock is the aging. An entry stored with [`Cache::put`](crate::Cache::put) has no
//! compute time and its priority is the clock's at its last use, so among such entries the order
//! is least recently used. Priorities are kept in an indexed column (`entries_priority`), so
//! eviction walks an index instead of sorting the entries.

use std::fmt;
use std::time::Duration;

use rusqlite::{Transaction, params};

use crate::clock::duration_ms;
use crate::diagnostics::FunctionNames;
use crate::index::{self, Removed};
use crate::key::Key;
use crate::progress::{Progress, Reporter, Step};

/// Files in `tmp/`, `locks/` and `blobs/` younger than this are left alone by sweeps: they may
/// belong to a write in progress in another process.
pub const DEFAULT_FILE_GRACE: Duration = Duration::from_secs(60);

/// The page cache of a prune's transaction. A large prune touches most pages of the table and
/// of every index; in the usual 8 MiB cache, dirty pages were spilled to the WAL and read back
/// again and again (removing half of a million entries took 29 s instead of 10 s). SQLite only
/// allocates the pages it uses, and [`NORMAL_CACHE_SIZE`] is restored after.
const PRUNE_CACHE_SIZE: &str = "PRAGMA cache_size = -262144";
/// The page cache of every connection, as `index::connect` sets it.
pub(crate) const NORMAL_CACHE_SIZE: &str = "PRAGMA cache_size = -8192";

/// What a prune removes. Criteria add up: an entry goes if any selects it, and then entries go
/// in the [`Policy`]'s order until the size and count limits hold. [`Prune::function`] narrows
/// all of them.
///
/// ```
/// use memo_cache::{Cache, Function, Prune};
/// # let dir = tempfile::tempdir().unwrap();
/// let cache = Cache::open(dir.path()).unwrap();
/// let f = Function::new("docs::f", "v1", "Vec<u8>");
/// for i in 0..10u32 {
///     cache.put(&f, &(i,), &vec![0u8; 1000]).unwrap();
/// }
/// let removed = cache.prune(&Prune::new().max_entries(4)).unwrap();
/// assert_eq!(removed.entries, 6);
/// assert_eq!(cache.stats().unwrap().entries, 4);
/// ```
#[derive(Debug, Clone)]
pub struct Prune {
    pub(crate) all: bool,
    pub(crate) max_size: Option<u64>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) older_than: Option<Duration>,
    pub(crate) expired: bool,
    pub(crate) stale: bool,
    pub(crate) function: Option<String>,
    pub(crate) dry_run: bool,
    pub(crate) file_grace: Duration,
    pub(crate) policy: Policy,
    pub(crate) progress: Reporter,
}

/// The order in which entries go when a size or count limit must be met, after the stale and
/// expired ones (see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Policy {
    /// GreedyDual-Size-Frequency: the entries that save the least compute time per byte go
    /// first, aged by a clock that rises with each eviction. The default.
    #[default]
    CostAware,
    /// Least recently used first.
    Lru,
}

impl Policy {
    /// The policy's name as the CLI spells it: `cost` or `lru`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::CostAware => "cost",
            Policy::Lru => "lru",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    /// `cost` (or `cost-aware`, `gdsf`) and `lru`, in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cost" | "cost-aware" | "gdsf" => Ok(Policy::CostAware),
            "lru" => Ok(Policy::Lru),
            _ => Err(format!(
                "unknown eviction policy {s:?}: use 'cost' (time saved per byte) or 'lru' (least recently used)"
            )),
        }
    }
}

impl Default for Prune {
    fn default() -> Self {
        Prune::new()
    }
}

impl Prune {
    /// Removes no entries by itself; sweeps orphan, temp and lock files.
    #[must_use]
    pub fn new() -> Self {
        Prune {
            all: false,
            max_size: None,
            max_entries: None,
            older_than: None,
            expired: false,
            stale: false,
            function: None,
            dry_run: false,
            file_grace: DEFAULT_FILE_GRACE,
            policy: Policy::default(),
            progress: Reporter::default(),
        }
    }

    /// Every entry.
    #[must_use]
    pub fn all() -> Self {
        Prune {
            all: true,
            ..Prune::new()
        }
    }

    /// Entries, in the [`policy`](Prune::policy)'s order, until at most `bytes` stored bytes
    /// remain.
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Entries, in the [`policy`](Prune::policy)'s order, until at most `n` remain.
    #[must_use]
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// The order for [`max_size`](Prune::max_size) and [`max_entries`](Prune::max_entries)
    /// (default [`Policy::CostAware`]; an index of an older schema, which has no priorities, is
    /// pruned least recently used first).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Entries not used for longer than `age`.
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Expired entries.
    #[must_use]
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// Entries of function versions that are no longer current.
    #[must_use]
    pub fn stale(mut self) -> Self {
        self.stale = true;
        self
    }

    /// Only entries of the function named `name` (limits then apply to its entries alone).
    #[must_use]
    pub fn function(mut self, name: impl Into<String>) -> Self {
        self.function = Some(name.into());
        self
    }

    /// Report what would be removed, remove nothing.
    #[must_use]
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// How old an unknown file must be before it is swept (default one minute).
    #[must_use]
    pub fn file_grace(mut self, grace: Duration) -> Self {
        self.file_grace = grace;
        self
    }

    /// Calls `f` as entries and their files are removed: how many of how many (see
    /// [`crate::progress`]). Not called in a dry run, which removes nothing.
    ///
    /// With it, entries selected by expiry, staleness, age or [`Prune::all`] are deleted in
    /// batches of a few thousand, each counted, instead of by one statement per criterion:
    /// still in one transaction.
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Reporter::new(f);
        self
    }
}

/// What a prune, clear or eviction removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removal {
    /// Entries removed.
    pub entries: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Orphan blob files, old temp files and abandoned lock files removed.
    pub files: u64,
    /// Bytes of those files.
    pub file_bytes: u64,
    /// Outdated first-hit files removed: copies of rows that a removal voided, or that were
    /// removed. The cache's own bookkeeping, not stray files: not counted in `files`, and not
    /// shown by `Display`.
    pub first_hit_files: u64,
    /// Nothing was removed: this is what would have been.
    pub dry_run: bool,
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "Would remove"
        } else {
            "Removed"
        };
        write!(
            f,
            "{verb} {} {} ({})",
            self.entries,
            plural(self.entries, "entry", "entries"),
            human_bytes(self.bytes)
        )?;
        if self.files > 0 {
            write!(
                f,
                " and {} stray {} ({})",
                self.files,
                plural(self.files, "file", "files"),
                human_bytes(self.file_bytes)
            )?;
        }
        Ok(())
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// Bytes in binary units with one decimal: `1.4 MiB`.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Removes (or, in a dry run, selects) the rows `prune` selects, inside `tx`. `costs`: the index
/// keeps priorities (else the order is least recently used). `names` gets the names of their
/// functions when removal events are logged.
pub(crate) fn remove_in(
    tx: &Transaction,
    prune: &Prune,
    now: i64,
    costs: bool,
    names: &mut FunctionNames,
) -> rusqlite::Result<Vec<Removed>> {
    let scope = prune.function.as_deref();
    let policy = if costs { prune.policy } else { Policy::Lru };
    // Counted only when reported: the entries to remove, as each statement finds them.
    let off = Reporter::default();
    let progress = if prune.dry_run { &off } else { &prune.progress };
    let step = Step::RemovingEntries;
    tx.execute_batch(PRUNE_CACHE_SIZE)?;
    let mut gone: Vec<Removed> = Vec::new();
    let mut total = 0u64;
    let mut run = |condition: &str, extra: Option<i64>| -> rusqlite::Result<()> {
        let (sql, name) = scoped(condition, scope);
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
        if let Some(n) = &name {
            args.push(n);
        }
        if let Some(x) = &extra {
            args.push(x);
        }
        if prune.dry_run {
            gone.extend(index::select_where(tx, &sql, &args)?);
        } else if progress.is_on() {
            total += index::count_where(tx, &sql, &args)?;
            progress.report(step, gone.len() as u64, total);
            index::delete_where_batched(tx, &sql, &args, |batch| {
                gone.extend(batch);
                progress.report(step, gone.len() as u64, total);
            })?;
        } else {
            gone.extend(index::delete_where(tx, &sql, &args)?);
        }
        Ok(())
    };
    if prune.all {
        run("1", None)?;
    }
    if prune.expired {
        run("e.expires IS NOT NULL AND e.expires <= ?", Some(now))?;
    }
    if prune.stale {
        run("f.current = 0", None)?;
    }
    if let Some(age) = prune.older_than {
        run(
            "e.last_used < ?",
            Some(now.saturating_sub(duration_ms(age))),
        )?;
    }
    if prune.max_size.is_some() || prune.max_entries.is_some() {
        let already: std::collections::HashSet<Key> = gone.iter().map(|r| r.key).collect();
        let over = over_limits(
            tx,
            scope,
            (prune.max_size, prune.max_entries),
            now,
            &already,
            policy,
        )?;
        let (from, total) = (gone.len() as u64, gone.len() as u64 + over.len() as u64);
        if prune.dry_run {
            gone.extend(over.into_iter().map(|(_, removed)| removed));
        } else {
            let removed = index::delete_rows(tx, over, costs, |done| {
                progress.tick(step, from + done, total);
            })?;
            gone.extend(removed);
        }
        progress.report(step, gone.len() as u64, total);
    }
    // Before the emptied versions go, with their names.
    *names = FunctionNames::if_logged(tx)?;
    if !prune.dry_run {
        index::forget_empty_versions(tx)?;
    }
    Ok(gone)
}

fn scoped(condition: &str, function: Option<&str>) -> (String, Option<String>) {
    match function {
        Some(name) => (
            format!("f.name = ? AND ({condition})"),
            Some(name.to_owned()),
        ),
        None => (condition.to_owned(), None),
    }
}

/// Keys to remove, in eviction order, until the (scoped) totals are within the limits.
///
/// Stale entries, then expired ones, are few and found through their indexes; the rest come
/// from walking the policy's index (`(priority, last_used)` or `(last_used, key)`) and stop as
/// soon as the limits hold. (Sorting every entry by one combined order took 5 s on a million
/// entries.) The cost-aware order raises the clock to the last priority it takes.
///
/// Each row comes with its rowid and what its removal reports, read in the same walk: looking
/// each key up again to delete it took a quarter of a million-entry prune.
fn over_limits(
    tx: &Transaction,
    scope: Option<&str>,
    (max_size, max_entries): (Option<u64>, Option<u64>),
    now: i64,
    already: &std::collections::HashSet<Key>,
    policy: Policy,
) -> rusqlite::Result<Vec<(i64, index::Removed)>> {
    let (mut entries, mut bytes): (u64, u64) = tx.query_row(
        "SELECT coalesce(sum(entries), 0), coalesce(sum(bytes), 0) FROM functions WHERE ?1 IS NULL OR name = ?1",
        [scope],
        |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64)),
    )?;
    // A dry run still has the rows other criteria selected: count them as gone, as a real run
    // (which deleted them, so finds none here) does.
    let mut still_there = tx.prepare_cached("SELECT size FROM entries WHERE key = ?1")?;
    for key in already {
        for size in still_there.query_map([&key.0[..]], |r| r.get::<_, i64>(0))? {
            entries = entries.saturating_sub(1);
            bytes = bytes.saturating_sub(size?.max(0) as u64);
        }
    }
    let within = |entries: u64, bytes: u64| {
        max_size.is_none_or(|limit| bytes <= limit)
            && max_entries.is_none_or(|limit| entries <= limit)
    };
    let mut out = Vec::new();
    if within(entries, bytes) {
        return Ok(out);
    }
    // Skip entries another criterion already selected (a dry run still sees their rows).
    let mut chosen: std::collections::HashSet<Key> = already.clone();
    let by_policy = match policy {
        Policy::CostAware => {
            "SELECT key, hash, size, value IS NULL, function_id, rowid, priority FROM entries
             WHERE ?1 IS NULL OR function_id IN (SELECT id FROM functions WHERE name = ?1)
             ORDER BY priority, last_used"
        }
        Policy::Lru => {
            "SELECT key, hash, size, value IS NULL, function_id, rowid, 0.0 FROM entries
             WHERE ?1 IS NULL OR function_id IN (SELECT id FROM functions WHERE name = ?1)
             ORDER BY last_used, key"
        }
    };
    // Columns: the removed row (`index::removed_at`: five), its rowid, its priority (NULL:
    // not the policy's walk).
    let candidates = [
        // Stale first (expired ones among them before the rest), then expired.
        "SELECT e.key, e.hash, e.size, e.value IS NULL, e.function_id, e.rowid, NULL
         FROM entries e JOIN functions f ON f.id = e.function_id
         WHERE f.current = 0 AND (?1 IS NULL OR f.name = ?1)
         ORDER BY (e.expires IS NOT NULL AND e.expires <= ?2) DESC, e.last_used, e.key",
        "SELECT e.key, e.hash, e.size, e.value IS NULL, e.function_id, e.rowid, NULL
         FROM entries e JOIN functions f ON f.id = e.function_id
         WHERE e.expires IS NOT NULL AND e.expires <= ?2 AND (?1 IS NULL OR f.name = ?1)
         ORDER BY e.last_used, e.key",
        by_policy,
    ];
    let mut clock: Option<f64> = None;
    'all: for sql in candidates {
        let mut stmt = tx.prepare(sql)?;
        let mut rows = if sql.contains("?2") {
            stmt.query(params![scope, now])?
        } else {
            stmt.query(params![scope])?
        };
        while let Some(row) = rows.next()? {
            let Some(key) = index::digest_at(row, 0) else {
                continue;
            };
            if !chosen.insert(key) {
                continue;
            }
            let removed = index::removed_at(row, 0)?;
            let size = removed.size;
            if policy == Policy::CostAware
                && let Some(priority) = row.get::<_, Option<f64>>(6).ok().flatten()
            {
                clock = Some(priority);
            }
            out.push((row.get(5)?, removed));
            entries = entries.saturating_sub(1);
            bytes = bytes.saturating_sub(size);
            if within(entries, bytes) {
                break 'all;
            }
        }
    }
    if let Some(clock) = clock {
        raise_clock(tx, clock)?;
    }
    Ok(out)
}

/// Raises the cost-aware clock to `priority` (never lowers it).
fn raise_clock(tx: &Transaction, priority: f64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE policy SET value = max(value, ?1) WHERE name = 'clock'")?
        .execute([priority])?;
    Ok(())
}

/// Eviction after a store: stale, then expired entries, then the rest in the `policy`'s order
/// go until the stored bytes are within `limit`, less what the entries add to the index
/// ([`index::overhead`]). The entry just stored (`keep`) stays.
pub(crate) fn to_size_limit(
    tx: &Transaction,
    limit: u64,
    keep: &Key,
    now: i64,
    policy: Policy,
) -> rusqlite::Result<Vec<Removed>> {
    let (_, bytes) = index::totals(tx)?;
    let limit = limit.saturating_sub(index::overhead(tx)?);
    if bytes <= limit {
        return Ok(Vec::new());
    }
    let mut excess = bytes - limit;
    let mut removed = Vec::new();
    // Stale and expired first: usually few, found through their indexes.
    let mut candidates: Vec<Key> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT e.key FROM entries e JOIN functions f ON f.id = e.function_id WHERE f.current = 0
             ORDER BY e.last_used, e.key",
        )?;
        let rows = stmt.query_map([], |r| Ok(index::digest_at(r, 0)))?;
        for k in rows {
            candidates.extend(k?);
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "SELECT key FROM entries WHERE expires IS NOT NULL AND expires <= ?1 ORDER BY last_used, key",
        )?;
        let rows = stmt.query_map([now], |r| Ok(index::digest_at(r, 0)))?;
        for k in rows {
            candidates.extend(k?);
        }
    }
    for key in candidates.iter().filter(|k| *k != keep) {
        if let Some(r) = index::delete_entry(tx, key)? {
            excess = excess.saturating_sub(r.size);
            removed.push(r);
            if excess == 0 {
                return Ok(removed);
            }
        }
    }
    // Then in the policy's order, walking its index and stopping as soon as enough is freed.
    let mut chosen = Vec::new();
    let mut clock: Option<f64> = None;
    {
        let mut stmt = tx.prepare_cached(match policy {
            Policy::CostAware => {
                "SELECT key, size, priority FROM entries ORDER BY priority, last_used"
            }
            Policy::Lru => "SELECT key, size, NULL FROM entries ORDER BY last_used, key",
        })?;
        let mut rows = stmt.query([])?;
        let mut freed = 0u64;
        while let Some(row) = rows.next()? {
            let Some(key) = index::digest_at(row, 0) else {
                continue;
            };
            if key == *keep {
                continue;
            }
            freed += row.get::<_, i64>(1)?.max(0) as u64;
            if let Some(priority) = row.get::<_, Option<f64>>(2).ok().flatten() {
                clock = Some(priority);
            }
            chosen.push(key);
            if freed >= excess {
                break;
            }
        }
    }
    for key in &chosen {
        removed.extend(index::delete_entry(tx, key)?);
    }
    if let Some(clock) = clock {
        raise_clock(tx, clock)?;
        // GreedyDual prices the entry that made room at the clock its eviction raised (it was
        // inserted at the clock before).
        tx.prepare_cached(concat!(
            "UPDATE entries SET priority = ",
            index::gdsf_priority!("hits", "compute_us", "size"),
            " WHERE key = ?1"
        ))?
        .execute([&keep.0[..]])?;
    }
    Ok(removed)
}
