//! The command line: one clap-derive enum whose doc comments are the help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

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
///
/// Warnings (the library's too: entries dropped as bad, a cache that cannot be written) go to
/// stderr; -v shows more (-vv the reason for each removal and lookup), -q fewer. RUST_LOG, in
/// tracing's syntax (RUST_LOG=memo_cache::store=debug), adds to or overrides that level.
#[derive(Debug, Parser)]
#[command(name = "memo-cache", version, max_term_width = 100)]
pub struct Cli {
    /// The cache directory [default: $MEMO_CACHE_DIR, else the platform cache directory]
    // Not `env = ..`: memo_cache::default_dir() reads MEMO_CACHE_DIR as the library does, an
    // empty value as unset (clap refused it as a missing value).
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub dir: Option<PathBuf>,

    /// Print JSON on stdout, and nothing else there (errors still go to stderr)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// When to use colour [default: auto: on a terminal, unless NO_COLOR is set]
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value = "auto",
        hide_default_value = true,
        help_heading = GLOBAL
    )]
    pub color: ColorChoice,

    /// Say more on stderr: -v info, -vv debug (each entry removed, and why), -vvv trace
    #[arg(
        long,
        short,
        global = true,
        action = ArgAction::Count,
        conflicts_with = "quiet",
        help_heading = GLOBAL
    )]
    pub verbose: u8,

    /// Say less on stderr: errors only (no warnings, notes or progress bars)
    #[arg(long, short, global = true, action = ArgAction::Count, help_heading = GLOBAL)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the options every command takes.
pub const GLOBAL: &str = "Global options";

/// The global options that mean nothing to `completions` and `generate-man` (they read no
/// cache): left out of their completions and man pages.
pub const CACHE_OPTIONS: [&str; 2] = ["dir", "json"];

impl Cli {
    /// Verbosity: 0 by default (warnings), above with -v, below with -q.
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(100) as i8 - self.quiet.min(100) as i8
    }

    /// Refuses, as clap refuses conflicting options, what clap's own checks let through: `-q`
    /// with `-v` on either side of the command, and a global option the command cannot honour:
    /// `--json` with `completions`, which prints a shell script (JSON on stdout would be a
    /// promise broken). The other global options mean nothing to it and are ignored, as uv
    /// ignores its cache options in `uv generate-shell-completion`.
    pub fn refuse_misfits(&self) -> Result<(), clap::Error> {
        // `conflicts_with` holds only where both are given at one level (`memo-cache -q -v ls`);
        // clap lets `memo-cache -q ls -v` through, since a global option given after the command
        // belongs to the command's own matches.
        if self.quiet > 0 && self.verbose > 0 {
            let mut command = <Cli as clap::CommandFactory>::command();
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--quiet...' cannot be used with '--verbose...': -q says less, -v \
                 more; give one of them",
            ));
        }
        if self.json && matches!(self.command, Command::Completions { .. }) {
            let mut command = <Cli as clap::CommandFactory>::command();
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--json' cannot be used with 'completions': it prints a shell \
                 script, never JSON; leave out --json",
            ));
        }
        Ok(())
    }

    /// The command line as clap sees it, less the global options that make no sense for
    /// `completions` and `generate-man` there: what completion scripts and man pages are made
    /// from. (Hiding them would not do: the completion generators offer hidden options too.)
    pub fn command_for_docs() -> clap::Command {
        let command = <Cli as clap::CommandFactory>::command();
        let cache_options: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|a| CACHE_OPTIONS.contains(&a.get_id().as_str()))
            .map(|a| a.clone().global(false))
            .collect();
        let mut command = command.mut_args(|a| {
            if CACHE_OPTIONS.contains(&a.get_id().as_str()) {
                a.global(false)
            } else {
                a
            }
        });
        let names: Vec<String> = command
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .filter(|n| !["completions", "generate-man"].contains(&n.as_str()))
            .collect();
        for name in names {
            command = command.mut_subcommand(name, |sub| with_args(sub, &cache_options));
        }
        // Built: the other globals reach every subcommand, and each is named for its man page
        // (`memo-cache-ls`) and synopsis (`memo-cache ls`).
        command.build();
        command
    }
}

/// `command` and its subcommands, each with `args`.
fn with_args(command: clap::Command, args: &[clap::Arg]) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut command = args.iter().fold(command, |c, a| c.arg(a.clone()));
    for name in names {
        command = command.mut_subcommand(name, |sub| with_args(sub, args));
    }
    command
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the cache directory in use
    Dir,

    /// List functions (or, with --entries, entries) with their sizes, compute time saved and last use
    #[command(alias = "list")]
    Ls(LsArgs),

    /// Show totals: entries, functions, stored bytes, disk use, compute time saved, stale and expired entries
    Stats(StatsArgs),

    /// Show one entry's metadata, or with --value its stored value as JSON
    Show(ShowArgs),

    /// Remove entries by size, count, age, expiry, staleness or function
    ///
    /// Criteria add up: an entry goes if any criterion selects it, then entries go in eviction
    /// order until --max-size and --max-entries hold. Stale entries (from an older version of
    /// their function) go first, then expired ones, then by --policy: by default the entries
    /// that save the least compute time per byte (hits x compute time / size, aged by a clock
    /// that rises with each eviction), or with --policy lru the least recently used.
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

    /// See, clear or prune this cache's values in the shared tier (Redis, memcached, PostgreSQL)
    ///
    /// The tier is --url, else $MEMO_CACHE_REMOTE_URL, else $MEMO_CACHE_REDIS_URL; only values
    /// under --prefix (else $MEMO_CACHE_REMOTE_PREFIX, else `memo-cache:`) are touched: on Redis
    /// keys found with SCAN on every master, never KEYS or FLUSHALL; on PostgreSQL the prefix's
    /// own table, never another.
    Remote(RemoteArgs),

    /// Print a shell completion script, e.g. `memo-cache completions bash > ~/.local/share/bash-completion/completions/memo-cache`
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },

    /// Write man pages (memo-cache.1 and one per command) into DIR, made from this help
    #[command(hide = true)]
    GenerateMan {
        /// The directory to write them into (made if missing; memo-cache pages already there are replaced)
        dir: PathBuf,
    },
}

/// Options of `remote`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The shared tier: redis://host:port, rediss://host:port, a comma-separated list of Redis
    /// Cluster nodes, memcache://host:port (comma-separated for several servers), or
    /// postgres://user@host:port/db. Else MEMO_CACHE_REMOTE_URL, else MEMO_CACHE_REDIS_URL
    #[arg(
        long,
        value_name = "URL",
        env = memo_cache::REMOTE_URL_ENV,
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// The key prefix (namespace) of this cache in the tier [default: memo-cache:]. Else
    /// MEMO_CACHE_REMOTE_PREFIX, else MEMO_CACHE_REDIS_PREFIX
    #[arg(long, value_name = "PREFIX", env = memo_cache::REMOTE_PREFIX_ENV)]
    pub prefix: Option<String>,

    #[command(subcommand)]
    pub command: RemoteCommand,
}

/// What to do with the shared tier.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Count values, their bytes and held compute locks under the prefix (PostgreSQL: by
    /// function too)
    Stats,
    /// Remove every value under the prefix (asks on a terminal; --yes without one)
    Clear {
        /// Do not ask for confirmation
        #[arg(long, short)]
        yes: bool,

        /// Only this function's values (its full name, as `ls` shows it); PostgreSQL only,
        /// the other tiers do not record which function a value is of
        #[arg(long, value_name = "NAME")]
        func: Option<String>,
    },
    /// Remove expired values and, with --older-than, those computed longer ago (PostgreSQL
    /// only: Redis and memcached drop expired values themselves)
    Prune {
        /// Also remove values computed more than this long ago, e.g. 90d, 12h
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
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
    /// Most compute time saved first (hits x compute time)
    Saved,
    /// Dearest to compute first
    Cost,
}

/// Options of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The entry's key, or a unique prefix of its hex
    pub key: String,

    /// Print the stored value decoded to JSON (alone, or as "value" with --json)
    #[arg(long, conflicts_with = "args")]
    pub value: bool,

    /// Print the arguments the value was computed from, decoded to JSON (alone, or as "args" with --json)
    #[arg(long)]
    pub args: bool,
}

/// Options of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Also draw histograms of the entries by size and by compute time
    #[arg(long)]
    pub histogram: bool,
}

/// `prune --policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Stale and expired first, then the entries that save the least compute time per byte (GreedyDual-Size-Frequency)
    Cost,
    /// Stale and expired first, then least recently used
    Lru,
}

impl From<PolicyArg> for memo_cache::Policy {
    fn from(policy: PolicyArg) -> Self {
        match policy {
            PolicyArg::Cost => memo_cache::Policy::CostAware,
            PolicyArg::Lru => memo_cache::Policy::Lru,
        }
    }
}

/// Options of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove entries in eviction order until at most SIZE stored bytes remain (500MB, 2GiB, 1.5G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Remove entries in eviction order until at most N remain
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_entries: Option<u64>,

    /// The eviction order for --max-size and --max-entries
    #[arg(long, value_name = "POLICY", default_value = "cost")]
    pub policy: PolicyArg,

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
