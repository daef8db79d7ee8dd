//! Parsing the attribute's options: `#[disk_cache(dir = "..", ttl = "1h", ignore(a, b), ..)]`.

use std::time::Duration;

use proc_macro2::{Ident, Span};
use syn::meta::ParseNestedMeta;
use syn::{LitBool, LitInt, LitStr};

/// Every option, in the order the docs list them; unknown ones are matched against these.
const KNOWN: &[&str] = &[
    "dir",
    "ttl",
    "ignore",
    "version",
    "name",
    "cache_err",
    "memory",
    "remote",
    "lease",
    "write_timeout",
    "compress",
    "companions",
    "ordered",
];

/// The options as written.
#[derive(Default)]
pub struct Options {
    pub dir: Option<LitStr>,
    pub ttl: Option<(LitStr, Duration)>,
    pub ignore: Vec<Ident>,
    pub version: Option<LitStr>,
    pub name: Option<LitStr>,
    pub cache_err: bool,
    pub memory: Option<(LitInt, usize)>,
    pub remote: Option<LitStr>,
    pub lease: Option<(LitStr, Duration)>,
    pub write_timeout: Option<(LitStr, Duration)>,
    /// `compress = N`: the zstd level of this function's values (0: none).
    pub compress: Option<(LitInt, i32)>,
    /// `companions = false`: no `f__clear` and kin (a method in a trait impl, whose items must
    /// all be the trait's).
    pub no_companions: Option<LitBool>,
    /// Arguments whose maps are keyed in their iteration order: `ordered(a, b)`.
    pub ordered: Vec<Ident>,
    /// Where `memory = N` was written, for errors about the return type's `Clone`.
    pub memory_span: Option<Span>,
}

impl Options {
    /// False with `companions = false`.
    pub fn companions(&self) -> bool {
        self.no_companions.as_ref().is_none_or(LitBool::value)
    }

    /// Parses one option; called by `syn::meta::parser` for each comma-separated item.
    pub fn parse(&mut self, meta: ParseNestedMeta) -> syn::Result<()> {
        let Some(option) = meta.path.get_ident().map(|i| i.to_string()) else {
            return Err(meta.error(unknown_option_message(&path_text(&meta.path))));
        };
        let seen = match option.as_str() {
            "dir" => self
                .dir
                .replace(non_empty(meta.value()?.parse()?, "dir")?)
                .is_some(),
            "ttl" => {
                let lit: LitStr = meta.value()?.parse()?;
                let ttl = parse_duration(&lit, "ttl", "would expire every entry at once")?;
                self.ttl.replace((lit, ttl)).is_some()
            }
            "lease" => {
                let lit: LitStr = meta.value()?.parse()?;
                let lease = parse_duration(&lit, "lease", "would take over from every holder")?;
                if lease < Duration::from_secs(2) {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "a `lease` under 2s could take over from a live holder on a busy machine; write at least \"2s\"",
                    ));
                }
                self.lease.replace((lit, lease)).is_some()
            }
            "write_timeout" => {
                let lit: LitStr = meta.value()?.parse()?;
                let timeout = parse_duration(&lit, "write_timeout", "would never store a value")?;
                self.write_timeout.replace((lit, timeout)).is_some()
            }
            "compress" => {
                let level = compress_level(&meta)?;
                self.compress.replace(level).is_some()
            }
            "companions" => {
                let value = meta.value()?;
                let lit: LitBool = value.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`companions` takes `true` or `false`: write `companions = false` on a method in a trait impl",
                    )
                })?;
                let seen = self.no_companions.is_some();
                self.no_companions = Some(lit);
                seen
            }
            "ordered" => names(
                &meta,
                &mut self.ordered,
                "ordered",
                "write the names of arguments whose maps keep their order: `ordered(columns, config)`",
            )?,
            "ignore" => names(
                &meta,
                &mut self.ignore,
                "ignore",
                "write the names of arguments to leave out of the key: `ignore(progress, logger)`",
            )?,
            "version" => self
                .version
                .replace(non_empty(meta.value()?.parse()?, "version")?)
                .is_some(),
            "name" => self
                .name
                .replace(non_empty(meta.value()?.parse()?, "name")?)
                .is_some(),
            "cache_err" => {
                let lit: LitBool = meta.value()?.parse()?;
                let seen = self.cache_err;
                self.cache_err = lit.value;
                seen
            }
            "memory" => {
                let span = meta.path.get_ident().map(Ident::span);
                let lit: LitInt = meta.value()?.parse()?;
                let n: usize = lit.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "`memory = 0` keeps nothing in memory: write the number of entries to keep, or remove the option",
                    ));
                }
                self.memory_span = span;
                self.memory.replace((lit, n)).is_some()
            }
            "remote" => {
                let lit = non_empty(meta.value()?.parse()?, "remote")?;
                let urls = lit.value();
                let bad = urls.split([',', ' ']).filter(|u| !u.is_empty()).find(|u| {
                    !(u.starts_with("redis://")
                        || u.starts_with("rediss://")
                        || u.starts_with("memcache://")
                        || u.starts_with("postgres://")
                        || u.starts_with("postgresql://"))
                });
                if let Some(bad) = bad {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        format!(
                            "`remote` takes redis://host:port, rediss://host:port, comma-separated Redis Cluster node URLs, memcache://host:port (comma-separated for several servers), or postgres://user@host:port/db; `{bad}` is none of these"
                        ),
                    ));
                }
                self.remote.replace(lit).is_some()
            }
            other => {
                return Err(syn::Error::new_spanned(
                    &meta.path,
                    unknown_option_message(other),
                ));
            }
        };
        if seen {
            return Err(syn::Error::new_spanned(
                &meta.path,
                format!("`{option}` is given twice"),
            ));
        }
        Ok(())
    }
}

/// The highest zstd level.
const MAX_LEVEL: i32 = 22;

/// `compress = N`: a zstd level from 0 (none) to [`MAX_LEVEL`].
fn compress_level(meta: &ParseNestedMeta) -> syn::Result<(LitInt, i32)> {
    let expected = format!(
        "`compress` takes a zstd level: 1 (fastest) to {MAX_LEVEL} (smallest), or 0 for none"
    );
    let value = meta.value()?;
    let lit: LitInt = value
        .parse()
        .map_err(|e| syn::Error::new(e.span(), &expected))?;
    match lit.base10_parse::<i32>() {
        Ok(level) if (0..=MAX_LEVEL).contains(&level) => Ok((lit, level)),
        _ => Err(syn::Error::new_spanned(
            &lit,
            format!("{expected}; `{lit}` is not one"),
        )),
    }
}

/// Parses `option(a, b, ..)` into `list`; true when the option was given before.
fn names(
    meta: &ParseNestedMeta,
    list: &mut Vec<Ident>,
    option: &str,
    expected: &str,
) -> syn::Result<bool> {
    let before = list.len();
    meta.parse_nested_meta(|arg| match arg.path.get_ident() {
        Some(ident) if arg.input.is_empty() || arg.input.peek(syn::Token![,]) => {
            list.push(ident.clone());
            Ok(())
        }
        _ => Err(arg.error(expected)),
    })?;
    if list.len() == before {
        return Err(meta.error(format!(
            "`{option}()` names no argument: write `{option}(name, ..)` or remove it"
        )));
    }
    Ok(before > 0)
}

fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn non_empty(lit: LitStr, option: &str) -> syn::Result<LitStr> {
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new_spanned(
            &lit,
            format!("`{option}` cannot be empty"),
        ));
    }
    Ok(lit)
}

/// A non-zero duration in humantime syntax; `zero` says what a zero one would do.
fn parse_duration(lit: &LitStr, option: &str, zero: &str) -> syn::Result<Duration> {
    match humantime::parse_duration(&lit.value()) {
        Ok(d) if d.is_zero() => Err(syn::Error::new_spanned(
            lit,
            format!("a `{option}` of zero {zero}"),
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(syn::Error::new_spanned(
            lit,
            format!(
                "`{option} = {:?}` is not a duration ({e}); write one like \"90s\", \"15min\", \"1h 30m\" or \"7days\"",
                lit.value()
            ),
        )),
    }
}

fn unknown_option_message(option: &str) -> String {
    let valid = KNOWN.join(", ");
    match nearest(option) {
        Some(near) => {
            format!("unknown option `{option}`; did you mean `{near}`? (valid options: {valid})")
        }
        None => format!("unknown option `{option}` (valid options: {valid})"),
    }
}

/// The known option closest to `option` by edit distance, if it is close enough to be a typo.
fn nearest(option: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .map(|known| (edit_distance(option, known), *known))
        .filter(|(d, known)| *d <= known.len().max(option.len()) / 2)
        .min()
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_option() {
        assert_eq!(nearest("tll"), Some("ttl"));
        assert_eq!(nearest("ignor"), Some("ignore"));
        assert_eq!(nearest("cache_errors"), Some("cache_err"));
        assert_eq!(nearest("directory"), None);
        assert_eq!(nearest("zzzzzzzz"), None);
    }
}
