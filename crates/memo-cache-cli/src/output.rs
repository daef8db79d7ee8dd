//! How results reach the terminal: aligned tables, colour, JSON and progress spinners.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::{Attribute, Cell, CellAlignment, Color, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ColorChoice;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON on stdout instead of text.
    pub json: bool,
    /// Colour on stdout.
    pub color: bool,
    /// Spinners on stderr.
    pub progress: bool,
}

impl Output {
    /// Decides from the flags and the environment: colour only on a terminal and never when
    /// `NO_COLOR` is set (<https://no-color.org>), unless `--color always`; `CLICOLOR_FORCE`
    /// turns it on off a terminal. No spinner with `--json` or when stderr is not a terminal.
    pub fn new(json: bool, choice: ColorChoice) -> Output {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let color = !json
            && match choice {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    !set("NO_COLOR") && (set("CLICOLOR_FORCE") || std::io::stdout().is_terminal())
                }
            };
        Output {
            json,
            color,
            progress: !json && std::io::stderr().is_terminal(),
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
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        }
        let bar = ProgressBar::new_spinner().with_message(message.into());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
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

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    // Buffered: stdout alone writes each line as it ends, one system call per element of a
    // large value (`show --value` of 80 MB took 4.4 s to /dev/null).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
