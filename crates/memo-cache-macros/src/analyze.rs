//! Validation: what the function's signature means for the cache, or a spanned error saying
//! what cannot be cached and what to do instead.

use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, Pat, ReturnType, Type};

use crate::options::Options;

/// One argument of the cached function.
pub struct Arg {
    /// The binding: the argument's name, or `self`.
    pub ident: Ident,
    /// What it is; `None` for the receiver.
    pub ty: Option<Type>,
    /// How it enters the key; `None` when ignored.
    pub key: Option<KeyPart>,
    /// Where errors about it point.
    pub span: Span,
}

/// How an argument is written into the key tuple.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// `&arg`: any `Serialize` value or reference.
    Plain,
    /// The receiver `&self` (already a reference).
    SelfRef,
    /// The receiver `self`, by value.
    SelfValue,
    /// An owned `HashSet`: `Unordered(&arg)`.
    Set,
    /// A `&HashSet`: `Unordered(arg)`.
    SetRef,
}

/// Everything expansion needs to know about the function.
pub struct Plan {
    pub args: Vec<Arg>,
    /// The written return type (`()` when none is written).
    pub ret: Type,
    /// True when the return type is spelled `..Result<..>`: only `Ok` is stored.
    pub fallible: bool,
    /// The type parameters, which tell generic instantiations apart.
    pub type_params: Vec<Ident>,
    pub is_async: bool,
}

pub fn analyze(item: &syn::ItemFn, options: &Options) -> syn::Result<Plan> {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(
            constness,
            "#[disk_cache] cannot cache a `const fn`: remove `const`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "#[disk_cache] cannot cache a variadic function",
        ));
    }
    let mut type_params = Vec::new();
    for param in &sig.generics.params {
        match param {
            GenericParam::Type(t) => type_params.push(t.ident.clone()),
            GenericParam::Lifetime(_) => {}
            GenericParam::Const(c) => {
                return Err(syn::Error::new_spanned(
                    c,
                    "#[disk_cache] does not support const generic parameters yet: pass the value as an argument",
                ));
            }
        }
    }

    let mut args = Vec::new();
    for input in &sig.inputs {
        args.push(argument(input)?);
    }
    for ignored in &options.ignore {
        match args.iter_mut().find(|a| a.ident == *ignored) {
            Some(arg) => arg.key = None,
            None => {
                return Err(syn::Error::new_spanned(
                    ignored,
                    no_such_argument(ignored, &args),
                ));
            }
        }
    }
    for arg in args.iter().filter(|a| a.key.is_some()) {
        check_key_argument(arg)?;
    }

    let ret = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    if let Some(span) = impl_trait_in(&ret) {
        return Err(syn::Error::new(
            span,
            "#[disk_cache] cannot cache an `impl Trait` return type: name the concrete type, which must implement `Serialize` and `DeserializeOwned`",
        ));
    }
    let fallible = !options.cache_err && is_result(&ret);
    let value = if fallible { ok_type(&ret) } else { Some(&ret) };
    if let Some(Type::Reference(r)) = value.map(ungroup) {
        return Err(syn::Error::new_spanned(
            r,
            "#[disk_cache] cannot cache a borrowed return type: a cached value is read back as an owned value; return an owned type such as `String` or `Vec<T>`",
        ));
    }
    Ok(Plan {
        args,
        ret,
        fallible,
        type_params,
        is_async: sig.asyncness.is_some(),
    })
}

fn argument(input: &FnArg) -> syn::Result<Arg> {
    match input {
        FnArg::Receiver(receiver) => {
            if receiver.mutability.is_some() && receiver.reference.is_some() {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "#[disk_cache] cannot cache a method taking `&mut self`: a cache hit would skip its changes to `self`",
                ));
            }
            let key = if receiver.reference.is_some() || matches!(&*receiver.ty, Type::Reference(_))
            {
                KeyPart::SelfRef
            } else {
                KeyPart::SelfValue
            };
            Ok(Arg {
                ident: Ident::new("self", receiver.self_token.span),
                ty: None,
                key: Some(key),
                span: receiver.span(),
            })
        }
        FnArg::Typed(typed) => {
            let ident = match &*typed.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "#[disk_cache] needs a plain name for each argument (`point: Point`, not a pattern): destructure inside the body",
                    ));
                }
            };
            let key = match set_kind(&typed.ty) {
                Some(true) => KeyPart::SetRef,
                Some(false) => KeyPart::Set,
                None => KeyPart::Plain,
            };
            Ok(Arg {
                ident,
                ty: Some((*typed.ty).clone()),
                key: Some(key),
                span: typed.ty.span(),
            })
        }
    }
}

/// Errors for argument types that can never be part of a key.
fn check_key_argument(arg: &Arg) -> syn::Result<()> {
    let Some(ty) = &arg.ty else { return Ok(()) };
    if let Type::Reference(r) = ty
        && let Some(mutability) = &r.mutability
    {
        let _ = mutability;
        return Err(syn::Error::new_spanned(
            r,
            format!(
                "#[disk_cache] cannot cache a function taking `&mut` (`{}`): a cache hit would skip its changes; \
                 take it by value or by `&`, or leave it out of the key with `ignore({})`",
                arg.ident, arg.ident
            ),
        ));
    }
    if let Some(span) = impl_trait_in(ty) {
        return Err(syn::Error::new(
            span,
            format!(
                "#[disk_cache] cannot key on an `impl Trait` argument (`{}`): use a named type that implements `Serialize`, \
                 or leave it out of the key with `ignore({})`",
                arg.ident, arg.ident
            ),
        ));
    }
    Ok(())
}

fn no_such_argument(ignored: &Ident, args: &[Arg]) -> String {
    let names: Vec<String> = args.iter().map(|a| format!("`{}`", a.ident)).collect();
    if names.is_empty() {
        format!("`ignore({ignored})` names no argument: the function takes none")
    } else {
        format!(
            "`ignore({ignored})` names no argument of this function; its arguments are {}",
            names.join(", ")
        )
    }
}

/// `Some(false)` for a type written `HashSet<..>`, `Some(true)` for `&HashSet<..>`.
fn set_kind(ty: &Type) -> Option<bool> {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => {
            last_segment_is(&r.elem, "HashSet").then_some(true)
        }
        Type::Paren(p) => set_kind(&p.elem),
        other => last_segment_is(other, "HashSet").then_some(false),
    }
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| s.ident == name)
        }
        Type::Group(g) => last_segment_is(&g.elem, name),
        _ => false,
    }
}

/// A return type spelled `Result<..>`, `io::Result<..>`, `anyhow::Result<T>`...
fn is_result(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().is_some_and(|s| {
            s.ident == "Result" && matches!(s.arguments, syn::PathArguments::AngleBracketed(_))
        }),
        _ => false,
    }
}

/// The first type argument of a `..Result<T, ..>`: its `Ok` type.
pub(crate) fn ok_type(ty: &Type) -> Option<&Type> {
    match ungroup(ty) {
        Type::Path(p) => match &p.path.segments.last()?.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// `ty` without invisible groups and parentheses.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        other => other,
    }
}

/// Where an `impl Trait` appears in `ty`, if anywhere.
fn impl_trait_in(ty: &Type) -> Option<Span> {
    struct Find(Option<Span>);
    impl<'ast> Visit<'ast> for Find {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.get_or_insert(t.span());
        }
    }
    let mut find = Find(None);
    find.visit_type(ty);
    find.0
}
