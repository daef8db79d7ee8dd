//! The `memo-cache` command: see what a memo-cache directory holds, and prune, verify or clear it.
//!
//! Every command opens the cache without creating it; those that only look open it read-only.
//! Errors are one line on stderr, `memo-cache: <what happened, to what path, what to do>`.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod decode;
mod output;
mod values;

use cli::Cli;

/// A command refused for want of consent (no `--yes` off a terminal, or a question not answered
/// yes), before it changed anything: exit status 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Exit status of a usage error (a bad option or value) or a refused command: nothing changed.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(|cli| cli.refuse_misfits().map(|()| cli)) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    log_to_stderr(&cli);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memo-cache: {}", message(&e));
            if e.is::<Refused>() || is_bad_value(&e) {
                ExitCode::from(USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Shows `tracing` events (the library's warnings among them) on stderr: warnings and errors by
/// default, more with each -v, errors only with -q; `RUST_LOG` directives (tracing's
/// `EnvFilter` syntax) add to that level, or, for a bare level, replace it.
fn log_to_stderr(cli: &Cli) {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let level = match cli.verbosity() {
        ..=-1 => LevelFilter::ERROR,
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let from_env = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = EnvFilter::builder().parse_lossy(format!("{level},{from_env}"));
    let ansi = output::wants_color(
        cli.color,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::LogWriter)
        .with_ansi(ansi)
        .without_time()
        .init();
}

/// `e` and its causes, each said once. `{e:#}` said one up to three times: a library error's
/// message ends with its source's (`cache index PATH: database disk image is malformed`), whose
/// own source is SQLite's wording of the same code. So the chain ends at the library's error,
/// and a cause that already ends the message is not added again.
fn message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        if cause.is::<memo_cache::Error>() {
            break;
        }
    }
    message
}

/// Help and version go to stdout with status 0; a bad value gets one line naming the value and
/// the accepted form; other usage errors keep clap's usage hint.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) if !valid.is_empty() => {
                    eprintln!("memo-cache: {first}; expected one of: {}", valid.join(", "))
                }
                _ => eprintln!("memo-cache: {first}"),
            }
            ExitCode::from(USAGE)
        }
        _ => {
            let _ = e.print();
            ExitCode::from(e.exit_code().clamp(0, 255) as u8)
        }
    }
}

/// A value the library refused by its form, as clap refuses others: a Redis URL (from --url or
/// MEMO_CACHE_REDIS_URL), or a key that is not hexadecimal.
fn is_bad_value(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<memo_cache::Error>(),
            Some(memo_cache::Error::BadRemote { .. } | memo_cache::Error::BadKey(_))
        )
    })
}

/// `memo-cache ls | head` closes the pipe early: that is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|cause| {
        // serde_json keeps the io::Error it met to itself (its `source()` skips it), so ask it.
        cause.downcast_ref::<std::io::Error>().map(|io| io.kind()) == broken
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|json| json.io_error_kind())
                == broken
    })
}
