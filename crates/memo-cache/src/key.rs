//! Cache keys: what a call is, as 32 bytes.
//!
//! ```text
//! identity = blake3("memo-cache/key/v2\0" ‖ len‖name ‖ len‖fingerprint ‖ len‖return type)
//! key      = blake3_keyed(identity, canonical MessagePack of the arguments)
//! ```
//!
//! (`len` is the part's byte length as a little-endian `u64`.) The identity is computed once per
//! [`Function`] and kept; a key then costs one keyed hash over the encoded arguments, which are
//! serialized straight into the hasher through a small inline buffer, so a call with small
//! arguments allocates nothing. Slices and `Vec`s of plain numbers and bytes, and strings, reach
//! the hasher as one piece, hashed at blake3's speed (on every core when large). Maps are the
//! exception to "no allocation": their entries are encoded into buffers and sorted by bytes, so a
//! `HashMap` built in any order, at any depth, gives the same key; wrap an argument in
//! [`Ordered`] when its maps' order means something.
//!
//! The encoding itself is described in `canonical.rs`.
//!
//! # Compatibility
//!
//! The bytes fed to the hasher are frozen by golden tests (`tests/golden.rs`). Any change to them
//! must bump [`KEY_FORMAT_VERSION`], which changes every key: old entries then become misses,
//! never wrong answers. Version 2 brought the bulk runs of numbers (a `Vec<u8>` is bin, as a
//! byte string), the ordered-map marker, and the gathered writes (which change no byte).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::canonical;
use crate::error::{Error, Result};

/// The version of the key derivation; part of every key.
pub const KEY_FORMAT_VERSION: u32 = 2;

const FORMAT_TAG: &[u8] = b"memo-cache/key/v2\0";

/// 32 bytes of blake3 output, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The hash of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// From a 32-byte slice, as stored in the index.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        bytes.try_into().ok().map(Digest)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&blake3::Hash::from_bytes(self.0).to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&blake3::Hash::from_bytes(self.0).to_hex())
    }
}

/// Parses the full 64 hex digits of a key or digest (either case), as `memo-cache ls --entries`
/// shows them.
///
/// ```
/// use memo_cache::Key;
///
/// let key = Key::of(b"x");
/// assert_eq!(key.to_hex().parse::<Key>().unwrap(), key);
/// assert!("3fa2c1".parse::<Key>().is_err()); // a prefix: see `Cache::resolve_key`
/// ```
impl FromStr for Digest {
    type Err = Error;

    fn from_str(text: &str) -> Result<Digest> {
        blake3::Hash::from_hex(text)
            .map(|hash| Digest(*hash.as_bytes()))
            .map_err(|_| Error::BadKey(text.to_owned()))
    }
}

/// The key of one cache entry: a [`Digest`] over a function's identity and its arguments.
pub type Key = Digest;

/// Parses a full 64-digit hex key; the same as `text.parse::<Key>()`.
///
/// ```
/// let key = memo_cache::Key::of(b"x");
/// assert_eq!(memo_cache::parse_key(&key.to_hex()).unwrap(), key);
/// ```
pub fn parse_key(text: &str) -> Result<Key> {
    text.parse()
}

/// The value of one hex digit, for key prefixes (which `blake3::Hash::from_hex` does not take).
pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// What a cached function is: its stable name, a fingerprint of its code, and its return type.
///
/// Two calls share an entry only when all three match and their arguments encode equally.
/// A `const` constructor lets generated code keep one in a `static`, so the identity digest is
/// computed once per process.
///
/// ```
/// use memo_cache::Function;
///
/// static SQUARE: Function = Function::new("my_crate::square", "v1", "u64");
/// let a = SQUARE.key(&(3u64,)).unwrap();
/// let b = SQUARE.key(&(4u64,)).unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Debug)]
pub struct Function {
    name: Cow<'static, str>,
    fingerprint: Cow<'static, str>,
    return_type: Cow<'static, str>,
    ttl: Option<Duration>,
    lease: Option<Duration>,
    write_timeout: Option<Duration>,
    compression: Option<i32>,
    identity: OnceLock<[u8; 32]>,
}

impl Clone for Function {
    fn clone(&self) -> Self {
        Function {
            name: self.name.clone(),
            fingerprint: self.fingerprint.clone(),
            return_type: self.return_type.clone(),
            ttl: self.ttl,
            lease: self.lease,
            write_timeout: self.write_timeout,
            compression: self.compression,
            identity: self.identity.clone(),
        }
    }
}

impl Function {
    /// A function identity from static strings; usable in a `static`.
    #[must_use]
    pub const fn new(
        name: &'static str,
        fingerprint: &'static str,
        return_type: &'static str,
    ) -> Self {
        Function {
            name: Cow::Borrowed(name),
            fingerprint: Cow::Borrowed(fingerprint),
            return_type: Cow::Borrowed(return_type),
            ttl: None,
            lease: None,
            write_timeout: None,
            compression: None,
            identity: OnceLock::new(),
        }
    }

    /// A function identity from owned strings.
    #[must_use]
    pub fn owned(
        name: impl Into<String>,
        fingerprint: impl Into<String>,
        return_type: impl Into<String>,
    ) -> Self {
        Function {
            name: Cow::Owned(name.into()),
            fingerprint: Cow::Owned(fingerprint.into()),
            return_type: Cow::Owned(return_type.into()),
            ttl: None,
            lease: None,
            write_timeout: None,
            compression: None,
            identity: OnceLock::new(),
        }
    }

    /// The same function whose entries expire `ttl` after they are stored. The ttl is applied
    /// when a value is read: adding or shortening it makes values already stored older than
    /// `ttl` misses; lengthening it applies to values stored from then on.
    #[must_use]
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The same function, whose callers wait at most `lease` for a process computing the same
    /// key that has stopped renewing its compute lease (see
    /// [`CacheBuilder::lock_lease`](crate::CacheBuilder::lock_lease)).
    #[must_use]
    pub const fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The same function, whose stores wait at most `timeout` for another process's write lock
    /// (see [`CacheBuilder::write_timeout`](crate::CacheBuilder::write_timeout)).
    #[must_use]
    pub const fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// The same function, whose values are stored zstd-compressed at `level` (1 fastest to 22
    /// smallest; 0 never) whatever the cache's level
    /// ([`CacheBuilder::compress`](crate::CacheBuilder::compress)), raw number arrays such as
    /// `Vec<f64>` included, when they are at least [`COMPRESS_FROM`](crate::COMPRESS_FROM)
    /// bytes and compression saves a tenth. `#[disk_cache(compress = 3)]` sets it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// static SERIES: Function = Function::new("docs::series", "v1", "Vec<f64>").with_compression(3);
    /// let cache = Cache::open(dir.path()).unwrap();
    /// let steps: Vec<f64> = (0..100_000).map(|i| f64::from(i / 1000)).collect();
    /// cache.put(&SERIES, &(1,), &steps).unwrap();
    /// assert!(cache.entries(None).unwrap()[0].compressed);
    /// assert_eq!(cache.get::<_, Vec<f64>>(&SERIES, &(1,)).unwrap(), Some(steps));
    /// ```
    #[must_use]
    pub const fn with_compression(mut self, level: i32) -> Self {
        self.compression = Some(level);
        self
    }

    /// The function's own compression level, if it sets one.
    #[must_use]
    pub fn compression(&self) -> Option<i32> {
        self.compression
    }

    /// The function's own write timeout, if it sets one.
    #[must_use]
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The function's own compute lease, if it sets one.
    #[must_use]
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }

    /// The stable name, e.g. `my_crate::features`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fingerprint of the function's code (or its pinned version).
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The name of the return type.
    #[must_use]
    pub fn return_type(&self) -> &str {
        &self.return_type
    }

    /// The time to live of the function's entries, if any.
    #[must_use]
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The digest of name, fingerprint and return type: the part of every key fixed per function.
    #[must_use]
    pub fn identity(&self) -> Digest {
        Digest(*self.identity.get_or_init(|| {
            let mut h = blake3::Hasher::new();
            h.update(FORMAT_TAG);
            for part in [&*self.name, &*self.fingerprint, &*self.return_type] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            *h.finalize().as_bytes()
        }))
    }

    /// The key of a call with `args`: usually a tuple of the arguments that take part.
    pub fn key<A: Serialize + ?Sized>(&self, args: &A) -> Result<Key> {
        let mut hasher = blake3::Hasher::new_keyed(&self.identity().0);
        let mut sink = canonical::KeySink::hasher(&mut hasher);
        canonical::write(&mut sink, args).map_err(|e| self.encode_error(e))?;
        crate::args_record::note_args(&sink);
        drop(sink); // flushes what the sink gathered into the hasher
        let key = Digest(*hasher.finalize().as_bytes());
        crate::args_record::note_key(&key);
        Ok(key)
    }

    /// The key of a call whose `len` arguments `parts` writes one after the other: the same key
    /// as [`Function::key`] of the tuple of those arguments (`&(&a, &b)`), without the tuple's
    /// `Serialize` bound. This is how `#[disk_cache]` keys a call.
    pub(crate) fn key_from_parts(
        &self,
        len: usize,
        parts: impl FnOnce(&mut canonical::KeySink<'_>) -> canonical::R,
    ) -> Result<Key> {
        let mut hasher = blake3::Hasher::new_keyed(&self.identity().0);
        let mut sink = canonical::KeySink::hasher(&mut hasher);
        canonical::write_tuple_header(&mut sink, len)
            .and_then(|()| parts(&mut sink))
            .map_err(|e| self.encode_error(e))?;
        crate::args_record::note_args(&sink);
        drop(sink); // flushes what the sink gathered into the hasher
        let key = Digest(*hasher.finalize().as_bytes());
        crate::args_record::note_key(&key);
        Ok(key)
    }

    fn encode_error(&self, e: canonical::EncodeError) -> Error {
        Error::EncodeKey {
            function: self.name.to_string(),
            message: e.to_string(),
        }
    }
}

/// Serializes a collection whose iteration order means nothing (a `HashSet`) in a canonical
/// order, so equal sets give equal keys.
///
/// serde hands a `HashSet` over as a plain sequence, indistinguishable from a `Vec`, so the
/// cache cannot sort it by itself. `#[disk_cache]` wraps arguments whose type is written as
/// `HashSet<..>` in this automatically; wrap a set nested inside your own types yourself, or
/// use a `BTreeSet`.
///
/// ```
/// use memo_cache::{Function, Unordered};
/// use std::collections::HashSet;
///
/// let f = Function::new("demo::f", "v1", "u8");
/// let a: HashSet<u32> = (0..100).collect();
/// let b: HashSet<u32> = (0..100).rev().collect();
/// assert_eq!(f.key(&(Unordered(&a),)).unwrap(), f.key(&(Unordered(&b),)).unwrap());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Unordered<'a, C: ?Sized>(pub &'a C);

impl<'a, C> Serialize for Unordered<'a, C>
where
    C: ?Sized,
    &'a C: IntoIterator,
    <&'a C as IntoIterator>::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        type Item<'a, C> = <&'a C as IntoIterator>::Item;
        let mut items: Vec<(Vec<u8>, Vec<u8>, Item<'a, C>)> = Vec::new();
        for item in self.0 {
            let mut bytes = Vec::new();
            canonical::write(&mut bytes, &item).map_err(serde::ser::Error::custom)?;
            items.push((bytes, Vec::new(), item));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        // Items equal in that encoding are alike but for the order of their maps, which an
        // enclosing `Ordered` writes: order those by that too, so equal sets agree there as well.
        if items.windows(2).any(|w| w[0].0 == w[1].0) {
            for (_, ordered, item) in &mut items {
                canonical::write(ordered, &Ordered(&*item)).map_err(serde::ser::Error::custom)?;
            }
            items.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        }
        serializer.collect_seq(items.iter().map(|(_, _, item)| item))
    }
}

/// Serializes a value whose maps mean something by their order (an `IndexMap`, a
/// `serde_json::Value` built with `preserve_order`) so that two orders give two keys.
///
/// By default every map in an argument, at any depth, is written sorted by its entries' bytes,
/// which is right for a `HashMap`: its order means nothing and changes from run to run. A
/// function that reads the order of its map would then be handed the result computed for
/// another order. Inside `Ordered`, every map (at any depth, inside sequences and other maps too)
/// is written in iteration order, after a marker, so its key never equals the sorted key of the
/// same entries. Only wrap maps whose order is deterministic: a `HashMap` inside `Ordered` gives
/// a new key whenever it iterates differently. Struct fields are not affected: they are always
/// written in declaration order.
///
/// ```
/// use memo_cache::{Function, Ordered};
///
/// // Vec<(K, V)> stands in for an ordered map type, through serde's `collect_map`.
/// struct Pairs(Vec<(&'static str, u32)>);
/// impl serde::Serialize for Pairs {
///     fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
///         s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
///     }
/// }
///
/// let f = Function::new("demo::f", "v1", "u8");
/// let ab = Pairs(vec![("a", 1), ("b", 2)]);
/// let ba = Pairs(vec![("b", 2), ("a", 1)]);
/// assert_eq!(f.key(&(&ab,)).unwrap(), f.key(&(&ba,)).unwrap());
/// assert_ne!(f.key(&(Ordered(&ab),)).unwrap(), f.key(&(Ordered(&ba),)).unwrap());
/// assert_ne!(f.key(&(Ordered(&ab),)).unwrap(), f.key(&(&ab,)).unwrap());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Ordered<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Ordered<'_, T> {
    /// The value itself, through `serialize_newtype_struct` with a name the key encoder
    /// recognises; any other serializer sees just the value.
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(canonical::ORDERED_NAME, self.0)
    }
}

/// Keys are blake3 outputs, already uniform: their first eight bytes are the hash (SipHash
/// over all 32 took a twentieth of a hit).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _length_prefix: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static F: Function = Function::new("key_tests::f", "v1", "u8");

    #[test]
    fn a_key_parses_back_from_its_hex_in_either_case() {
        let key = F.key(&(7u8,)).unwrap();
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, key.to_string());
        assert_eq!(hex.parse::<Key>().unwrap(), key);
        assert_eq!(hex.to_uppercase().parse::<Key>().unwrap(), key);
        assert_eq!(parse_key(&hex).unwrap(), key);
        for bad in [
            "",
            &hex[..63],
            &format!("{hex}0"),
            &format!("g{}", &hex[1..]),
        ] {
            match bad.parse::<Key>() {
                Err(Error::BadKey(text)) => assert_eq!(text, bad),
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
    }

    /// A map that serializes in the order it was built, like an `IndexMap`.
    struct Pairs(Vec<(&'static str, u32)>);

    impl Serialize for Pairs {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    #[test]
    fn ordered_gives_each_order_its_key() {
        let ab = Pairs(vec![("a", 1), ("b", 2)]);
        let ba = Pairs(vec![("b", 2), ("a", 1)]);
        assert_eq!(F.key(&(&ab,)).unwrap(), F.key(&(&ba,)).unwrap());
        assert_ne!(
            F.key(&(Ordered(&ab),)).unwrap(),
            F.key(&(Ordered(&ba),)).unwrap()
        );
        assert_ne!(F.key(&(Ordered(&ab),)).unwrap(), F.key(&(&ab,)).unwrap());
        // A map inside a Vec inside Ordered is ordered too.
        let nested = |p: Pairs| vec![(1u8, p)];
        assert_ne!(
            F.key(&(Ordered(&nested(Pairs(vec![("a", 1), ("b", 2)]))),))
                .unwrap(),
            F.key(&(Ordered(&nested(Pairs(vec![("b", 2), ("a", 1)]))),))
                .unwrap()
        );
    }

    #[test]
    fn equal_sets_agree_inside_ordered_whatever_their_order() {
        // Two ordered maps with the same entries are equal to the sorting encoding: inside
        // `Ordered`, a set of them must still give one key whatever order the set iterates in.
        let ab = || Pairs(vec![("a", 1), ("b", 2)]);
        let ba = || Pairs(vec![("b", 2), ("a", 1)]);
        let one = vec![ab(), ba()];
        let other = vec![ba(), ab()];
        assert_eq!(
            F.key(&(Ordered(&Unordered(&one)),)).unwrap(),
            F.key(&(Ordered(&Unordered(&other)),)).unwrap()
        );
        assert_eq!(
            F.key(&(Unordered(&one),)).unwrap(),
            F.key(&(Unordered(&other),)).unwrap()
        );
        // And a set of different ordered maps is another key.
        let twice = vec![ab(), ab()];
        assert_ne!(
            F.key(&(Ordered(&Unordered(&one)),)).unwrap(),
            F.key(&(Ordered(&Unordered(&twice)),)).unwrap()
        );
    }

    #[test]
    fn a_key_is_the_keyed_hash_of_the_canonical_bytes_at_every_size() {
        // Small writes gathered, large ones straight through, the largest on every core.
        for len in [0usize, 1, 1023, 1024, 5000, 200_000, (1 << 21) + 3] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let floats: Vec<f64> = (0..len / 8).map(|i| i as f64).collect();
            let args = (len as u64, &bytes, "between", &floats, 1u8);
            let expected = blake3::keyed_hash(&F.identity().0, &canonical::to_vec(&args).unwrap());
            assert_eq!(
                F.key(&args).unwrap().0,
                *expected.as_bytes(),
                "length {len}"
            );
            let parts = F
                .key_from_parts(5, |sink| {
                    canonical::write(sink, &(len as u64))?;
                    canonical::write(sink, &bytes)?;
                    canonical::write(sink, "between")?;
                    canonical::write(sink, &floats)?;
                    canonical::write(sink, &1u8)
                })
                .unwrap();
            assert_eq!(parts.0, *expected.as_bytes(), "length {len}, from parts");
        }
    }
}
