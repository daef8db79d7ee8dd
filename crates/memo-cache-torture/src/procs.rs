//! Child processes: the binary re-runs itself in hidden worker modes.

use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A command running this binary with `args`.
pub fn myself(args: &[String]) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(args);
    Ok(command)
}

/// A worker whose stdout and stderr go to files in `logs` (pipes could fill and stall it).
#[derive(Debug)]
pub struct Worker {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Worker {
    /// Starts this binary with `args`, logging to `logs/<name>.{out,err}`.
    pub fn spawn(args: &[String], logs: &Path, name: &str) -> io::Result<Worker> {
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let child = myself(args)?
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .spawn()?;
        Ok(Worker {
            child,
            stdout,
            stderr,
        })
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.child.wait()
    }

    /// What the worker printed on stdout.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The tail of what the worker printed on stderr.
    pub fn errors(&self) -> String {
        let bytes = fs::read(&self.stderr).unwrap_or_default();
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(2000)..]).into_owned()
    }
}

/// "exit 3", "signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status}"),
    }
}

/// Copies a directory tree (files and directories; symlinks as links).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
