//! Compile-time checks of a cached function's types, with messages that say what to do.
//!
//! [`Probe`] picks, by method resolution, the method whose bounds a type meets; the fallbacks
//! (the `Lacks*` traits) carry a `#[diagnostic::on_unimplemented]` bound that names what is
//! missing, once. Each check returns what the generated code needs from the bound it checks (a
//! `fn` writing an argument, the `StoreOps` of the return type), made inside the check where the
//! bound holds. The types those come in are well formed whatever the type, so a failed check is
//! the only error: the rest of the generated code type-checks without the bound. [`Outcome`]
//! says what a result stores (the `Ok` value of a `Result`, anything else whole).

use std::any::Any;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::canonical::{EncodeError, KeySink};

use super::args::{KeySet, StoreOps, inert_ops, store_ops, write_ordered_part, write_part};
use super::memory::{MemOps, MemoryValue, cloning};

/// What a call's result `R` stores (`V`), and how a stored value becomes a result again: a
/// `Result` stores its `Ok` value and an `Err` is returned unstored; any other type is stored
/// whole. Chosen by what the return type is, not how it is written, so `type Answer =
/// Result<u32, String>` and `anyhow::Result<T>` store only `Ok`, and a type of the user's that
/// is merely named `Result` is stored whole: `(&Probe::<R>::new()).outcome()` picks the inherent
/// method of `Probe<Result<T, E>>` when `R` is one, and [`StoredWhole`] otherwise.
pub struct Outcome<R, V> {
    pub(super) split: fn(R) -> Result<V, R>,
    pub(super) wrap: fn(V) -> R,
}

impl<R, V> Clone for Outcome<R, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, V> Copy for Outcome<R, V> {}

impl<R, V> std::fmt::Debug for Outcome<R, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outcome")
    }
}

impl<R> Outcome<R, R> {
    /// Every result is stored as it is (`cache_err = true`, or a return type that is not a
    /// `Result`).
    #[inline(always)]
    pub const fn whole() -> Self {
        Outcome {
            split: Ok,
            wrap: std::convert::identity,
        }
    }
}

impl<R, V> Outcome<R, V> {
    /// The probe of the stored type, for its checks.
    #[inline(always)]
    pub fn probe(&self) -> Probe<V> {
        Probe::new()
    }

    /// The result of a call answered with a stored `value`.
    #[inline(always)]
    pub fn wrap(&self, value: V) -> R {
        (self.wrap)(value)
    }
}

impl<T, E> Probe<Result<T, E>> {
    /// A `Result` stores its `Ok` value only.
    #[inline(always)]
    pub fn outcome(&self) -> Outcome<Result<T, E>, T> {
        Outcome {
            split: |result| match result {
                Ok(value) => Ok(value),
                Err(e) => Err(Err(e)),
            },
            wrap: Ok,
        }
    }
}

/// The fallback of [`Probe::outcome`]: a return type that is not a `Result` is stored whole.
pub trait StoredWhole<R> {
    /// Every result is stored as it is.
    fn outcome(&self) -> Outcome<R, R>;
}

impl<R> StoredWhole<R> for &Probe<R> {
    #[inline(always)]
    fn outcome(&self) -> Outcome<R, R> {
        Outcome::whole()
    }
}

/// A type to check: `(&Probe::<T>::new()).store_ops::<T>()` and its kin pick, by method resolution,
/// the method whose bounds `T` meets. For a stored value that tells apart a type that is
/// `Serialize` only, `DeserializeOwned` only, or neither, with one error that says which; a bound
/// of two traits would give one error per missing trait.
///
/// The cached function itself imports the fallbacks that report errors ([`LacksSerialize`],
/// [`LacksDeserialize`], [`LacksBoth`]); its companions import the quiet ones ([`QuietKey`],
/// [`QuietValue`]), so a type that fails is reported once.
pub struct Probe<T: ?Sized>(PhantomData<fn(&T)>);

impl<T: ?Sized> Probe<T> {
    /// The probe of `T`.
    #[inline(always)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T: ?Sized> Default for Probe<T> {
    fn default() -> Self {
        Probe::new()
    }
}

impl<T: ?Sized> std::fmt::Debug for Probe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

impl<T: Serialize + DeserializeOwned + Any> Probe<T> {
    /// How a cached value of type `T` is read and stored. `U` is `T` again, written in the
    /// call: an error about it points at the function's return type.
    #[inline(always)]
    pub fn store_ops<U: ?Sized>(&self) -> &'static StoreOps<T> {
        store_ops::<T>()
    }
}

impl<T: Serialize + ?Sized> Probe<T> {
    /// How an argument of type `T` is written into the key.
    #[inline(always)]
    pub fn key_part(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
        write_part::<T>
    }

    /// How an argument of type `T` named in `ordered(..)` is written into the key.
    #[inline(always)]
    pub fn key_ordered_part(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
        write_ordered_part::<T>
    }
}

impl<C: KeySet + ?Sized> Probe<C> {
    /// How a set argument of type `C` is written into the key. `U` is `C` again, written in the
    /// call: an error about it points at the argument's type.
    #[inline(always)]
    pub fn key_set_part<U: ?Sized>(&self) -> fn(&C, &mut KeySink<'_>) -> Result<(), EncodeError> {
        C::write_unordered
    }
}

/// A set argument whose elements are not `Serialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: its elements do not implement `serde::Serialize`",
    label = "this set's elements do not implement `Serialize`",
    note = "derive or implement `serde::Serialize` for the element type, or leave the argument out of the key with `#[disk_cache(ignore(name))]`"
)]
pub trait KeySetElements {}

/// The fallback of [`Probe::key_set_part`]: reports a set whose elements are not `Serialize`.
pub trait LacksKeySet<C: ?Sized> {
    /// Never compiles: the elements of `C` are not `Serialize`.
    fn key_set_part<U>(&self) -> fn(&C, &mut KeySink<'_>) -> Result<(), EncodeError>
    where
        U: ?Sized + KeySetElements;
}

impl<C: ?Sized> LacksKeySet<C> for Probe<C> {
    fn key_set_part<U>(&self) -> fn(&C, &mut KeySink<'_>) -> Result<(), EncodeError>
    where
        U: ?Sized + KeySetElements,
    {
        |_, _| Err(serde::ser::Error::custom("not a key argument"))
    }
}

impl<T: MemoryValue> Probe<T> {
    /// How a `memory = N` function keeps values of type `T`.
    #[inline(always)]
    pub fn memory_ops(&self) -> Option<MemOps<T>> {
        cloning()
    }
}

/// A stored value that is `Serialize` but not `DeserializeOwned`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it implements `Serialize` but not `DeserializeOwned`, so it cannot be read back",
    label = "the cached return type must implement `serde::de::DeserializeOwned`",
    note = "derive `serde::Deserialize` for it (a type that borrows, like `&str`, cannot be read back: return an owned type such as `String`)"
)]
pub trait CachedValueDeserializes {}

/// A stored value that is `DeserializeOwned` but not `Serialize`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it implements `DeserializeOwned` but not `Serialize`, so it cannot be stored",
    label = "the cached return type must implement `serde::Serialize`",
    note = "derive `serde::Serialize` for it"
)]
pub trait CachedValueSerializes {}

/// A stored value that is neither `Serialize` nor `DeserializeOwned`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must implement `Serialize` and `DeserializeOwned`",
    label = "the cached return type must implement `serde::Serialize + serde::de::DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it (a type that borrows, like `&str`, cannot be read back: return an owned type such as `String`)"
)]
pub trait CachedValueSerializesAndDeserializes {}

/// The fallback of [`Probe::store_ops`] for a `Serialize` type: reports the missing
/// `DeserializeOwned`.
pub trait LacksDeserialize<T> {
    /// Never compiles: `T` is not `DeserializeOwned`.
    fn store_ops<U>(&self) -> &'static StoreOps<T>
    where
        U: ?Sized + CachedValueDeserializes;
}

impl<T: Serialize> LacksDeserialize<T> for Probe<T> {
    fn store_ops<U>(&self) -> &'static StoreOps<T>
    where
        U: ?Sized + CachedValueDeserializes,
    {
        inert_ops()
    }
}

/// The fallback of [`Probe::store_ops`] for a `DeserializeOwned` type: reports the missing
/// `Serialize`.
pub trait LacksSerialize<T> {
    /// Never compiles: `T` is not `Serialize`.
    fn store_ops<U>(&self) -> &'static StoreOps<T>
    where
        U: ?Sized + CachedValueSerializes;
}

impl<T: DeserializeOwned> LacksSerialize<T> for Probe<T> {
    fn store_ops<U>(&self) -> &'static StoreOps<T>
    where
        U: ?Sized + CachedValueSerializes,
    {
        inert_ops()
    }
}

/// The last fallback of [`Probe::store_ops`]: reports a type that is neither.
pub trait LacksBoth<T> {
    /// Never compiles: `T` is neither `Serialize` nor `DeserializeOwned`.
    fn store_ops<U>(&self) -> &'static StoreOps<T>
    where
        U: ?Sized + CachedValueSerializesAndDeserializes;
}

impl<T> LacksBoth<T> for &Probe<T> {
    fn store_ops<U>(&self) -> &'static StoreOps<T>
    where
        U: ?Sized + CachedValueSerializesAndDeserializes,
    {
        inert_ops()
    }
}

/// The quiet fallbacks for a companion's arguments: the cached function reports a type that
/// cannot be part of the key; its companions compile on, keying nothing.
pub trait QuietKey<T: ?Sized> {
    /// An argument that fails to encode, so the call runs uncached.
    fn key_part(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError>;
    /// A set argument that fails to encode, so the call runs uncached.
    fn key_set_part<U: ?Sized>(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError>;
    /// An `ordered(..)` argument that fails to encode, so the call runs uncached.
    fn key_ordered_part(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError>;
}

impl<T: ?Sized> QuietKey<T> for Probe<T> {
    fn key_part(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
        |_, _| Err(serde::ser::Error::custom("not a key argument"))
    }
    fn key_set_part<U: ?Sized>(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
        |_, _| Err(serde::ser::Error::custom("not a key argument"))
    }
    fn key_ordered_part(&self) -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
        |_, _| Err(serde::ser::Error::custom("not a key argument"))
    }
}

/// The quiet fallbacks for a companion's return type: the cached function reports a type that
/// cannot be stored; its companions compile on, storing nothing.
pub trait QuietValue<T> {
    /// Operations that store nothing.
    fn store_ops<U: ?Sized>(&self) -> &'static StoreOps<T>;
    /// No in-memory LRU.
    fn memory_ops(&self) -> Option<MemOps<T>>;
}

impl<T> QuietValue<T> for Probe<T> {
    fn store_ops<U: ?Sized>(&self) -> &'static StoreOps<T> {
        inert_ops()
    }
    fn memory_ops(&self) -> Option<MemOps<T>> {
        None
    }
}
