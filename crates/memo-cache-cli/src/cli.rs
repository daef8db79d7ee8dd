//! The command line: one clap-derive enum whose doc comments are the help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::values::{parse_age, parse_count, parse_size};

/// See what a memo-cache directory holds, and evict, verify or clear it.
///
/// The cache directory is --dir, else $MEMO_CACHE_DIR, else the platform cache directory
/// (~/.cache/memo-cache on Linux). Commands that only look (dir, ls, stats, show, verify without
/// --fix) never create or change anything. No command creates a cache or migrates an index of an
/// older schema (the programs using the cache do).
///
/// Exit status: 0 success; 1 failure (not a cache, I/O error, or verify found problems that
/// remain, or no Redis tier configured for remote); 2 refused, having changed nothing: a bad
/// option or value (a key that is not hex, a Redis URL), or a clear without --yes off a terminal
/// or not answered yes.
#[derive(Debug, Parser)]
#[command(name = "memo-cache", version, max_term_width = 100)]
pub struct Cli {
    /// The cache directory [default: $MEMO_CACHE_DIR, else the platform cache directory]
    // Not `env = ..`: memo_cache::default_dir() reads MEMO_CACHE_DIR as the library does, an
    // empty value as unset (clap refused it as a missing value).
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Print JSON on stdout, and nothing else there (errors still go to stderr)
    #[arg(long, global = true)]
    pub json: bool,

    /// When to use colour [default: auto: on a terminal, unless NO_COLOR is set]
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value = "auto",
        hide_default_value = true
    )]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the cache directory in use
    Dir,

    /// List functions (or, with --entries, entries) with their sizes and last use
    #[command(alias = "list")]
    Ls(LsArgs),

    /// Show totals: entries, functions, stored bytes, disk use, stale and expired entries
    Stats,

    /// Show one entry's metadata, or with --value its stored value as JSON
    Show(ShowArgs),

    /// Remove entries by size, count, age, expiry, staleness or function
    ///
    /// Criteria add up: an entry goes if any criterion selects it, then the least recently used
    /// entries go until --max-size and --max-entries hold. Stale entries (from an older version
    /// of their function) go first, then expired ones, then least recently used.
    ///
    /// With no criterion, prune removes expired and stale entries only. Every prune also sweeps
    /// orphan blob files, temp files of unfinished writes and per-key lock files an older
    /// memo-cache left behind, older than --grace. Safe while other processes use the cache.
    Prune(PruneArgs),

    /// Remove every entry (or every entry of one function)
    ///
    /// Also sweeps stray files, as prune does. Asks for confirmation on a terminal, even when no
    /// entry would go. Without a terminal (stdin and stderr), refuses (exit 2) unless --yes is
    /// given. Safe while other processes use the cache.
    Clear(ClearArgs),

    /// Check every entry's bytes against its hash and look for stray files
    ///
    /// Exit status 0 when the cache is sound, 1 while problems remain (each is listed). With
    /// --fix, bad entries are dropped (they will be recomputed) and stray files removed.
    Verify(VerifyArgs),

    /// See or clear this cache's keys in the shared Redis tier
    ///
    /// The tier is --url, else $MEMO_CACHE_REDIS_URL (several comma-separated URLs for a Redis
    /// Cluster); only keys under --prefix (else $MEMO_CACHE_REDIS_PREFIX, else `memo-cache:`)
    /// are touched, found with SCAN on every master, never KEYS or FLUSHALL.
    Remote(RemoteArgs),

    /// Print a shell completion script, e.g. `memo-cache completions bash > ~/.local/share/bash-completion/completions/memo-cache`
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// Options of `remote`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The Redis tier: redis://host:port, rediss://host:port, or a comma-separated list of cluster nodes
    #[arg(
        long,
        value_name = "URL",
        env = memo_cache::REDIS_URL_ENV,
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// The key prefix (namespace) of this cache in Redis [default: memo-cache:]
    #[arg(long, value_name = "PREFIX", env = memo_cache::REDIS_PREFIX_ENV)]
    pub prefix: Option<String>,

    #[command(subcommand)]
    pub command: RemoteCommand,
}

/// What to do with the Redis tier.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Count values, their bytes and held compute locks under the prefix
    Stats,
    /// Remove every key under the prefix (asks on a terminal; --yes without one)
    Clear {
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,
    },
}

/// Options of `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// One row per entry instead of one per function
    #[arg(long, short)]
    pub entries: bool,

    /// Only this function (its full name, as `ls` shows it)
    #[arg(long, value_name = "NAME")]
    pub func: Option<String>,

    /// Order of rows [default: by function name]
    #[arg(long, value_name = "ORDER")]
    pub sort: Option<SortKey>,
}

/// What `ls` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// By function name (then key)
    Name,
    /// Largest first
    Size,
    /// Most recently used first
    LastUsed,
    /// Most entries first (with --entries: most hits first)
    Entries,
}

/// Options of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The entry's key, or a unique prefix of its hex
    pub key: String,

    /// Print the stored value decoded to JSON (alone, or as "value" with --json)
    #[arg(long)]
    pub value: bool,
}

/// Options of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove least recently used entries until at most SIZE stored bytes remain (500MB, 2GiB, 1.5G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Remove least recently used entries until at most N remain
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_entries: Option<u64>,

    /// Remove entries not used for longer than AGE (7d, 12h, 30min, 2w)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,

    /// Remove expired entries
    #[arg(long)]
    pub expired: bool,

    /// Remove entries of function versions that are no longer current
    #[arg(long)]
    pub stale: bool,

    /// Only consider entries of this function; size and count limits then apply to it alone
    #[arg(long, value_name = "NAME")]
    pub func: Option<String>,

    /// Report what would be removed; remove nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    #[command(flatten)]
    pub grace: Grace,
}

/// Options of `clear`.
#[derive(Debug, Args)]
pub struct ClearArgs {
    /// Only entries of this function (all its versions)
    #[arg(long, value_name = "NAME")]
    pub func: Option<String>,

    /// Do not ask for confirmation
    #[arg(long, short)]
    pub yes: bool,
}

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Drop entries whose bytes are bad and remove stray files
    #[arg(long)]
    pub fix: bool,

    #[command(flatten)]
    pub grace: Grace,
}

/// How old a stray file must be before it counts.
#[derive(Debug, Args)]
pub struct Grace {
    /// Leave files in tmp/, locks/ and blobs/ younger than AGE alone: they may belong to a write in progress
    #[arg(long, value_name = "AGE", value_parser = parse_age, default_value = "60s")]
    pub grace: Duration,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it)
    Auto,
    /// Always
    Always,
    /// Never
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
