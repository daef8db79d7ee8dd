//! Expansion: the cached function and its four companions.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use std::time::Duration;

use syn::ItemFn;

use crate::analyze::{KeyPart, Plan};
use crate::options::Options;

pub fn expand(
    item: &ItemFn,
    options: &Options,
    plan: &Plan,
    fingerprint: &str,
    krate: &TokenStream,
) -> TokenStream {
    let cx = Context {
        item,
        options,
        plan,
        fingerprint,
        krate,
    };
    let companions = options.companions();
    let clear = companions.then(|| cx.clear());
    let is_cached = companions.then(|| cx.is_cached());
    let uncached = companions.then(|| cx.uncached());
    let (main, recompute) = (cx.cached(), companions.then(|| cx.recompute()));
    let cached = if plan.is_async {
        cx.if_tokio(quote!(#main #recompute))
    } else {
        quote!(#main #recompute)
    };
    quote! { #cached #clear #is_cached #uncached }
}

struct Context<'a> {
    item: &'a ItemFn,
    options: &'a Options,
    plan: &'a Plan,
    fingerprint: &'a str,
    krate: &'a TokenStream,
}

impl Context<'_> {
    fn ident(&self) -> &Ident {
        &self.item.sig.ident
    }

    fn companion(&self, op: &str) -> Ident {
        format_ident!("{}__{}", self.ident(), op)
    }

    /// `static __MEMO_SITE` and `let __memo_site`: the function's state, shared with its
    /// companions through the attribute's source position.
    fn site(&self) -> TokenStream {
        let krate = self.krate;
        let dir = match &self.options.dir {
            Some(dir) => quote!(::core::option::Option::Some(#dir)),
            None => quote!(::core::option::Option::None),
        };
        let remote = match &self.options.remote {
            Some(url) => quote!(::core::option::Option::Some(#url)),
            None => quote!(::core::option::Option::None),
        };
        let memory = self.options.memory.as_ref().map_or(0, |(_, n)| *n);
        // The position alone is not unique: one `macro_rules!` invocation can stamp several
        // functions, in several modules, with different options.
        let tag = format!(
            ":{}:{}:{:?}:{:?}:{}",
            self.ident(),
            self.fingerprint,
            self.options.dir.as_ref().map(syn::LitStr::value),
            self.options.remote.as_ref().map(syn::LitStr::value),
            memory
        );
        quote! {
            static __MEMO_SITE: #krate::__private::SiteRef = #krate::__private::SiteRef::new(
                ::core::concat!(::core::file!(), ":", ::core::line!(), ":", ::core::column!(), ":", ::core::module_path!(), #tag),
                #dir,
                #remote,
                #memory,
            );
            let __memo_site = __MEMO_SITE.get();
        }
    }

    /// `let __memo_function`: the identity (name, fingerprint, return type, ttl), made once per
    /// instantiation. The name is the function's path as the compiler prints the type of a
    /// closure in the body of `generated` (the function or a companion): it names the `impl`
    /// and the enclosing functions, and the type arguments of a generic instantiation, so
    /// same-named functions in two `impl`s, two trait impls or two enclosing functions never
    /// share one.
    fn function(&self, generated: &Ident) -> TokenStream {
        let krate = self.krate;
        let ret = &self.plan.ret;
        let fingerprint = match &self.options.version {
            Some(version) => quote!(#version),
            None => {
                let fp = self.fingerprint;
                quote!(#fp)
            }
        };
        let pinned = match &self.options.name {
            Some(name) => quote!(::core::option::Option::Some(#name)),
            None => quote!(::core::option::Option::None),
        };
        let (generated, ident) = (generated.to_string(), self.ident().to_string());
        let return_type = if self.options.cache_err {
            quote!(::std::format!("{} (Err cached too)", ::core::any::type_name::<#ret>()))
        } else {
            quote!(::core::any::type_name::<#ret>())
        };
        let duration = |method: TokenStream, option: &Option<(syn::LitStr, Duration)>| {
            option.as_ref().map(|(_, d)| {
                let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
                quote!(.#method(::core::time::Duration::new(#secs, #nanos)))
            })
        };
        let compress = self
            .options
            .compress
            .as_ref()
            .map(|(_, level)| quote!(.with_compression(#level)));
        let ttl = [
            duration(quote!(with_ttl), &self.options.ttl),
            duration(quote!(with_lease), &self.options.lease),
            duration(quote!(with_write_timeout), &self.options.write_timeout),
            compress,
        ];
        quote! {
            let __memo_function: &'static #krate::Function = __memo_site.function(
                ::core::any::type_name_of_val(&|| ()),
                |__memo_path| {
                    let __memo_name = #krate::__private::function_name(__memo_path, #generated, #ident, #pinned);
                    #krate::Function::owned(__memo_name, #fingerprint, #return_type) #(#ttl)*
                },
            );
        }
    }

    /// `let __memo_part_i`: for each argument in the key, the `fn` that writes it, returned by its
    /// check. `loud` in the cached function, whose checks report a type that cannot be part of
    /// the key (spanned on it); quiet in the companions, so each such type is one error.
    fn parts(&self, loud: bool) -> TokenStream {
        let krate = self.krate;
        let mut out = TokenStream::new();
        for (i, arg) in self.key_args().enumerate() {
            let name = format_ident!("__memo_part_{}", i);
            let ty = match (&arg.ty, arg.key) {
                (Some(ty), Some(KeyPart::SetRef)) => set_of(ty).clone(),
                (Some(ty), _) => ty.clone(),
                (None, _) => syn::Type::Verbatim(quote_spanned!(arg.span=> Self)),
            };
            let set = matches!(arg.key, Some(KeyPart::Set | KeyPart::SetRef));
            let ordered = arg.key == Some(KeyPart::Ordered);
            let check = match (loud, set, &arg.ty) {
                (true, false, Some(_)) if ordered => {
                    quote_spanned!(arg.span=> #krate::__private::assert_ordered_key_arg::<#ty>())
                }
                (true, false, Some(_)) => {
                    quote_spanned!(arg.span=> #krate::__private::assert_key_arg::<#ty>())
                }
                (true, false, None) => {
                    quote_spanned!(arg.span=> #krate::__private::assert_self_key::<#ty>())
                }
                (true, true, _) => {
                    let krate = respan(krate.clone(), arg.span);
                    quote_spanned!(arg.span=> {
                        #[allow(unused_imports)]
                        use #krate::__private::LacksKeySet as _;
                        (&#krate::__private::Probe::<#ty>::new()).key_set_part::<#ty>()
                    })
                }
                (false, set, _) => {
                    let method = if set {
                        quote!(key_set_part::<#ty>)
                    } else if ordered {
                        quote!(key_ordered_part)
                    } else {
                        quote!(key_part)
                    };
                    quote!({
                        #[allow(unused_imports)]
                        use #krate::__private::QuietKey as _;
                        (&#krate::__private::Probe::<#ty>::new()).#method()
                    })
                }
            };
            out.extend(quote!(let #name = #check;));
        }
        out
    }

    /// The arguments that take part in the key.
    fn key_args(&self) -> impl Iterator<Item = &crate::analyze::Arg> {
        self.plan.args.iter().filter(|arg| arg.key.is_some())
    }

    /// `__memo_site.key_args(..)`: the arguments that take part in the key, borrowed, each
    /// written by its `__memo_part_i`.
    fn args(&self) -> TokenStream {
        let krate = self.krate;
        let sink = quote!(__memo_sink);
        let writes = self.key_args().enumerate().map(|(i, arg)| {
            let name = format_ident!("__memo_part_{}", i);
            let ident = &arg.ident;
            let value = match arg.key {
                Some(KeyPart::SelfRef | KeyPart::SetRef) => quote!(#ident),
                _ => quote!(&#ident),
            };
            quote!((#name)(#value, #sink)?;)
        });
        let len = self.key_args().count();
        let write = if len == 0 {
            quote!(|_| ::core::result::Result::Ok(()))
        } else {
            quote!(|#sink| {
                #(#writes)*
                ::core::result::Result::Ok(())
            })
        };
        quote!(#krate::__private::KeyArgs::new(#len, #write))
    }

    /// The stored type as written, for the checks' messages: the `Ok` type of a return type
    /// written `..Result<T, ..>`, else the return type. (What is stored is decided by the type
    /// itself, through `__memo_outcome`; an alias of a `Result` is named as the alias.)
    /// The tokens the expansion adds are spanned on `span`.
    fn written_value(&self, span: Span) -> TokenStream {
        let ret = &self.plan.ret;
        match crate::analyze::ok_type(ret) {
            Some(ok) if self.plan.written_result => {
                let ok = respan(quote!(#ok), span);
                quote!(#ok)
            }
            _ => quote!(#ret),
        }
    }

    /// `let __memo_outcome` (what a result stores: its `Ok` value if it is a `Result`, unless
    /// `cache_err = true`, else all of it) and `let __memo_ops` (how the stored value is read
    /// and stored), returned by the stored type's check: loud in the cached function (spanned
    /// on the return type), quiet in the companions.
    fn ops(&self, loud: bool) -> TokenStream {
        let krate = self.krate;
        let ret = &self.plan.ret;
        let outcome = if self.options.cache_err {
            quote!(#krate::__private::Outcome::<#ret, #ret>::whole())
        } else {
            quote!({
                #[allow(unused_imports)]
                use #krate::__private::StoredWhole as _;
                (&#krate::__private::Probe::<#ret>::new()).outcome()
            })
        };
        let check = if loud {
            // The expansion's tokens spanned on the return type too, so the error points at it.
            let span = if self.plan.written_result {
                ok_span(&self.plan.ret).unwrap_or_else(|| ret_span(self.item))
            } else {
                ret_span(self.item)
            };
            let value = self.written_value(span);
            let krate = respan(krate.clone(), span);
            quote_spanned!(span=> {
                #[allow(unused_imports)]
                use #krate::__private::{LacksBoth as _, LacksDeserialize as _, LacksSerialize as _};
                (&__memo_outcome.probe()).store_ops::<#value>()
            })
        } else {
            let value = self.written_value(Span::call_site());
            quote!({
                #[allow(unused_imports)]
                use #krate::__private::QuietValue as _;
                (&__memo_outcome.probe()).store_ops::<#value>()
            })
        };
        quote!(let __memo_outcome = #outcome; let __memo_ops = #check;)
    }

    /// `let (__memo_mem, __memo_key)`: the in-memory LRU's part of the call (with `memory = N`,
    /// `recall` asks it first and returns on a hit) and the cache handle and key. The arguments
    /// are borrowed only inside this block, so an `async fn` keeps no borrow across an `.await`.
    fn keys(&self, recall: bool) -> TokenStream {
        let args = self.args();
        let mem = if self.options.memory.is_none() {
            quote!(let __memo_mem = ::core::option::Option::None;)
        } else if recall {
            let ops = self.memory_ops(true);
            let hit = quote!(__memo_outcome.wrap(__memo_value));
            quote! {
                let __memo_mem = match __memo_site.recall(__memo_function, &__memo_args, #ops) {
                    ::core::result::Result::Ok(__memo_value) => return #hit,
                    ::core::result::Result::Err(__memo_mem) => __memo_mem,
                };
            }
        } else {
            let ops = self.memory_ops(false);
            quote!(let __memo_mem = __memo_site.mem(__memo_function, &__memo_args, #ops);)
        };
        quote! {
            let (__memo_mem, __memo_key) = {
                let __memo_args = #args;
                #mem
                (__memo_mem, __memo_site.key(__memo_function, &__memo_args))
            };
        }
    }

    /// How a `memory = N` function keeps values: `cloning()` checks `Clone` in the cached
    /// function (spanned on the option); the companions ask quietly.
    fn memory_ops(&self, loud: bool) -> TokenStream {
        let krate = self.krate;
        match (self.options.memory_span, loud) {
            (None, _) => quote!(::core::option::Option::None),
            (Some(span), true) => quote_spanned!(span=> #krate::__private::cloning()),
            (Some(_), false) => quote!({
                #[allow(unused_imports)]
                use #krate::__private::QuietValue as _;
                (&__memo_outcome.probe()).memory_ops()
            }),
        }
    }

    /// `let __memo_compute`: the body, as a closure or an `async` block that owns the arguments.
    /// It may mutate what it captures (a `mut` argument, an ignored `&mut` one), so it is bound
    /// `mut`; it is called once.
    fn compute(&self) -> TokenStream {
        let block = self.body();
        let ret = &self.plan.ret;
        if self.plan.is_async {
            quote!(let __memo_compute = async move #block;)
        } else {
            quote! {
                #[allow(unused_mut)]
                let mut __memo_compute = move || -> #ret #block;
            }
        }
    }

    /// The function's block, preceded by the destructuring of its pattern arguments.
    fn body(&self) -> TokenStream {
        let block = &self.item.block;
        let lets = self.plan.args.iter().filter_map(|arg| {
            let pattern = arg.pattern.as_ref()?;
            let ident = &arg.ident;
            Some(quote!(let #pattern = #ident;))
        });
        let lets: Vec<_> = lets.collect();
        if lets.is_empty() {
            quote!(#block)
        } else {
            quote!({ #(#lets)* #block })
        }
    }

    /// The function's signature as generated: each pattern argument bound to its generated
    /// name instead (`mut` when the pattern borrows part of it `ref mut`).
    fn outer_sig(&self) -> syn::Signature {
        let mut sig = self.item.sig.clone();
        for (input, arg) in sig.inputs.iter_mut().zip(&self.plan.args) {
            if let (syn::FnArg::Typed(typed), Some(pattern)) = (input, &arg.pattern) {
                let ident = &arg.ident;
                let binding = if borrows_mut(pattern) {
                    quote!(mut #ident)
                } else {
                    quote!(#ident)
                };
                *typed.pat = syn::parse_quote!(#binding);
            }
        }
        sig
    }

    /// The function itself: memory, disk, compute.
    fn cached(&self) -> TokenStream {
        let ItemFn { attrs, vis, .. } = self.item;
        let sig = &self.outer_sig();
        let (parts, ops, site, function, keys, compute) = (
            self.parts(true),
            self.ops(true),
            self.site(),
            self.function(self.ident()),
            self.keys(true),
            self.compute(),
        );
        let mem = quote!(__memo_mem);
        let run = if self.plan.is_async {
            quote! {
                match __memo_key {
                    ::core::option::Option::Some((__memo_cache, __memo_key)) => {
                        __memo_site.get_or_compute_async(__memo_function, __memo_cache, __memo_key, __memo_ops, __memo_outcome, #mem, __memo_compute).await
                    }
                    ::core::option::Option::None => __memo_site.uncached(__memo_function, __memo_outcome, #mem, __memo_compute.await),
                }
            }
        } else {
            quote! {
                match __memo_key {
                    ::core::option::Option::Some((__memo_cache, __memo_key)) => {
                        __memo_site.get_or_compute(__memo_function, __memo_cache, &__memo_key, __memo_ops, __memo_outcome, #mem, __memo_compute)
                    }
                    ::core::option::Option::None => __memo_site.uncached(__memo_function, __memo_outcome, #mem, __memo_compute()),
                }
            }
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                #parts
                #ops
                #site
                #function
                #keys
                #compute
                #run
            }
        }
    }

    /// An `async fn`'s cached items, compiled only with memo-cache-rs's `tokio` feature; without it,
    /// one error on `async`, and the function and `__recompute` uncached so nothing else fails.
    fn if_tokio(&self, cached: TokenStream) -> TokenStream {
        let asyncness = self
            .item
            .sig
            .asyncness
            .as_ref()
            .map_or_else(Span::call_site, |a| a.span);
        let krate = respan(self.krate.clone(), asyncness);
        let ItemFn { attrs, vis, .. } = self.item;
        let sig = self.outer_sig();
        let body = self.body();
        let recompute = self.options.companions().then(|| {
            self.companion_item(
                " Runs the function uncached (memo-cache-rs's `tokio` feature is off).",
                &self.plan_sig("recompute"),
                self.body(),
            )
        });
        quote_spanned! {asyncness=>
            #krate::__memo_if_tokio! {
                { #cached } else { #(#attrs)* #vis #sig #body #recompute }
            }
        }
    }

    fn clear(&self) -> TokenStream {
        let krate = self.krate;
        let mut sig = self.item.sig.clone();
        sig.ident = self.companion("clear");
        sig.asyncness = None;
        sig.inputs = Default::default();
        sig.output = syn::parse_quote!(-> #krate::Result<#krate::Removal>);
        let doc = format!(
            " Removes every stored result of `{f}` (of every version of its code) from its cache \
             directory, and empties its in-memory LRU. Generated by `#[disk_cache]`.",
            f = self.ident()
        );
        let (site, function) = (self.site(), self.function(&sig.ident));
        self.companion_item(
            &doc,
            &sig,
            quote!({ #site #function __memo_site.clear(__memo_function) }),
        )
    }

    fn is_cached(&self) -> TokenStream {
        let mut sig = self.plan_sig("is_cached");
        sig.asyncness = None;
        sig.output = syn::parse_quote!(-> bool);
        let doc = format!(
            " True when a call of `{f}` with these arguments would be answered from the cache, \
             without running it. Generated by `#[disk_cache]`.",
            f = self.ident()
        );
        let (site, function, parts, args) = (
            self.site(),
            self.function(&sig.ident),
            self.parts(false),
            self.args(),
        );
        self.companion_item(
            &doc,
            &sig,
            quote!({
                #site
                #function
                #parts
                let __memo_args = #args;
                let __memo_key = __memo_site.key(__memo_function, &__memo_args);
                __memo_site.contains(__memo_function, &__memo_args, __memo_key)
            }),
        )
    }

    fn recompute(&self) -> TokenStream {
        let sig = self.plan_sig("recompute");
        let doc = format!(
            " Runs `{f}` whatever is cached, stores the result (replacing the stored one) and \
             returns it. Generated by `#[disk_cache]`.",
            f = self.ident()
        );
        let (site, function, parts, ops, keys, compute) = (
            self.site(),
            self.function(&sig.ident),
            self.parts(false),
            self.ops(false),
            self.keys(false),
            self.compute(),
        );
        let (method, wait) = if self.plan.is_async {
            (quote!(recompute_async), Some(quote!(.await)))
        } else {
            (quote!(recompute), None)
        };
        let run = quote!(
            __memo_site.#method(__memo_function, __memo_key, __memo_ops, __memo_outcome, __memo_mem, __memo_compute)#wait
        );
        self.companion_item(
            &doc,
            &sig,
            quote!({ #site #function #parts #ops #keys #compute #run }),
        )
    }

    fn uncached(&self) -> TokenStream {
        let sig = self.plan_sig("uncached");
        let doc = format!(
            " The original `{f}`, uncached: runs its body and neither reads nor stores a result \
             (recursive calls inside the body still go through the cache). Generated by `#[disk_cache]`.",
            f = self.ident()
        );
        self.companion_item(&doc, &sig, self.body())
    }

    /// The function's signature under a companion's name.
    fn plan_sig(&self, op: &str) -> syn::Signature {
        let mut sig = self.outer_sig();
        sig.ident = self.companion(op);
        sig
    }

    fn companion_item(&self, doc: &str, sig: &syn::Signature, body: TokenStream) -> TokenStream {
        let vis = &self.item.vis;
        let kept = self.item.attrs.iter().filter(|a| {
            let path = a.path();
            path.is_ident("cfg") || path.is_ident("cfg_attr") || path.is_ident("allow")
        });
        quote! {
            #[doc = #doc]
            #(#kept)*
            #[allow(non_snake_case, dead_code, unused_variables, unused_mut, clippy::too_many_arguments, clippy::ptr_arg)]
            #vis #sig #body
        }
    }
}

/// `tokens` (the expansion's own, such as the crate's path) with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut group =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                group.set_span(span);
                token = TokenTree::Group(group);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// True when `pattern` binds part of its value `ref mut`, which needs a `mut` place.
fn borrows_mut(pattern: &syn::Pat) -> bool {
    struct Find(bool);
    impl<'ast> syn::visit::Visit<'ast> for Find {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0 |= p.by_ref.is_some() && p.mutability.is_some();
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut find = Find(false);
    syn::visit::Visit::visit_pat(&mut find, pattern);
    find.0
}

/// The set of a set argument written `&HashSet<..>`.
fn set_of(ty: &syn::Type) -> &syn::Type {
    match ty {
        syn::Type::Reference(r) => &r.elem,
        syn::Type::Paren(p) => set_of(&p.elem),
        syn::Type::Group(g) => set_of(&g.elem),
        other => other,
    }
}

/// Where the `Ok` type of a `..Result<T, ..>` is written.
fn ok_span(ty: &syn::Type) -> Option<Span> {
    crate::analyze::ok_type(ty).map(syn::spanned::Spanned::span)
}

fn ret_span(item: &ItemFn) -> Span {
    match &item.sig.output {
        syn::ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
        syn::ReturnType::Default => item.sig.ident.span(),
    }
}
