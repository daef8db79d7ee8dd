//! Cache keys: what a call is, as 32 bytes.
//!
//! ```text
//! identity = blake3(FORMAT_TAG ‖ len‖name ‖ len‖fingerprint ‖ len‖return type)
//! key      = blake3_keyed(identity, canonical MessagePack of the arguments)
//! ```
//!
//! The identity is computed once per [`Function`] and kept; a key then costs one keyed hash over
//! the encoded arguments, which are serialized straight into the hasher, so a call with small
//! arguments allocates nothing. Maps are the exception: their entries are encoded into buffers
//! and sorted by bytes, so a `HashMap` built in any order, at any depth, gives the same key.
//!
//! # Compatibility
//!
//! The bytes fed to the hasher are frozen by golden tests (`tests/golden.rs`). Any change to them
//! must bump [`KEY_FORMAT_VERSION`], which changes every key: old entries then become misses,
//! never wrong answers.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::canonical;
use crate::error::{Error, Result};

/// The version of the key derivation; part of every key.
pub const KEY_FORMAT_VERSION: u32 = 1;

const FORMAT_TAG: &[u8] = b"memo-cache/key/v1\0";

/// 32 bytes of blake3 output, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// From a 32-byte slice, as stored in the index.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        bytes.try_into().ok().map(Digest)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The key of one cache entry: a [`Digest`] over a function's identity and its arguments.
pub type Key = Digest;

/// Parses a full 64-digit hex key.
///
/// ```
/// let key = memo_cache::Key::of(b"x");
/// assert_eq!(memo_cache::parse_key(&key.to_hex()).unwrap(), key);
/// ```
pub fn parse_key(text: &str) -> Result<Key> {
    if text.len() != 64 {
        return Err(Error::BadKey(text.to_owned()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or_else(|| Error::BadKey(text.to_owned()))?;
        let lo = hex_value(pair[1]).ok_or_else(|| Error::BadKey(text.to_owned()))?;
        out[i] = hi << 4 | lo;
    }
    Ok(Digest(out))
}

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
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
            identity: self.identity.clone(),
        }
    }
}

impl Function {
    /// A function identity from static strings; usable in a `static`.
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
            identity: OnceLock::new(),
        }
    }

    /// A function identity from owned strings.
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
            identity: OnceLock::new(),
        }
    }

    /// The same function whose entries expire `ttl` after they are stored. The ttl is applied
    /// when a value is read: adding or shortening it makes values already stored older than
    /// `ttl` misses; lengthening it applies to values stored from then on.
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The same function, whose callers wait at most `lease` for a process computing the same
    /// key that has stopped renewing its compute lease (see
    /// [`CacheBuilder::lock_lease`](crate::CacheBuilder::lock_lease)).
    pub const fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The same function, whose stores wait at most `timeout` for another process's write lock
    /// (see [`CacheBuilder::write_timeout`](crate::CacheBuilder::write_timeout)).
    pub const fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// The function's own write timeout, if it sets one.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// The function's own compute lease, if it sets one.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }

    /// The stable name, e.g. `my_crate::features`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fingerprint of the function's code (or its pinned version).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The name of the return type.
    pub fn return_type(&self) -> &str {
        &self.return_type
    }

    /// The time to live of the function's entries, if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The digest of name, fingerprint and return type: the part of every key fixed per function.
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
        canonical::write(&mut hasher, args).map_err(|e| self.encode_error(e))?;
        Ok(Digest(*hasher.finalize().as_bytes()))
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
        Ok(Digest(*hasher.finalize().as_bytes()))
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
        let mut items: Vec<(Vec<u8>, <&'a C as IntoIterator>::Item)> = Vec::new();
        for item in self.0 {
            let mut bytes = Vec::new();
            canonical::write(&mut bytes, &item).map_err(serde::ser::Error::custom)?;
            items.push((bytes, item));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        serializer.collect_seq(items.iter().map(|(_, item)| item))
    }
}
