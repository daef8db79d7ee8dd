//! The key arguments of a call, written without a `Serialize` bound where they are used: each
//! argument's type is checked once, at compile time ([`assert_key_arg`] and its kin, whose
//! failures say what to do), and the check returns a plain `fn` that writes it; [`KeyArgs`] holds
//! the count and the writer of them all. The values' counterpart, [`StoreOps`], is made the same
//! way (see `super::probe`).

use std::any::Any;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::canonical::{self, EncodeError, KeySink};
use crate::key::{Ordered, Unordered};
use crate::protocol::Steps;

/// Writes the arguments of a call that take part in its key, one after the other, each with the
/// `fn` its check returned ([`assert_key_arg`] and its kin).
pub trait WriteArgs: Fn(&mut KeySink<'_>) -> Result<(), EncodeError> {}
impl<F: Fn(&mut KeySink<'_>) -> Result<(), EncodeError>> WriteArgs for F {}

/// The `len` arguments of a call that take part in its key, and how to write them. The key is
/// that of the tuple of those arguments, `Function::key(&(&a, &b, ..))`, but needs no
/// `Serialize` bound here: each argument is written by a plain `fn` made where its bound holds.
pub struct KeyArgs<F> {
    pub(super) len: usize,
    pub(super) write: F,
}

impl<F> KeyArgs<F>
where
    F: Fn(&mut KeySink<'_>) -> Result<(), EncodeError>,
{
    /// `len` arguments, written by `write`.
    #[inline]
    pub fn new(len: usize, write: F) -> Self {
        KeyArgs { len, write }
    }
}

impl<F> std::fmt::Debug for KeyArgs<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyArgs").field("len", &self.len).finish()
    }
}

/// Writes one key argument: the canonical encoding of `value`.
pub(super) fn write_part<T: Serialize + ?Sized>(
    value: &T,
    sink: &mut KeySink<'_>,
) -> Result<(), EncodeError> {
    canonical::write(sink, value)
}

/// A set argument (`HashSet`), written in a canonical order through [`Unordered`].
pub trait KeySet {
    /// Writes the set's elements sorted by their encoding.
    fn write_unordered(&self, sink: &mut KeySink<'_>) -> Result<(), EncodeError>;
}

impl<C: ?Sized> KeySet for C
where
    for<'a> &'a C: IntoIterator,
    for<'a> <&'a C as IntoIterator>::Item: Serialize,
{
    fn write_unordered(&self, sink: &mut KeySink<'_>) -> Result<(), EncodeError> {
        canonical::write(sink, &Unordered(self))
    }
}

// ---- Storing values -----------------------------------------------------------------------------

/// How the values of one return type are read, waited for and stored: plain `fn`s made where
/// `T: Serialize + DeserializeOwned` holds ([`Probe::store_ops`](super::Probe::store_ops)), so
/// the code that uses them needs no such bound. A return type that fails its check then gives one
/// error, not one more for every place the value is used.
pub type StoreOps<T> = Steps<T>;

pub(super) fn store_ops<T: Serialize + DeserializeOwned + Any>() -> &'static StoreOps<T> {
    Steps::of()
}

/// Operations that never find nor store anything: what a companion gets for a return type that
/// failed its check (the cached function itself reports the error, once).
pub(super) fn inert_ops<T>() -> &'static StoreOps<T> {
    Steps::inert()
}

// ---- Compile-time checks with messages that say what to do ------------------------------------
//
// Each check returns what the generated code needs from the bound it checks (a `fn` writing an
// argument, the `StoreOps` of the return type), made inside the check where the bound holds. The
// types those come in are well formed whatever the type, so a failed check is the only error: the
// rest of the generated code type-checks without the bound.

/// An argument that takes part in the key.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "this argument's type does not implement `Serialize`",
    note = "derive or implement `serde::Serialize` for it, or leave the argument out of the key with `#[disk_cache(ignore(name))]`"
)]
pub trait KeyArg: Serialize {}
impl<T: Serialize + ?Sized> KeyArg for T {}

/// Checks, at compile time, that an argument can be part of the key; returns how to write it.
#[inline(always)]
pub fn assert_key_arg<T: KeyArg + ?Sized>() -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
    write_part::<T>
}

/// Writes one key argument named in `ordered(..)`: its maps in their iteration order.
pub(super) fn write_ordered_part<T: Serialize + ?Sized>(
    value: &T,
    sink: &mut KeySink<'_>,
) -> Result<(), EncodeError> {
    canonical::write(sink, &Ordered(value))
}

/// Checks, at compile time, that an argument named in `ordered(..)` can be part of the key;
/// returns how to write it.
#[inline(always)]
pub fn assert_ordered_key_arg<T: KeyArg + ?Sized>()
-> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError> {
    write_ordered_part::<T>
}

/// The `self` of a cached method.
#[diagnostic::on_unimplemented(
    message = "a cached method taking `self` requires `{Self}: Serialize`, or `ignore(self)`",
    label = "`{Self}` does not implement `serde::Serialize`",
    note = "derive `serde::Serialize` for `{Self}` so `self` takes part in the key, or write `#[disk_cache(ignore(self))]` if the result does not depend on it"
)]
pub trait SelfKey: Serialize {}
impl<T: Serialize + ?Sized> SelfKey for T {}

/// Checks, at compile time, that `self` can be part of the key; returns how to write it.
#[inline(always)]
pub fn assert_self_key<T: SelfKey + ?Sized>() -> fn(&T, &mut KeySink<'_>) -> Result<(), EncodeError>
{
    write_part::<T>
}
