//! Expansion: the cached function and its four companions.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
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
    let main = cx.cached();
    let clear = cx.clear();
    let is_cached = cx.is_cached();
    let recompute = cx.recompute();
    let uncached = cx.uncached();
    quote! { #main #clear #is_cached #recompute #uncached }
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
        let tag = format!(":{}:{}", self.ident(), self.fingerprint);
        quote! {
            static __MEMO_SITE: #krate::__private::SiteRef = #krate::__private::SiteRef::new(
                ::core::concat!(::core::file!(), ":", ::core::line!(), ":", ::core::column!(), #tag),
                #dir,
                #remote,
                #memory,
            );
            let __memo_site = __MEMO_SITE.get();
        }
    }

    /// `let __memo_function`: the identity (name, fingerprint, return type, ttl).
    fn function(&self) -> TokenStream {
        let krate = self.krate;
        let ret = &self.plan.ret;
        let fingerprint = match &self.options.version {
            Some(version) => quote!(#version),
            None => {
                let fp = self.fingerprint;
                quote!(#fp)
            }
        };
        let base = match &self.options.name {
            Some(name) => quote!(::std::string::String::from(#name)),
            None if mentions_self(&self.item.sig) => {
                let ident = self.ident().to_string();
                quote!(::std::format!("{}::{}", ::core::any::type_name::<Self>(), #ident))
            }
            None => {
                let ident = self.ident().to_string();
                quote!(::std::string::String::from(
                    ::core::concat!(::core::module_path!(), "::", #ident)
                ))
            }
        };
        let return_type = if self.options.cache_err {
            quote!(::std::format!("{} (Err cached too)", ::core::any::type_name::<#ret>()))
        } else {
            quote!(::core::any::type_name::<#ret>())
        };
        let ttl = self.options.ttl.as_ref().map(|(_, ttl)| {
            let (secs, nanos) = (ttl.as_secs(), ttl.subsec_nanos());
            quote!(.with_ttl(::core::time::Duration::new(#secs, #nanos)))
        });
        let params = &self.plan.type_params;
        if params.is_empty() {
            quote! {
                let __memo_function: &'static #krate::Function = __memo_site.function(|| {
                    #krate::Function::owned(#base, #fingerprint, #return_type) #ttl
                });
            }
        } else {
            quote! {
                let __memo_function: &'static #krate::Function = __memo_site.generic_function(
                    ::core::any::type_name::<(#(#params,)*)>(),
                    || {
                        let __memo_types: &[&str] = &[#(::core::any::type_name::<#params>()),*];
                        let __memo_name = ::std::format!("{}::<{}>", #base, __memo_types.join(", "));
                        #krate::Function::owned(__memo_name, #fingerprint, #return_type) #ttl
                    },
                );
            }
        }
    }

    /// `let __memo_key`: the cache handle and key, computed from borrowed arguments.
    fn key(&self) -> TokenStream {
        let args = self.key_args();
        quote! {
            let __memo_key = __memo_site.key(__memo_function, #args);
        }
    }

    /// `&(a, &b, ..)`: the arguments that take part in the key, borrowed.
    fn key_args(&self) -> TokenStream {
        let krate = self.krate;
        let parts = self.plan.args.iter().filter_map(|arg| {
            let ident = &arg.ident;
            Some(match arg.key? {
                KeyPart::Plain => quote!(&#ident),
                KeyPart::SelfRef => quote!(#ident),
                KeyPart::SelfValue => quote!(&#ident),
                KeyPart::Set => quote!(#krate::Unordered(&#ident)),
                KeyPart::SetRef => quote!(#krate::Unordered(#ident)),
            })
        });
        quote!(&(#(#parts,)*))
    }

    /// `let __memo_mem`: with `memory = N`, ask the in-memory LRU first and return on a hit.
    fn recall(&self) -> TokenStream {
        if self.options.memory.is_none() {
            return quote!(let __memo_mem = ::core::option::Option::None;);
        }
        let (args, ops) = (self.key_args(), self.memory_ops());
        let hit = if self.plan.fallible {
            quote!(::core::result::Result::Ok(__memo_value))
        } else {
            quote!(__memo_value)
        };
        quote! {
            let __memo_mem = match __memo_site.recall(__memo_function, #args, #ops) {
                ::core::result::Result::Ok(__memo_value) => return #hit,
                ::core::result::Result::Err(__memo_mem) => __memo_mem,
            };
        }
    }

    /// `let __memo_mem` for a call that skips the LRU lookup but remembers its result.
    fn mem(&self) -> TokenStream {
        if self.options.memory.is_none() {
            return quote!(let __memo_mem = ::core::option::Option::None;);
        }
        let (args, ops) = (self.key_args(), self.memory_ops());
        quote!(let __memo_mem = __memo_site.mem(__memo_function, #args, #ops);)
    }

    /// Compile-time checks, spanned on the tokens they are about.
    fn checks(&self) -> TokenStream {
        let krate = self.krate;
        let mut checks = TokenStream::new();
        for arg in &self.plan.args {
            if arg.key.is_none() {
                continue;
            }
            checks.extend(match &arg.ty {
                Some(ty) => quote_spanned!(arg.span=> #krate::__private::assert_key_arg::<#ty>();),
                None => quote_spanned!(arg.span=> #krate::__private::assert_self_key::<Self>();),
            });
        }
        let ret = &self.plan.ret;
        let span = ret_span(self.item);
        checks.extend(if self.plan.fallible {
            quote_spanned!(span=> #krate::__private::assert_storable_ok::<#ret>();)
        } else {
            quote_spanned!(span=> #krate::__private::assert_storable::<#ret>();)
        });
        checks
    }

    fn memory_ops(&self) -> TokenStream {
        let krate = self.krate;
        match self.options.memory_span {
            Some(span) => quote_spanned!(span=> #krate::__private::cloning()),
            None => quote!(::core::option::Option::None),
        }
    }

    fn compute(&self) -> TokenStream {
        let block = &self.item.block;
        let ret = &self.plan.ret;
        if self.plan.is_async {
            quote!(let __memo_compute = async move #block;)
        } else {
            quote!(let __memo_compute = move || -> #ret #block;)
        }
    }

    /// The function itself: memory, disk, compute.
    fn cached(&self) -> TokenStream {
        let ItemFn {
            attrs, vis, sig, ..
        } = self.item;
        let (checks, site, function, recall, key, compute) = (
            self.checks(),
            self.site(),
            self.function(),
            self.recall(),
            self.key(),
            self.compute(),
        );
        let mem = quote!(__memo_mem);
        let krate = self.krate;
        let run = if self.plan.is_async {
            let method = if self.plan.fallible {
                quote!(get_or_try_compute_async)
            } else {
                quote!(get_or_compute_async)
            };
            let asyncness = sig
                .asyncness
                .as_ref()
                .map_or_else(Span::call_site, |a| a.span);
            let require = quote_spanned!(asyncness=> #krate::__memo_require_tokio!(););
            quote! {
                #require
                match __memo_key {
                    ::core::option::Option::Some((__memo_cache, __memo_key)) => {
                        __memo_site.#method(__memo_function, __memo_cache, __memo_key, #mem, __memo_compute).await
                    }
                    ::core::option::Option::None => __memo_compute.await,
                }
            }
        } else {
            let method = if self.plan.fallible {
                quote!(get_or_try_compute)
            } else {
                quote!(get_or_compute)
            };
            quote! {
                match __memo_key {
                    ::core::option::Option::Some((__memo_cache, __memo_key)) => {
                        __memo_site.#method(__memo_function, __memo_cache, &__memo_key, #mem, __memo_compute)
                    }
                    ::core::option::Option::None => __memo_compute(),
                }
            }
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                #checks
                #site
                #function
                #recall
                #key
                #compute
                #run
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
        let (site, function) = (self.site(), self.function());
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
        let (site, function, key, args) =
            (self.site(), self.function(), self.key(), self.key_args());
        self.companion_item(
            &doc,
            &sig,
            quote!({ #site #function #key __memo_site.contains(__memo_function, #args, __memo_key) }),
        )
    }

    fn recompute(&self) -> TokenStream {
        let sig = self.plan_sig("recompute");
        let doc = format!(
            " Runs `{f}` whatever is cached, stores the result (replacing the stored one) and \
             returns it. Generated by `#[disk_cache]`.",
            f = self.ident()
        );
        let (site, function, key, compute, remember) = (
            self.site(),
            self.function(),
            self.key(),
            self.compute(),
            self.mem(),
        );
        let mem = quote!(__memo_mem);
        let run = match (self.plan.is_async, self.plan.fallible) {
            (false, true) => {
                quote!(__memo_site.recompute(__memo_function, __memo_key, #mem, __memo_compute))
            }
            (false, false) => {
                quote!(__memo_site.recompute_value(__memo_function, __memo_key, #mem, __memo_compute))
            }
            (true, true) => {
                quote!(__memo_site.recompute_async(__memo_function, __memo_key, #mem, __memo_compute).await)
            }
            (true, false) => {
                quote!(__memo_site.recompute_value_async(__memo_function, __memo_key, #mem, __memo_compute).await)
            }
        };
        self.companion_item(
            &doc,
            &sig,
            quote!({ #site #function #remember #key #compute #run }),
        )
    }

    fn uncached(&self) -> TokenStream {
        let sig = self.plan_sig("uncached");
        let doc = format!(
            " The original `{f}`, uncached: runs its body and neither reads nor stores a result \
             (recursive calls inside the body still go through the cache). Generated by `#[disk_cache]`.",
            f = self.ident()
        );
        let block = &self.item.block;
        self.companion_item(&doc, &sig, quote!(#block))
    }

    /// The function's signature under a companion's name.
    fn plan_sig(&self, op: &str) -> syn::Signature {
        let mut sig = self.item.sig.clone();
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
            #[allow(non_snake_case, dead_code, unused_variables, unused_mut, clippy::too_many_arguments)]
            #vis #sig #body
        }
    }
}

fn ret_span(item: &ItemFn) -> Span {
    match &item.sig.output {
        syn::ReturnType::Type(_, ty) => syn::spanned::Spanned::span(&**ty),
        syn::ReturnType::Default => item.sig.ident.span(),
    }
}

/// True for a method, or a function whose signature names `Self`: it lives in an `impl`, and
/// its stable name is taken from the type (`crate::Point::norm`).
fn mentions_self(sig: &syn::Signature) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            TokenTree::Ident(i) => i == "Self" || i == "self",
            TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(quote!(#sig))
}
