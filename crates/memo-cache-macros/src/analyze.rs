//! Validation: what the function's signature means for the cache, or a spanned error saying
//! what cannot be cached and what to do instead.

use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, Pat, ReturnType, Type};

use crate::options::Options;

/// One argument of the cached function.
pub struct Arg {
    /// The binding: the argument's name, `self`, or `__memo_arg_i` for a pattern.
    pub ident: Ident,
    /// For an argument written as a pattern (`(a, b): (u32, u32)`, `Point { x, y }: Point`,
    /// `_: T`), the pattern: the generated signature binds the whole argument to `ident`, and the
    /// body destructures it with `let pattern = ident;`.
    pub pattern: Option<Pat>,
    /// The receiver is `&mut self`: it cannot be part of the key.
    pub mut_receiver: bool,
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
    /// Named in `ordered(..)`: `Ordered(&arg)`, its maps in their iteration order.
    Ordered,
}

/// Everything expansion needs to know about the function.
pub struct Plan {
    pub args: Vec<Arg>,
    /// The written return type (`()` when none is written).
    pub ret: Type,
    /// True when the return type is written `..Result<..>` (and `cache_err` is off). What is
    /// stored is decided by what the type is, at compile time of the expansion; this only
    /// says where errors about the stored type point.
    pub written_result: bool,
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
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        args.push(argument(i, input)?);
    }
    for ignored in &options.ignore {
        let named = args
            .iter_mut()
            .find(|a| a.pattern.is_none() && a.ident == *ignored);
        match named {
            Some(arg) => arg.key = None,
            None => {
                return Err(syn::Error::new_spanned(
                    ignored,
                    no_such_argument("ignore", ignored, &args),
                ));
            }
        }
    }
    for ordered in &options.ordered {
        let named = args
            .iter_mut()
            .find(|a| a.pattern.is_none() && a.ident == *ordered);
        match named {
            Some(arg) => match arg.key {
                Some(KeyPart::Plain) => arg.key = Some(KeyPart::Ordered),
                None => {
                    return Err(syn::Error::new_spanned(
                        ordered,
                        format!(
                            "`{ordered}` is left out of the key (`ignore` or `_`), so its order cannot count: remove it from `ordered(..)`"
                        ),
                    ));
                }
                Some(KeyPart::Set | KeyPart::SetRef) => {
                    return Err(syn::Error::new_spanned(
                        ordered,
                        format!(
                            "`{ordered}` is a `HashSet`, whose iteration order means nothing: remove it from `ordered(..)`, or pass an `IndexSet` or a `Vec`"
                        ),
                    ));
                }
                Some(_) => {
                    return Err(syn::Error::new_spanned(
                        ordered,
                        "`ordered(self)` is not supported: wrap the map fields of `Self` in `memo_cache::Ordered` in its `Serialize` impl",
                    ));
                }
            },
            None => {
                return Err(syn::Error::new_spanned(
                    ordered,
                    no_such_argument("ordered", ordered, &args),
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
    let written_result = !options.cache_err && is_result(&ret);
    let value = if written_result {
        ok_type(&ret)
    } else {
        Some(&ret)
    };
    if let Some(Type::Reference(r)) = value.map(ungroup) {
        return Err(syn::Error::new_spanned(
            r,
            "#[disk_cache] cannot cache a borrowed return type: a cached value is read back as an owned value; return an owned type such as `String` or `Vec<T>`",
        ));
    }
    Ok(Plan {
        args,
        ret,
        written_result,
        is_async: sig.asyncness.is_some(),
    })
}

fn argument(index: usize, input: &FnArg) -> syn::Result<Arg> {
    let attrs = match input {
        FnArg::Receiver(receiver) => &receiver.attrs,
        FnArg::Typed(typed) => &typed.attrs,
    };
    if let Some(cfg) = attrs
        .iter()
        .find(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
    {
        return Err(syn::Error::new_spanned(
            cfg,
            "#[disk_cache] cannot cache a function with an argument that exists only under a `cfg`: \
             the key and the companions' signatures would differ between configurations; \
             put the `cfg` on two versions of the whole function instead",
        ));
    }
    match input {
        FnArg::Receiver(receiver) => {
            let by_mut_ref = match &*receiver.ty {
                Type::Reference(r) => r.mutability.is_some(),
                _ => false,
            };
            let key = if receiver.reference.is_some() || matches!(&*receiver.ty, Type::Reference(_))
            {
                KeyPart::SelfRef
            } else {
                KeyPart::SelfValue
            };
            Ok(Arg {
                ident: Ident::new("self", receiver.self_token.span),
                pattern: None,
                mut_receiver: by_mut_ref,
                ty: None,
                key: Some(key),
                span: receiver.span(),
            })
        }
        FnArg::Typed(typed) => {
            if let Pat::Ident(p) = &*typed.pat
                && p.ident.to_string().starts_with("__memo_")
            {
                return Err(syn::Error::new_spanned(
                    &p.ident,
                    "names starting with `__memo_` are the attribute's own: rename this argument",
                ));
            }
            let (ident, pattern) = match &*typed.pat {
                // `x` and `mut x` keep their name: the generated code moves them as they are.
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                    (p.ident.clone(), None)
                }
                other => (
                    Ident::new(&format!("__memo_arg_{index}"), Span::call_site()),
                    Some(other.clone()),
                ),
            };
            let key = match set_kind(&typed.ty) {
                // `_` binds nothing, so the body cannot read it and the result cannot depend on it.
                _ if matches!(&*typed.pat, Pat::Wild(_)) => None,
                Some(true) => Some(KeyPart::SetRef),
                Some(false) => Some(KeyPart::Set),
                None => Some(KeyPart::Plain),
            };
            Ok(Arg {
                ident,
                pattern,
                mut_receiver: false,
                ty: Some((*typed.ty).clone()),
                key,
                span: typed.ty.span(),
            })
        }
    }
}

/// Errors for argument types that can never be part of a key.
fn check_key_argument(arg: &Arg) -> syn::Result<()> {
    if arg.mut_receiver {
        return Err(syn::Error::new(
            arg.span,
            "#[disk_cache] cannot cache a method taking `&mut self`: a cache hit would skip its changes to `self`; \
             take `&self`, or leave `self` out of the key with `ignore(self)` if the result does not depend on it",
        ));
    }
    let Some(ty) = &arg.ty else { return Ok(()) };
    if let Type::Reference(r) = ty
        && let Some(mutability) = &r.mutability
    {
        let _ = mutability;
        return Err(syn::Error::new_spanned(
            r,
            format!(
                "#[disk_cache] cannot cache a function taking `&mut` ({}): a cache hit would skip its changes; \
                 take it by value or by `&`, or {}",
                arg.label(),
                arg.leave_out()
            ),
        ));
    }
    if let Some(span) = impl_trait_in(ty) {
        return Err(syn::Error::new(
            span,
            format!(
                "#[disk_cache] cannot key on an `impl Trait` argument ({}): use a named type that implements `Serialize`, \
                 or {}",
                arg.label(),
                arg.leave_out()
            ),
        ));
    }
    Ok(())
}

impl Arg {
    /// The argument in a message: `` `name` ``, or "a pattern" (the error points at it).
    fn label(&self) -> String {
        match &self.pattern {
            Some(_) => "a pattern".to_owned(),
            None => format!("`{}`", self.ident),
        }
    }

    /// How to leave this argument out of the key.
    fn leave_out(&self) -> String {
        match &self.pattern {
            Some(_) => "give it a name (`arg: T`), leave it out of the key with `ignore(arg)`, \
                        and destructure it in the body"
                .to_owned(),
            None => format!("leave it out of the key with `ignore({})`", self.ident),
        }
    }
}

/// Why `option(ignored)` (`ignore` or `ordered`) names no argument.
fn no_such_argument(option: &str, ignored: &Ident, args: &[Arg]) -> String {
    if args
        .iter()
        .any(|a| a.pattern.as_ref().is_some_and(|p| binds(p, ignored)))
    {
        let goal = if option == "ignore" {
            "to leave it out of the key"
        } else {
            "to keep its maps' order"
        };
        return format!(
            "`{ignored}` is bound inside a pattern argument, which is keyed as a whole: {goal}, \
             give the argument a name (`arg: T`), write `{option}(arg)`, and destructure it in the body"
        );
    }
    let names: Vec<String> = args
        .iter()
        .filter(|a| a.pattern.is_none())
        .map(|a| format!("`{}`", a.ident))
        .collect();
    if names.is_empty() {
        format!("`{option}({ignored})` names no argument: the function takes none")
    } else {
        format!(
            "`{option}({ignored})` names no argument of this function; its arguments are {}",
            names.join(", ")
        )
    }
}

/// True when `pattern` binds `name` somewhere inside it.
fn binds(pattern: &Pat, name: &Ident) -> bool {
    struct Find<'a>(&'a Ident, bool);
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.1 |= p.ident == *self.0;
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut find = Find(name, false);
    find.visit_pat(pattern);
    find.1
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
