//! One function per subcommand, on the library's public API.

use std::cmp::Reverse;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use comfy_table::Cell;
use memo_cache::{Cache, EntryInfo, Error, FunctionStats, Prune, Removal, Verify, human_bytes};

/// Arguments longer than this are cut in `ls --entries`.
const ARGS_WIDTH: usize = 28;
use serde_json::{Value, json};

use crate::Refused;
use crate::cli::{
    ClearArgs, Cli, Command, LsArgs, PruneArgs, RemoteArgs, RemoteCommand, ShowArgs, SortKey,
    StatsArgs, VerifyArgs,
};
use crate::decode;
use crate::output::{JSON_FORMAT, Output, print_json, print_raw_json, print_table};
use crate::values::{count, ms, relative, rfc3339, span};

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = Output::new(cli.json, cli.color, cli.verbosity());
    if let Command::Completions { shell } = cli.command {
        // Into memory first: clap_complete panics on a failed write, e.g. into a closed pipe.
        let mut script = Vec::new();
        clap_complete::generate(
            shell,
            &mut Cli::command_for_docs(),
            "memo-cache",
            &mut script,
        );
        std::io::stdout().write_all(&script)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::GenerateMan { dir } = &cli.command {
        return generate_man(dir, out);
    }
    if let Command::Remote(args) = &cli.command {
        return remote(args, out);
    }
    let dir = match cli.dir {
        Some(dir) => dir,
        None => memo_cache::default_dir()?,
    };
    match cli.command {
        Command::Dir => dir_cmd(&dir, out),
        Command::Ls(args) => ls(&open(&dir, Access::Look)?, &args, out),
        Command::Stats(args) => stats(&open(&dir, Access::Look)?, &args, out),
        Command::Show(args) => {
            // Reading a value checks its hash; read-only, a bad one is reported but left for
            // `verify` instead of being dropped.
            let access = if args.value {
                Access::LookOnly
            } else {
                Access::Look
            };
            show(&open(&dir, access)?, &args, out)
        }
        // Removing from a cache that does not exist removes nothing, and is no error: cleanup
        // scripts run twice (as `uv cache clean` does).
        Command::Prune(_) | Command::Clear(_) if nothing_there(&dir) => {
            out.note(format_args!(
                "{} does not exist: there is no cache to remove from",
                dir.display()
            ));
            report_removal(&Removal::default(), out)
        }
        Command::Prune(args) => prune(&open(&dir, Access::Change)?, &args, out),
        Command::Clear(args) => clear(&open(&dir, Access::Change)?, &args, out),
        Command::Verify(args) => {
            let access = if args.fix {
                Access::Change
            } else {
                Access::Look
            };
            verify(&open(&dir, access)?, &args, out)
        }
        Command::Completions { .. } | Command::GenerateMan { .. } | Command::Remote(_) => {
            unreachable!("handled above")
        }
    }
}

/// True when nothing at all is at `dir` (not even a dangling symlink).
fn nothing_there(dir: &Path) -> bool {
    matches!(std::fs::symlink_metadata(dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// What a command will do to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Only read. The connection may write (SQLite then removes its WAL files at close, leaving
    /// the directory as it was), but nothing here does.
    Look,
    /// Only read, through a read-only handle: even a bad value found is left for `verify`.
    LookOnly,
    /// Remove entries or files.
    Change,
}

/// Why `dir` cannot be a cache directory, when it is a file or lies under one.
fn not_a_directory(dir: &Path) -> Option<String> {
    const WHAT_TO_DO: &str = "pass --dir with a cache directory, or set MEMO_CACHE_DIR to one \
                              (`memo-cache dir` prints the one in use)";
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_file() => Some(format!(
            "{} is a file, not a cache directory; {WHAT_TO_DO}",
            dir.display()
        )),
        Ok(meta) if !meta.is_dir() => Some(format!(
            "{} is not a directory, so it is no cache directory; {WHAT_TO_DO}",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            let file = dir.ancestors().skip(1).find(|a| a.is_file())?;
            Some(format!(
                "{} is a file, so {} cannot be a cache directory; {WHAT_TO_DO}",
                file.display(),
                dir.display()
            ))
        }
        _ => None,
    }
}

/// Opens an existing cache; never creates one, nor migrates an index of an older schema.
fn open(dir: &Path, access: Access) -> anyhow::Result<Cache> {
    if let Some(why) = not_a_directory(dir) {
        bail!(why);
    }
    let builder = Cache::builder(dir);
    let builder = match access {
        Access::LookOnly => builder.read_only(),
        Access::Look | Access::Change => builder.existing_only(),
    };
    let cache = builder.open().map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
            anyhow::anyhow!(
                "{} does not exist, so there is no cache there; pass --dir or set MEMO_CACHE_DIR to use another",
                dir.display()
            )
        }
        other => anyhow::Error::new(other),
    })?;
    if access == Access::Change && cache.is_read_only() {
        bail!(
            "{} is read-only for this user, so nothing can be removed; nothing was changed",
            dir.display()
        );
    }
    Ok(cache)
}

// ---- dir --------------------------------------------------------------------------------------

fn dir_cmd(dir: &Path, out: Output) -> anyhow::Result<ExitCode> {
    let is_cache = dir.join(memo_cache::INDEX_FILE).is_file();
    if out.json {
        print_json(&json!({ "dir": dir, "exists": dir.exists(), "is_cache": is_cache }))?;
    } else {
        writeln!(std::io::stdout(), "{}", dir.display())?;
        if let Some(why) = not_a_directory(dir) {
            out.note(format_args!("note: {why}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- generate-man -----------------------------------------------------------------------------

/// Writes `memo-cache.1` and a page per command (`memo-cache-ls.1`, `memo-cache-remote-stats.1`)
/// into `dir`, from the same definition as `--help`.
fn generate_man(dir: &Path, out: Output) -> anyhow::Result<ExitCode> {
    make_man_dir(dir)?;
    let mut written = Vec::new();
    write_man_pages(&Cli::command_for_docs(), dir, &mut written)?;
    if out.json {
        print_json(&json!({ "dir": dir, "pages": written }))?;
    } else {
        let mut stdout = std::io::stdout().lock();
        for page in &written {
            writeln!(stdout, "{}", page.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes `dir` if missing; when a file stands in the way, says which and what to do.
fn make_man_dir(dir: &Path) -> anyhow::Result<()> {
    let Err(e) = std::fs::create_dir_all(dir) else {
        return Ok(());
    };
    if let Some(file) = dir.ancestors().find(|p| p.is_file()) {
        anyhow::bail!(
            "cannot write man pages into {}: {} is a file, not a directory; nothing was written. \
             Name a directory instead (it is made if missing), e.g. ~/.local/share/man/man1",
            dir.display(),
            file.display()
        );
    }
    Err(anyhow::Error::new(e).context(format!(
        "cannot make the man page directory {}; nothing was written",
        dir.display()
    )))
}

fn write_man_pages(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<()> {
    // Built, the command names its subcommands `memo-cache-ls` (the page) and `memo-cache ls`
    // (the synopsis).
    let man = clap_mangen::Man::new(command.clone())
        .source(format!("memo-cache {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_man_pages(sub, dir, written)?;
    }
    Ok(())
}

// ---- ls ---------------------------------------------------------------------------------------

fn ls(cache: &Cache, args: &LsArgs, out: Output) -> anyhow::Result<ExitCode> {
    let mut functions = cache.functions().context("listing functions")?;
    if let Some(name) = &args.func {
        let known = known_function(&functions, name);
        functions.retain(|f| &f.name == name);
        known.with_context(|| format!("in {}", cache.dir().display()))?;
    } else {
        // A function whose entries are all gone stays in the index (its versions), but there
        // is nothing of it to list unless it is asked for by name.
        functions.retain(|f| f.entries > 0);
    }
    if args.entries {
        ls_entries(cache, args, out)
    } else {
        ls_functions(cache, functions, args.sort, out)
    }
}

/// Fails with a suggestion when no function is called `name`.
fn known_function(functions: &[FunctionStats], name: &str) -> anyhow::Result<()> {
    if functions.iter().any(|f| f.name == name) {
        return Ok(());
    }
    let suffix = format!("::{name}");
    let close: Vec<&str> = functions
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| n.ends_with(&suffix) || n.contains(name))
        .take(3)
        .collect();
    if close.is_empty() {
        bail!("no function is named {name:?}; `memo-cache ls` lists the full names");
    }
    bail!(
        "no function is named {name:?}; did you mean {}?",
        close.join(" or ")
    );
}

fn ls_functions(
    cache: &Cache,
    mut functions: Vec<FunctionStats>,
    sort: Option<SortKey>,
    out: Output,
) -> anyhow::Result<ExitCode> {
    match sort.unwrap_or(SortKey::Name) {
        SortKey::Name => functions.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::Size => functions.sort_by_key(|f| Reverse(f.bytes)),
        SortKey::LastUsed => functions.sort_by_key(|f| Reverse(f.last_used)),
        SortKey::Entries => functions.sort_by_key(|f| Reverse(f.entries)),
        SortKey::Saved => functions.sort_by_key(|f| Reverse(f.saved)),
        SortKey::Cost => functions.sort_by_key(|f| Reverse(f.compute_time)),
    }
    if out.json {
        let rows: Vec<Value> = functions
            .iter()
            .map(|f| {
                json!({
                    "function": f.name,
                    "entries": f.entries,
                    "bytes": f.bytes,
                    "last_used": f.last_used.map(rfc3339),
                    "stale_entries": f.stale_entries,
                    "stale_bytes": f.stale_bytes,
                    "fingerprint": f.fingerprint,
                    "return_type": f.return_type,
                    "hits": f.hits,
                    "compute_ms": ms(f.compute_time),
                    "saved_ms": ms(f.saved),
                    "saved_ms_per_mib": ms(f.saved_per_mib()),
                })
            })
            .collect();
        print_json(&json!({ "functions": rows }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if functions.is_empty() {
        writeln!(
            std::io::stdout(),
            "No cached functions in {}.",
            cache.dir().display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemTime::now();
    let mut table = out.table(
        &[
            "FUNCTION",
            "ENTRIES",
            "SIZE",
            "HITS",
            "COMPUTE",
            "SAVED",
            "LAST USED",
            "STALE",
        ],
        &[1, 2, 3, 4, 5, 7],
    );
    for f in &functions {
        let stale = if f.stale_entries == 0 {
            Cell::new("0")
        } else {
            out.warn_cell(count(f.stale_entries))
        };
        table.add_row(vec![
            Cell::new(&f.name),
            Cell::new(count(f.entries)),
            Cell::new(human_bytes(f.bytes)),
            Cell::new(count(f.hits)),
            Cell::new(span(f.compute_time)),
            Cell::new(span(f.saved)),
            Cell::new(
                f.last_used
                    .map_or_else(|| "never".to_owned(), |t| relative(t, now)),
            ),
            stale,
        ]);
    }
    print_table(&table)?;
    Ok(ExitCode::SUCCESS)
}

fn ls_entries(cache: &Cache, args: &LsArgs, out: Output) -> anyhow::Result<ExitCode> {
    let mut entries = cache
        .entries(args.func.as_deref())
        .context("listing entries")?;
    match args.sort.unwrap_or(SortKey::Name) {
        SortKey::Name => entries.sort_by(|a, b| (&a.function, a.key).cmp(&(&b.function, b.key))),
        SortKey::Size => entries.sort_by_key(|e| (Reverse(e.bytes), e.key)),
        SortKey::LastUsed => entries.sort_by_key(|e| (Reverse(e.last_used), e.key)),
        SortKey::Entries => entries.sort_by_key(|e| (Reverse(e.hits), e.key)),
        SortKey::Saved => entries.sort_by_key(|e| (Reverse(saved(e)), e.key)),
        SortKey::Cost => entries.sort_by_key(|e| (Reverse(e.compute_time), e.key)),
    }
    let now = SystemTime::now();
    if out.json {
        print_entries_json(&entries, now)?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        writeln!(
            std::io::stdout(),
            "No entries in {}.",
            cache.dir().display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = out.table(
        &[
            "KEY",
            "FUNCTION",
            "ARGS",
            "SIZE",
            "COMPUTE",
            "HITS",
            "SAVED",
            "LAST USED",
            "EXPIRES",
            "STATE",
        ],
        &[3, 4, 5, 6],
    );
    for e in &entries {
        table.add_row(vec![
            Cell::new(&e.key.to_hex()[..16]),
            Cell::new(&e.function),
            Cell::new(args_cell(e)),
            Cell::new(human_bytes(e.bytes)),
            Cell::new(span(e.compute_time)),
            Cell::new(count(e.hits)),
            Cell::new(span(saved(e))),
            Cell::new(relative(e.last_used, now)),
            Cell::new(
                e.expires
                    .map_or_else(|| "never".to_owned(), |t| relative(t, now)),
            ),
            out.warn_cell(state(e, now)),
        ]);
    }
    print_table(&table)?;
    Ok(ExitCode::SUCCESS)
}

/// Compute time an entry's hits saved.
fn saved(e: &EntryInfo) -> std::time::Duration {
    e.compute_time
        .saturating_mul(u32::try_from(e.hits).unwrap_or(u32::MAX))
}

/// An entry's arguments on one line: `(37)`, `4.1 KiB` when only their size was kept, `?` when
/// not recorded (stored by key, or by an older memo-cache).
fn args_cell(e: &EntryInfo) -> String {
    match (&e.args, e.args_size) {
        (Some(bytes), _) => decode::args_line(bytes, ARGS_WIDTH),
        (None, Some(size)) => human_bytes(size),
        (None, None) => "?".into(),
    }
}

/// `stale`, `expired`, or empty for an entry that can be served.
fn state(e: &EntryInfo, now: SystemTime) -> &'static str {
    if e.stale {
        "stale"
    } else if e.is_expired_at(now) {
        "expired"
    } else {
        ""
    }
}

/// One entry as JSON: `ls --entries --json` rows, and `show --json`.
#[derive(serde::Serialize)]
struct EntryRow<'a> {
    key: String,
    function: &'a str,
    fingerprint: &'a str,
    return_type: &'a str,
    bytes: u64,
    in_blob: bool,
    hash: String,
    created: String,
    last_used: String,
    hits: u64,
    expires: Option<String>,
    stale: bool,
    expired: bool,
    compute_ms: f64,
    saved_ms: f64,
    compressed: bool,
    /// The arguments decoded, when recorded.
    args: Option<decode::Decoded>,
    /// The length of their encoding, when known.
    args_bytes: Option<u64>,
}

fn entry_row(e: &EntryInfo, now: SystemTime) -> EntryRow<'_> {
    EntryRow {
        key: e.key.to_hex(),
        function: &e.function,
        fingerprint: &e.fingerprint,
        return_type: &e.return_type,
        bytes: e.bytes,
        in_blob: e.in_blob,
        hash: e.hash.to_hex(),
        created: rfc3339(e.created),
        last_used: rfc3339(e.last_used),
        hits: e.hits,
        expires: e.expires.map(rfc3339),
        stale: e.stale,
        expired: e.is_expired_at(now),
        compute_ms: ms(e.compute_time),
        saved_ms: ms(saved(e)),
        compressed: e.compressed,
        args: e
            .args
            .as_deref()
            .and_then(|bytes| decode::args_to_json(bytes).ok()),
        args_bytes: e.args_size,
    }
}

fn entry_json(e: &EntryInfo, now: SystemTime) -> Value {
    serde_json::to_value(entry_row(e, now)).expect("an entry serializes")
}

/// Writes `{"format": .., "entries": [..]}` one row at a time: a million entries as `Value`s
/// took gigabytes.
fn print_entries_json(entries: &[EntryInfo], now: SystemTime) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write!(out, "{{\n  \"format\": {JSON_FORMAT},\n  \"entries\": [")?;
    for (i, e) in entries.iter().enumerate() {
        out.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
        serde_json::to_writer(&mut out, &entry_row(e, now))?;
    }
    out.write_all(if entries.is_empty() {
        b"]\n}\n"
    } else {
        b"\n  ]\n}\n"
    })?;
    out.flush()?;
    Ok(())
}

// ---- stats ------------------------------------------------------------------------------------

fn stats(cache: &Cache, args: &StatsArgs, out: Output) -> anyhow::Result<ExitCode> {
    let s = cache.stats().context("reading totals")?;
    let histograms = if args.histogram {
        Some(Histograms::of(cache)?)
    } else {
        None
    };
    if out.json {
        print_json(&json!({
            "hits": s.hits,
            "compute_ms": ms(s.compute_time),
            "saved_ms": ms(s.saved),
            "histogram": histograms.as_ref().map(Histograms::json),
            "dir": cache.dir(),
            "entries": s.entries,
            "bytes": s.bytes,
            "blob_bytes": s.blob_bytes,
            "index_bytes": s.index_bytes,
            "wal_bytes": s.wal_bytes,
            "disk_bytes": s.disk_bytes,
            "functions": s.functions,
            "stale": s.stale,
            "stale_bytes": s.stale_bytes,
            "expired": s.expired,
            "expired_bytes": s.expired_bytes,
            "remote": cache.remote().map(|r| json!({
                "urls": r.display_urls(),
                "prefix": r.key_prefix(),
                "max_value_bytes": r.max_value(),
                "local_only": s.local_only,
                "local_only_bytes": s.local_only_bytes,
            })),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = out.table(&["", ""], &[]);
    table.set_header(Vec::<Cell>::new());
    let mut rows = vec![
        ("Directory", cache.dir().display().to_string()),
        ("Functions", count(s.functions)),
        ("Entries", count(s.entries)),
        (
            "Stored",
            format!(
                "{} ({} in blob files)",
                human_bytes(s.bytes),
                human_bytes(s.blob_bytes)
            ),
        ),
        (
            "On disk",
            format!(
                "{} (index {}, of which WAL {})",
                human_bytes(s.disk_bytes),
                human_bytes(s.index_bytes),
                human_bytes(s.wal_bytes)
            ),
        ),
        (
            "Saved",
            if s.saved.is_zero() {
                format!(
                    "no compute time yet, in {} {}",
                    count(s.hits),
                    plural(s.hits, "hit", "hits")
                )
            } else {
                format!(
                    "{} of compute in {} {} (the entries held took {} to compute)",
                    span(s.saved),
                    count(s.hits),
                    plural(s.hits, "hit", "hits"),
                    span(s.compute_time)
                )
            },
        ),
        (
            "Stale",
            format!(
                "{} {} ({})",
                count(s.stale),
                plural(s.stale, "entry", "entries"),
                human_bytes(s.stale_bytes)
            ),
        ),
        (
            "Expired",
            format!(
                "{} {} ({})",
                count(s.expired),
                plural(s.expired, "entry", "entries"),
                human_bytes(s.expired_bytes)
            ),
        ),
    ];
    if let Some(remote) = cache.remote() {
        rows.push((
            "Redis tier",
            format!(
                "{} (prefix {}); {} entries ({}) over {} kept local-only",
                remote.display_urls(),
                remote.key_prefix(),
                count(s.local_only.unwrap_or(0)),
                human_bytes(s.local_only_bytes.unwrap_or(0)),
                human_bytes(remote.max_value() as u64)
            ),
        ));
    }
    for (name, value) in rows {
        table.add_row(vec![format!("{name}:"), value]);
    }
    print_table(&table)?;
    if let Some(histograms) = &histograms {
        histograms.print(&mut std::io::stdout().lock())?;
    }
    if s.stale + s.expired > 0 {
        writeln!(
            std::io::stdout(),
            "`memo-cache prune` removes stale and expired entries."
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `stats --histogram`: the entries counted by size and by compute time, in buckets that grow
/// by powers of 4 (sizes) and 10 (times), drawn as bars.
struct Histograms {
    sizes: Vec<(String, u64, u64)>,
    times: Vec<(String, u64, u64)>,
}

/// Upper bounds of the size buckets, in bytes (the last is open).
const SIZE_BOUNDS: [u64; 8] = [
    256,
    4 << 10,
    64 << 10,
    1 << 20,
    16 << 20,
    256 << 20,
    4 << 30,
    u64::MAX,
];

/// Upper bounds of the compute-time buckets, in microseconds (the last is open).
const TIME_BOUNDS: [u64; 8] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    3_600_000_000,
    u64::MAX,
];

impl Histograms {
    fn of(cache: &Cache) -> anyhow::Result<Histograms> {
        let mut sizes = [0u64; SIZE_BOUNDS.len()];
        let mut times = [0u64; TIME_BOUNDS.len()];
        let mut unknown = 0u64;
        cache
            .for_each_entry(None, |e| {
                let i = SIZE_BOUNDS.iter().position(|&b| e.bytes < b).unwrap_or(7);
                sizes[i] += 1;
                let us = u64::try_from(e.compute_time.as_micros()).unwrap_or(u64::MAX);
                if us == 0 {
                    unknown += 1;
                } else {
                    let i = TIME_BOUNDS.iter().position(|&b| us < b).unwrap_or(7);
                    times[i] += 1;
                }
                std::ops::ControlFlow::Continue(())
            })
            .context("reading entries")?;
        let size_label = |i: usize| match i {
            0 => format!("< {}", human_bytes(SIZE_BOUNDS[0])),
            7 => format!(">= {}", human_bytes(SIZE_BOUNDS[6])),
            _ => format!("< {}", human_bytes(SIZE_BOUNDS[i])),
        };
        let time_label = |i: usize| {
            let at = |b: u64| span(std::time::Duration::from_micros(b));
            match i {
                7 => format!(">= {}", at(TIME_BOUNDS[6])),
                _ => format!("< {}", at(TIME_BOUNDS[i])),
            }
        };
        let mut time_rows = vec![("not measured".to_owned(), 0, unknown)];
        time_rows.extend(
            times
                .iter()
                .enumerate()
                .map(|(i, &n)| (time_label(i), TIME_BOUNDS[i], n)),
        );
        Ok(Histograms {
            sizes: sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (size_label(i), SIZE_BOUNDS[i], n))
                .collect(),
            times: time_rows,
        })
    }

    fn json(&self) -> Value {
        let rows = |rows: &[(String, u64, u64)], unit: &str| -> Vec<Value> {
            rows.iter()
                .map(|(label, below, n)| {
                    json!({ "label": label, unit: (*below != u64::MAX).then_some(*below), "entries": n })
                })
                .collect()
        };
        json!({
            "size": rows(&self.sizes, "below_bytes"),
            "compute_time": rows(&self.times, "below_us"),
        })
    }

    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        for (title, rows) in [
            ("Entries by size", &self.sizes),
            ("Entries by compute time", &self.times),
        ] {
            writeln!(out, "\n{title}")?;
            let most = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
            let label_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
            // Trailing empty buckets are left out; leading ones stay, as the scale's start.
            let last = rows.iter().rposition(|r| r.2 > 0).unwrap_or(0);
            for (label, _, n) in &rows[..=last] {
                let width = (*n * 40).div_ceil(most) as usize;
                writeln!(
                    out,
                    "  {label:>label_width$}  {:<40}  {}",
                    "█".repeat(width),
                    count(*n)
                )?;
            }
        }
        Ok(())
    }
}

// ---- show -------------------------------------------------------------------------------------

fn show(cache: &Cache, args: &ShowArgs, out: Output) -> anyhow::Result<ExitCode> {
    let key = cache
        .resolve_key(&args.key)
        .with_context(|| format!("in {}", cache.dir().display()))?;
    let entry = cache
        .entry(&key)?
        .ok_or_else(|| Error::NoSuchKey(key.to_hex()))?;
    let now = SystemTime::now();
    if args.args {
        let Some(bytes) = &entry.args else {
            bail!(
                "the arguments of entry {key} were not recorded: {}",
                match entry.args_size {
                    Some(size) => format!(
                        "their encoding takes {} ({} bytes), and only up to 1 KiB is kept",
                        human_bytes(size),
                        count(size)
                    ),
                    None => "it was stored by key, or by a memo-cache before 0.2".into(),
                }
            );
        };
        let decoded = decode::args_to_json(bytes)
            .map_err(|e| anyhow::anyhow!("cannot decode the arguments of entry {key}: {e}"))?;
        if out.json {
            print_json(&json!({ "key": key.to_hex(), "args": decoded }))?;
        } else {
            print_raw_json(&decoded)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let value = if args.value {
        let stored = cache.stored_bytes(&key)?.with_context(|| {
            format!(
                "the value of entry {key} cannot be read: it has expired, was removed, or its bytes fail \
                 their hash check (`memo-cache verify` tells which)"
            )
        })?;
        let value = decode::to_json(&stored, &entry.return_type)
            .map_err(|e| anyhow::anyhow!("cannot decode the value of entry {key}: {e}"))?;
        Some((decode::format_name(&stored), value))
    } else {
        None
    };
    if out.json {
        let mut object = entry_json(&entry, now);
        if let (Some((format, _)), Value::Object(map)) = (&value, &mut object) {
            map.insert("value_format".into(), json!(format));
        }
        return match value {
            Some((_, value)) => print_json(&WithValue {
                entry: &object,
                value: &value,
            }),
            None => print_json(&object),
        }
        .map(|()| ExitCode::SUCCESS);
    }
    if let Some((_, value)) = value {
        print_raw_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: SystemTime| format!("{} ({})", rfc3339(t), relative(t, now));
    let status = match state(&entry, now) {
        "" => "current".to_owned(),
        "stale" => out.paint(
            "stale: stored by an older version of the function; never served",
            "33",
        ),
        other => out.paint(other, "33"),
    };
    let rows = [
        ("key", entry.key.to_hex()),
        ("function", entry.function.clone()),
        ("fingerprint", entry.fingerprint.clone()),
        ("return type", entry.return_type.clone()),
        ("state", status),
        (
            "size",
            format!(
                "{} ({} bytes, {})",
                human_bytes(entry.bytes),
                count(entry.bytes),
                if entry.in_blob {
                    "in a blob file"
                } else {
                    "inline"
                }
            ),
        ),
        ("hash", entry.hash.to_hex()),
        ("created", when(entry.created)),
        ("last used", when(entry.last_used)),
        ("arguments", show_args(&entry)),
        ("compute time", span(entry.compute_time)),
        ("hits", count(entry.hits)),
        ("saved", span(saved(&entry))),
        (
            "expires",
            entry.expires.map_or_else(|| "never".to_owned(), when),
        ),
    ];
    let mut table = out.table(&["", ""], &[]);
    table.set_header(Vec::<Cell>::new());
    for (name, value) in rows {
        table.add_row(vec![format!("{name}:"), value]);
    }
    print_table(&table)?;
    Ok(ExitCode::SUCCESS)
}

/// The arguments for `show`: whole, or what is known of them.
fn show_args(e: &EntryInfo) -> String {
    match (&e.args, e.args_size) {
        (Some(bytes), _) => decode::args_line(bytes, 200),
        (None, Some(size)) => format!(
            "not kept: their encoding takes {} (up to 1 KiB is kept)",
            human_bytes(size)
        ),
        (None, None) => "not recorded".into(),
    }
}

/// `show --json --value`: the entry's fields, then the value.
#[derive(serde::Serialize)]
struct WithValue<'a> {
    #[serde(flatten)]
    entry: &'a Value,
    value: &'a decode::Decoded,
}

// ---- prune and clear --------------------------------------------------------------------------

fn prune(cache: &Cache, args: &PruneArgs, out: Output) -> anyhow::Result<ExitCode> {
    let mut prune = Prune::new().file_grace(args.grace.grace);
    let no_criterion = args.max_size.is_none()
        && args.max_entries.is_none()
        && args.older_than.is_none()
        && !args.expired
        && !args.stale;
    if args.expired || no_criterion {
        prune = prune.expired();
    }
    if args.stale || no_criterion {
        prune = prune.stale();
    }
    if let Some(bytes) = args.max_size {
        prune = prune.max_size(bytes);
    }
    if let Some(n) = args.max_entries {
        prune = prune.max_entries(n);
    }
    if let Some(age) = args.older_than {
        prune = prune.older_than(age);
    }
    if let Some(name) = &args.func {
        note_unknown_function(cache, name, out)?;
        prune = prune.function(name);
    }
    prune = prune.policy(args.policy.into());
    if args.dry_run {
        prune = prune.dry_run();
    }
    let bar = out.spinner(format!("Pruning {}", cache.dir().display()));
    let removal = cache.prune(&prune.progress(bar.reporter()));
    bar.finish();
    let removal = removal.with_context(|| format!("pruning {}", cache.dir().display()))?;
    report_removal(&removal, out)
}

/// A prune of a function that does not exist removes nothing: say so, but it is not an error
/// (a script may prune a function before it first runs).
fn note_unknown_function(cache: &Cache, name: &str, out: Output) -> anyhow::Result<()> {
    if let Err(e) = known_function(&cache.functions()?, name) {
        out.note(format_args!("note: {}", crate::message(&e)));
    }
    Ok(())
}

fn report_removal(removal: &Removal, out: Output) -> anyhow::Result<ExitCode> {
    if out.json {
        print_json(&json!({
            "entries": removal.entries,
            "bytes": removal.bytes,
            "files": removal.files,
            "file_bytes": removal.file_bytes,
            "first_hit_files": removal.first_hit_files,
            "dry_run": removal.dry_run,
        }))?;
    } else {
        writeln!(std::io::stdout(), "{}", removal_text(removal))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `Removed 1,234 entries (1.4 MiB) and 2 stray files (12.0 KiB)`: the library's wording, with
/// counts written as everywhere in the CLI's text.
fn removal_text(removal: &Removal) -> String {
    let verb = if removal.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let mut text = format!(
        "{verb} {} {} ({})",
        count(removal.entries),
        plural(removal.entries, "entry", "entries"),
        human_bytes(removal.bytes)
    );
    if removal.files > 0 {
        text.push_str(&format!(
            " and {} stray {} ({})",
            count(removal.files),
            plural(removal.files, "file", "files"),
            human_bytes(removal.file_bytes)
        ));
    }
    text
}

fn clear(cache: &Cache, args: &ClearArgs, out: Output) -> anyhow::Result<ExitCode> {
    let functions = cache.functions()?;
    let (what, bytes) = match &args.func {
        Some(name) => {
            known_function(&functions, name)
                .with_context(|| format!("nothing was removed from {}", cache.dir().display()))?;
            let f = functions.iter().find(|f| &f.name == name).expect("known");
            (
                match f.entries {
                    1 => format!("the 1 entry of {name}"),
                    n => format!("the {} entries of {name}", count(n)),
                },
                f.bytes,
            )
        }
        None => {
            let s = cache.stats()?;
            let what = match s.entries {
                1 => "the 1 entry".to_owned(),
                n => format!("all {} entries", count(n)),
            };
            (what, s.bytes)
        }
    };
    // Even with no entries: the stray files go too, and they are not counted here.
    if !args.yes {
        confirm(&format!(
            "Remove {what} ({}) and stray files from {}?",
            human_bytes(bytes),
            cache.dir().display()
        ))?;
    }
    let bar = out.spinner(format!("Clearing {}", cache.dir().display()));
    // What `clear` and `clear_function` do, counted.
    let all = match &args.func {
        Some(name) => Prune::all().function(name),
        None => Prune::all(),
    };
    let removal = cache.prune(&all.progress(bar.reporter()));
    bar.finish();
    let removal = removal.with_context(|| format!("clearing {}", cache.dir().display()))?;
    report_removal(&removal, out)
}

// ---- remote -----------------------------------------------------------------------------------

fn remote(args: &RemoteArgs, out: Output) -> anyhow::Result<ExitCode> {
    // The older variable names, read when the current ones (clap's `env`) are not set.
    let older = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    let url = args
        .url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| older(memo_cache::REDIS_URL_ENV));
    let Some(url) = url else {
        bail!(
            "no shared tier is configured: pass --url redis://host:port, memcache://host:port or \
             postgres://user@host:port/db, or set MEMO_CACHE_REMOTE_URL"
        );
    };
    let mut config = memo_cache::RemoteConfig::new(&url)?;
    if let Some(prefix) = args
        .prefix
        .clone()
        .or_else(|| std::env::var(memo_cache::REDIS_PREFIX_ENV).ok())
    {
        config = config.prefix(prefix);
    }
    let place = format!(
        "{} under prefix {:?}",
        config.display_urls(),
        config.key_prefix()
    );
    match &args.command {
        RemoteCommand::Stats => {
            let spinner = out.spinner(format!("Scanning {place}"));
            let stats = memo_cache::remote_stats(&config);
            spinner.finish();
            let stats = stats.with_context(|| format!("scanning {place}"))?;
            let servers: Vec<_> = stats
                .servers
                .iter()
                .map(|s| {
                    json!({
                        "url": s.url,
                        "items": s.items,
                        "bytes": s.bytes,
                        "limit_bytes": s.limit_bytes,
                        "hits": s.hits,
                        "misses": s.misses,
                        "evictions": s.evictions,
                        "generation": s.generation,
                    })
                })
                .collect();
            if out.json {
                print_json(&json!({
                    "tier": config.tier(),
                    "urls": config.display_urls(),
                    "prefix": config.key_prefix(),
                    "nodes": stats.nodes,
                    "values": stats.values,
                    "bytes": stats.bytes,
                    "locks": stats.locks,
                    "generation": stats.generation,
                    "servers": servers,
                    "table": stats.table,
                    "disk_bytes": stats.disk_bytes,
                    "expired": stats.expired,
                    "functions": stats.functions.iter().map(|f| json!({
                        "name": f.name,
                        "values": f.values,
                        "bytes": f.bytes,
                    })).collect::<Vec<_>>(),
                }))?;
            } else if config.tier() == "PostgreSQL" {
                let mut stdout = std::io::stdout();
                writeln!(
                    stdout,
                    "{place}: {} values ({}) in table {}, {} expired (removed by `remote prune`), \
                     {} compute {} held{}",
                    count(stats.values),
                    human_bytes(stats.bytes),
                    stats.table.as_deref().unwrap_or("?"),
                    count(stats.expired),
                    count(stats.locks),
                    if stats.locks == 1 { "lock" } else { "locks" },
                    stats
                        .disk_bytes
                        .map_or(String::new(), |d| format!("; {} on disk", human_bytes(d))),
                )?;
                for f in &stats.functions {
                    writeln!(
                        stdout,
                        "  {}: {} values ({})",
                        f.name,
                        count(f.values),
                        human_bytes(f.bytes)
                    )?;
                }
            } else if config.tier() == "memcached" {
                // Memcached cannot list a prefix's keys: what it tells is per server, for all
                // of its items.
                let mut stdout = std::io::stdout();
                writeln!(
                    stdout,
                    "{place}: memcached on {} {} (it cannot count one prefix's keys; figures are \
                     for all items of each server)",
                    count(stats.nodes as u64),
                    if stats.nodes == 1 {
                        "server"
                    } else {
                        "servers"
                    },
                )?;
                for s in &stats.servers {
                    writeln!(
                        stdout,
                        "  {}: {} items ({} of {}), {} hits, {} misses, {} evictions, namespace \
                         generation {}",
                        s.url,
                        count(s.items),
                        human_bytes(s.bytes),
                        human_bytes(s.limit_bytes),
                        count(s.hits),
                        count(s.misses),
                        count(s.evictions),
                        s.generation.map_or("?".to_owned(), |g| g.to_string()),
                    )?;
                }
            } else {
                writeln!(
                    std::io::stdout(),
                    "{place}: {} values ({}) on {} {}, {} compute {} held",
                    count(stats.values),
                    human_bytes(stats.bytes),
                    count(stats.nodes as u64),
                    if stats.nodes == 1 { "node" } else { "nodes" },
                    count(stats.locks),
                    if stats.locks == 1 { "lock" } else { "locks" },
                )?;
            }
        }
        RemoteCommand::Clear { yes, func } => {
            let what = match func {
                Some(name) => format!("the values of {name} in {place}"),
                None => format!("every key of {place}"),
            };
            if !yes {
                confirm(&format!("Remove {what}?"))?;
            }
            let spinner = out.spinner(format!("Clearing {place}"));
            let removed = match func {
                Some(name) => memo_cache::remote_clear_function(&config, name),
                None => memo_cache::remote_clear(&config),
            };
            spinner.finish();
            let removed = removed.with_context(|| format!("clearing {place}"))?;
            if config.tier() == "memcached" {
                if out.json {
                    print_json(&json!({ "removed": removed, "namespace_moved": true }))?;
                } else {
                    writeln!(
                        std::io::stdout(),
                        "Moved {place} to a new namespace generation: its values are no longer \
                         reachable, and memcached will evict them"
                    )?;
                }
            } else if out.json {
                print_json(&json!({ "removed": removed }))?;
            } else {
                writeln!(
                    std::io::stdout(),
                    "Removed {} {} from {place}",
                    count(removed),
                    if config.tier() == "PostgreSQL" {
                        "values"
                    } else {
                        "keys"
                    }
                )?;
            }
        }
        RemoteCommand::Prune { older_than } => {
            let spinner = out.spinner(format!("Pruning {place}"));
            let removed = memo_cache::remote_prune(&config, *older_than);
            spinner.finish();
            let removed = removed.with_context(|| format!("pruning {place}"))?;
            if out.json {
                print_json(&json!({
                    "removed": removed,
                    "older_than_secs": older_than.map(|d| d.as_secs()),
                }))?;
            } else {
                writeln!(
                    std::io::stdout(),
                    "Removed {} values from {place}: expired{}",
                    count(removed),
                    older_than.map_or(String::new(), |d| {
                        // humantime writes 90d as "2months 29days 2h 52m 48s".
                        let age = match d.as_secs() {
                            s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
                            _ => humantime::format_duration(d).to_string(),
                        };
                        format!(", or computed more than {age} ago")
                    })
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; without one, refuses.
fn confirm(question: &str) -> anyhow::Result<()> {
    let (stdin, stderr) = (std::io::stdin(), std::io::stderr());
    if let Some(which) = no_terminal(stdin.is_terminal(), stderr.is_terminal()) {
        return Err(Refused(format!(
            "refusing to clear without confirmation: {which}; pass --yes to clear anyway. Nothing was removed"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    stderr.lock().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Refused("not confirmed; nothing was removed".into()).into())
    }
}

/// Which of the streams a question needs is not a terminal, if any.
fn no_terminal(stdin: bool, stderr: bool) -> Option<&'static str> {
    match (stdin, stderr) {
        (false, false) => Some("neither stdin nor stderr is a terminal"),
        (false, true) => Some("stdin is not a terminal (the answer would come from it)"),
        (true, false) => Some("stderr is not a terminal (the question would go there)"),
        (true, true) => None,
    }
}

// ---- verify -----------------------------------------------------------------------------------

fn verify(cache: &Cache, args: &VerifyArgs, out: Output) -> anyhow::Result<ExitCode> {
    let bar = out.spinner(format!("Verifying {}", cache.dir().display()));
    let report = cache.verify(
        &Verify::new()
            .fix(args.fix)
            .file_grace(args.grace.grace)
            .progress(bar.reporter()),
    );
    bar.finish();
    let report = report.with_context(|| format!("verifying {}", cache.dir().display()))?;
    let sound = report.is_sound();
    if out.json {
        let problems: Vec<Value> = report
            .problems
            .iter()
            .map(|p| {
                json!({
                    "kind": p.kind.as_str(),
                    "key": p.key.map(|k| k.to_hex()),
                    "function": p.function,
                    "path": p.path.as_deref(),
                    "detail": p.detail,
                    "fixed": p.fixed,
                })
            })
            .collect();
        print_json(&json!({
            "dir": cache.dir(),
            "entries_checked": report.entries_checked,
            "sound": sound,
            "problems": problems,
        }))?;
    } else {
        let mut stdout = std::io::stdout().lock();
        for p in &report.problems {
            let kind = out.paint(p.kind.as_str(), if p.fixed { "32" } else { "31" });
            let fixed = if p.fixed { " (fixed)" } else { "" };
            writeln!(stdout, "{kind}: {}{fixed}", p.detail)?;
        }
        let found = report.problems.len() as u64;
        let fixed = report.problems.iter().filter(|p| p.fixed).count() as u64;
        let checked = format!(
            "Checked {} {}",
            count(report.entries_checked),
            plural(report.entries_checked, "entry", "entries")
        );
        match (found, sound) {
            (0, _) => writeln!(stdout, "{checked}: the cache is sound.")?,
            (_, true) => writeln!(
                stdout,
                "{checked}: fixed {} {}; the cache is sound.",
                count(fixed),
                plural(fixed, "problem", "problems")
            )?,
            (_, false) if args.fix => writeln!(
                stdout,
                "{checked}: {} of {} {} remain (see above).",
                count(found - fixed),
                count(found),
                plural(found, "problem", "problems")
            )?,
            (_, false) => writeln!(
                stdout,
                "{checked}: {} {}. `memo-cache verify --fix` drops bad entries (they will be recomputed) and removes stray files.",
                count(found),
                plural(found, "problem", "problems")
            )?,
        }
    }
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_clear_names_the_stream_that_is_no_terminal() {
        let which = |stdin, stderr| no_terminal(stdin, stderr).unwrap_or("both are");
        assert!(which(false, true).starts_with("stdin is not a terminal"));
        assert!(which(true, false).starts_with("stderr is not a terminal"));
        assert!(which(false, false).starts_with("neither stdin nor stderr"));
        assert_eq!(which(true, true), "both are");
    }
}
