//! The in-memory tier of `#[disk_cache(memory = N)]`: the most recently used values of one
//! function, kept in this process in front of the disk (and of any shared tier), handed out as
//! clones. The attribute's `Site` (`__private`) decides what goes in and when; this module only
//! keeps them.

use std::any::Any;
use std::sync::Mutex;
use std::time::SystemTime;

use hashlink::LruCache;

/// Least recently used eviction over at most `capacity` entries: hashlink's `LruCache`, a hash
/// map whose entries are also linked in order of use, so a hit, an insert and an eviction each
/// cost one hash probe and a few pointer moves, whatever the capacity. A hit takes one
/// uncontended lock. The map is made at the first store: a `Site` is built in a `static`.
pub(crate) struct Memory {
    capacity: usize,
    lru: Mutex<Option<LruCache<Box<[u8]>, MemoryEntry>>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("capacity", &self.capacity)
            .field("entries", &self.lock().as_ref().map_or(0, LruCache::len))
            .finish()
    }
}

struct MemoryEntry {
    value: Box<dyn Any + Send + Sync>,
    expires: Option<SystemTime>,
}

impl MemoryEntry {
    fn is_live(&self) -> bool {
        self.expires.is_none_or(|at| at > SystemTime::now())
    }
}

impl Memory {
    pub(crate) const fn new(capacity: usize) -> Memory {
        Memory {
            capacity,
            lru: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LruCache<Box<[u8]>, MemoryEntry>>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A clone of the value stored for `key` (made by `take`), which becomes the most recently
    /// used.
    pub(crate) fn get<T>(
        &self,
        key: &[u8],
        take: fn(&(dyn Any + Send + Sync)) -> Option<T>,
    ) -> Option<T> {
        let mut lru = self.lock();
        let lru = lru.as_mut()?;
        let entry = lru.get(key)?;
        if entry.is_live() {
            return take(&*entry.value);
        }
        lru.remove(key);
        None
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.lock()
            .as_ref()
            .and_then(|lru| lru.peek(key))
            .is_some_and(MemoryEntry::is_live)
    }

    /// Stores `value` as the most recently used, evicting the least recently used past capacity.
    pub(crate) fn put(
        &self,
        key: Box<[u8]>,
        value: Box<dyn Any + Send + Sync>,
        expires: Option<SystemTime>,
    ) {
        self.lock()
            .get_or_insert_with(|| LruCache::new(self.capacity))
            .insert(key, MemoryEntry { value, expires });
    }

    pub(crate) fn clear(&self) {
        if let Some(lru) = self.lock().as_mut() {
            lru.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::time::{Duration, SystemTime};

    use super::Memory;

    #[test]
    fn the_memory_tier_evicts_the_least_recently_used_and_drops_expired_values() {
        let memory = Memory::new(2);
        let ops: fn(&(dyn Any + Send + Sync)) -> Option<u32> = |any| any.downcast_ref().copied();
        let put = |key: &[u8], value: u32, expires| {
            memory.put(key.into(), Box::new(value), expires);
        };
        assert_eq!(
            memory.get(b"a", ops),
            None,
            "nothing before the first store"
        );
        put(b"a", 1, None);
        put(b"b", 2, None);
        assert_eq!(memory.get(b"a", ops), Some(1), "a is now used after b");
        put(b"c", 3, None);
        assert_eq!(memory.get(b"b", ops), None, "b, least recently used, went");
        assert_eq!(memory.get(b"a", ops), Some(1));
        assert_eq!(memory.get(b"c", ops), Some(3));
        // `contains` does not count as a use: a stays least recently used.
        assert!(memory.contains(b"a"));
        put(b"d", 4, None);
        assert!(!memory.contains(b"a"));
        put(b"e", 5, Some(SystemTime::now() - Duration::from_secs(1)));
        assert!(!memory.contains(b"e"));
        assert_eq!(memory.get(b"e", ops), None, "an expired value is a miss");
        memory.clear();
        assert!(!memory.contains(b"d"));
    }
}
