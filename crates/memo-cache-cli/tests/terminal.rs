//! `clear` on a terminal: its question, and the exit status of each answer. The terminal is a
//! pseudo-terminal whose controlling side the test holds, so the binary really sees a terminal.

// The flag values below are Linux's on these architectures.
#![cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod common;

use std::ffi::{CStr, c_char, c_int};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

unsafe extern "C" {
    fn posix_openpt(flags: c_int) -> c_int;
    fn grantpt(fd: c_int) -> c_int;
    fn unlockpt(fd: c_int) -> c_int;
    fn ptsname(fd: c_int) -> *const c_char;
}

const O_RDWR: c_int = 0o2;
/// Opening the terminal must not make it the test process's controlling terminal.
const O_NOCTTY: c_int = 0o400;

/// A pseudo-terminal: the side the test types into and reads from, and the terminal's path.
struct Pty {
    controller: File,
    terminal: PathBuf,
}

impl Pty {
    fn new() -> Pty {
        // SAFETY: C calls on a descriptor opened here and owned by `controller` at once; the name
        // ptsname returns is copied before any other call could reuse its buffer.
        unsafe {
            let fd = posix_openpt(O_RDWR | O_NOCTTY);
            assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let controller = File::from_raw_fd(fd);
            assert_eq!(grantpt(fd), 0, "grantpt");
            assert_eq!(unlockpt(fd), 0, "unlockpt");
            let name = ptsname(fd);
            assert!(!name.is_null(), "ptsname");
            let terminal = PathBuf::from(CStr::from_ptr(name).to_str().unwrap());
            Pty {
                controller,
                terminal,
            }
        }
    }

    fn open_terminal(&self) -> File {
        File::options()
            .read(true)
            .write(true)
            .custom_flags(O_NOCTTY)
            .open(&self.terminal)
            .unwrap()
    }

    /// What the binary wrote to the terminal (and the echo of what was typed), once every
    /// handle on the terminal is closed.
    fn screen(mut self) -> String {
        let mut screen = Vec::new();
        // Reading past the end reports EIO once the terminal side is closed.
        let _ = self.controller.read_to_end(&mut screen);
        String::from_utf8(screen).unwrap()
    }
}

/// Runs `memo-cache --dir DIR ARGS...` with `answer` typed on a terminal that is its stdin, and
/// its stderr too when `stderr_on_terminal`; returns (status, stdout, stderr off the terminal,
/// the terminal's screen).
fn on_terminal(
    dir: &Path,
    args: &[&str],
    answer: &str,
    stderr_on_terminal: bool,
) -> (i32, String, String, String) {
    let mut pty = Pty::new();
    pty.controller.write_all(answer.as_bytes()).unwrap();
    let stderr = if stderr_on_terminal {
        Stdio::from(pty.open_terminal())
    } else {
        Stdio::piped()
    };
    let output = Command::new(env!("CARGO_BIN_EXE_memo-cache"))
        .env_remove("MEMO_CACHE_DIR")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(pty.open_terminal())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        pty.screen(),
    )
}

fn entries(dir: &Path) -> u64 {
    json(dir, &["stats"])["entries"].as_u64().unwrap()
}

#[test]
fn clear_asks_and_no_exits_2_having_removed_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(demo_cache(dir.path()));
    let before = files(dir.path());
    // The last is Ctrl-D: the end of input.
    for answer in ["n\n", "\n", "maybe\n", "\u{4}"] {
        let (code, out, _, screen) = on_terminal(dir.path(), &["clear"], answer, true);
        assert_eq!(code, 2, "{answer:?}: {screen}");
        assert!(out.is_empty(), "{answer:?}: {out}");
        assert!(
            screen.contains(&format!(
                "Remove all 14 entries (39.2 KiB) and stray files from {}? [y/N] ",
                dir.path().display()
            )),
            "{answer:?}: {screen}"
        );
        assert!(
            screen.contains("memo-cache: not confirmed; nothing was removed"),
            "{answer:?}: {screen}"
        );
        assert_eq!(entries(dir.path()), 14);
        assert_eq!(files(dir.path()), before);
    }
}

#[test]
fn clear_answered_yes_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    drop(demo_cache(dir.path()));
    let (code, out, _, screen) = on_terminal(dir.path(), &["clear"], "y\n", true);
    assert_eq!(code, 0, "{screen}");
    assert!(out.starts_with("Removed 14 entries ("), "{out}");
    assert_eq!(entries(dir.path()), 0);
}

#[test]
fn clear_with_stderr_off_the_terminal_says_so() {
    let dir = tempfile::tempdir().unwrap();
    drop(demo_cache(dir.path()));
    let (code, out, err, _) = on_terminal(dir.path(), &["clear"], "y\n", false);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        err,
        "memo-cache: refusing to clear without confirmation: stderr is not a terminal (the \
         question would go there); pass --yes to clear anyway. Nothing was removed\n"
    );
    assert_eq!(entries(dir.path()), 14);
}

#[test]
fn prune_clear_and_verify_show_entries_done_of_total_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    drop(demo_cache(dir.path()));
    let (code, out, _, screen) = on_terminal(dir.path(), &["verify"], "", true);
    assert_eq!(code, 0, "{screen}");
    assert_eq!(out, "Checked 14 entries: the cache is sound.\n");
    assert!(
        screen.contains("checking entries 14/14 (100%)"),
        "{screen:?}"
    );
    // (The bar's first words, "Verifying <dir>", are drawn only when a redraw tick comes before
    // the first step: not on a small cache, whose first step comes at once.)

    let (code, out, _, screen) =
        on_terminal(dir.path(), &["prune", "--max-entries", "4"], "", true);
    assert_eq!(code, 0, "{screen}");
    assert!(out.starts_with("Removed 10 entries"), "{out}");
    assert!(
        screen.contains("removing entries 10/10 (100%)"),
        "{screen:?}"
    );

    // -q: no bar; off a terminal: none either.
    let (code, _, _, screen) = on_terminal(dir.path(), &["verify", "-q"], "", true);
    assert_eq!(code, 0);
    assert!(!screen.contains("checking entries"), "{screen:?}");
    let (code, _, err, _) = on_terminal(dir.path(), &["clear", "--yes"], "", false);
    assert_eq!((code, err.as_str()), (0, ""));
}
