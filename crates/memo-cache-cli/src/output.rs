//! How results reach the terminal: aligned tables, colour, JSON and progress spinners.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use comfy_table::{Attribute, Cell, CellAlignment, Color, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ColorChoice;

/// The version of every JSON document the commands print, as its `"format"` field. Raised when
/// a field changes meaning or goes; new fields may come without it.
pub const JSON_FORMAT: u32 = 1;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON on stdout instead of text.
    pub json: bool,
    /// Colour on stdout.
    pub color: bool,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Notes on stderr (not with `-q`).
    pub notes: bool,
}

impl Output {
    /// Decides from the flags and the environment: colour only on a terminal and never when
    /// `NO_COLOR` is set (<https://no-color.org>), unless `--color always`; `CLICOLOR_FORCE`
    /// turns it on off a terminal. No progress bar with `--json`, with `-q`, or when stderr is
    /// not a terminal.
    pub fn new(json: bool, choice: ColorChoice, verbosity: i8) -> Output {
        Output {
            json,
            color: !json && wants_color(choice, std::io::stdout().is_terminal()),
            progress: !json && verbosity >= 0 && std::io::stderr().is_terminal(),
            notes: verbosity >= 0,
        }
    }

    /// Prints `memo-cache: note: TEXT` on stderr, unless `-q`.
    pub fn note(&self, text: impl std::fmt::Display) {
        if self.notes {
            let _ = writeln!(LogWriter, "memo-cache: {text}");
        }
    }

    /// A table with the given headers; columns listed in `right` are right-aligned.
    pub fn table(&self, headers: &[&str], right: &[usize]) -> Table {
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        if self.color {
            table.enforce_styling();
        } else {
            table.force_no_tty();
        }
        table.set_header(headers.iter().map(|h| {
            let cell = Cell::new(h);
            if self.color {
                cell.add_attribute(Attribute::Bold)
            } else {
                cell
            }
        }));
        for (i, column) in table.column_iter_mut().enumerate() {
            column.set_padding((0, 2));
            if right.contains(&i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        table
    }

    /// A cell drawn in a warning colour (when colour is on).
    pub fn warn_cell(&self, text: impl ToString) -> Cell {
        let cell = Cell::new(text);
        if self.color {
            cell.fg(Color::Yellow)
        } else {
            cell
        }
    }

    /// Text in a colour, as a plain string.
    pub fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A spinner with `message` on stderr while a long operation runs; hidden off a terminal.
    /// [`Bar::update`] turns it into a bar of items done of total.
    pub fn spinner(&self, message: impl Into<String>) -> Bar {
        if !self.progress {
            return Bar(ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::hidden(),
            ));
        }
        let bar = ProgressBar::new_spinner().with_message(message.into());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
        Bar(bar)
    }
}

/// The progress bar on screen, if any: log lines are written above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A spinner or progress bar on stderr (hidden off a terminal); cleared when dropped.
#[derive(Debug, Clone)]
pub struct Bar(ProgressBar);

impl Bar {
    /// Shows `progress`: its step, and items done of total with thousands separators, as the
    /// counts in text output are. The end of each step is drawn whatever the refresh rate, so
    /// that what was done stays readable until the next step or the result.
    pub fn update(&self, progress: memo_cache::Progress) {
        let bar = &self.0;
        if bar.is_hidden() {
            return;
        }
        if bar.length().is_none() {
            // The spinner's message named the command and directory; the bar, the step.
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {human_pos}/{human_len} ({percent}%) [{bar:30}] {elapsed}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
        }
        if bar.message() != progress.step.as_str() {
            bar.set_message(progress.step.as_str());
        }
        bar.update(|state| {
            state.set_len(progress.total);
            state.set_pos(progress.done);
        });
        if progress.done >= progress.total {
            bar.force_draw();
        }
    }

    /// The function a library operation reports its progress to.
    pub fn reporter(&self) -> impl Fn(memo_cache::Progress) + Send + Sync + 'static {
        let bar = self.clone();
        move |progress| bar.update(progress)
    }

    /// Clears the bar from the screen.
    pub fn finish(self) {
        self.0.finish_and_clear();
        let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        active.take();
    }
}

/// Writes to stderr above the progress bar on screen, if any, so that warnings and notes do not
/// tear it; what `tracing` writes goes through it.
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match active {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Whether to colour a stream that is (or is not) a terminal.
pub fn wants_color(choice: ColorChoice, terminal: bool) -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !set("NO_COLOR") && (set("CLICOLOR_FORCE") || terminal),
    }
}

/// Prints a table without trailing spaces on its lines.
pub fn print_table(table: &Table) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Prints a JSON document on stdout: `value`'s fields after `"format": JSON_FORMAT`. `value`
/// must serialize as an object.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print_raw_json(&Versioned {
        format: JSON_FORMAT,
        rest: value,
    })
}

#[derive(serde::Serialize)]
struct Versioned<'a, T> {
    format: u32,
    #[serde(flatten)]
    rest: &'a T,
}

/// Prints `value` as pretty JSON on stdout, as it is.
pub fn print_raw_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    // Buffered: stdout alone writes each line as it ends, one system call per element of a
    // large value (`show --value` of 80 MB took 4.4 s to /dev/null).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
