//! Per-key compute locks: when several processes miss on one key, one computes.
//!
//! # Locking
//!
//! A lock is an exclusive `flock` (`std::fs::File::lock`) on `locks/<key>.lock`. The kernel
//! releases it when its holder exits, however it exits, so a waiter whose holder was killed takes
//! over. The holder removes the file before unlocking, so lock files do not pile up; that opens a
//! race (a waiter can lock a file that was just unlinked), closed by checking after locking that
//! the path still names the file we hold, and starting again if not.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// A held compute lock; released (and its file removed) on drop.
#[derive(Debug)]
pub(crate) struct ComputeLock {
    file: File,
    path: PathBuf,
}

impl ComputeLock {
    /// Takes the lock without waiting; `Ok(None)` when another process or thread holds it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<ComputeLock>> {
        loop {
            let file = open(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(e),
            }
            if still_linked(&file, path)? {
                return Ok(Some(ComputeLock {
                    file,
                    path: path.to_path_buf(),
                }));
            }
        }
    }

    /// Waits for the lock.
    pub fn acquire(path: &Path) -> io::Result<ComputeLock> {
        loop {
            let file = open(path)?;
            file.lock()?;
            if still_linked(&file, path)? {
                return Ok(ComputeLock {
                    file,
                    path: path.to_path_buf(),
                });
            }
        }
    }
}

impl Drop for ComputeLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock; see the module docs.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent()
        && fs::symlink_metadata(parent).is_ok_and(|m| !m.is_dir())
    {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            parent.display()
        )));
    }
    // Not through a symlink planted in place of a lock file: O_CREAT would create its target.
    let open = || {
        no_follow(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            open()
        }
        other => other,
    }
}

fn no_follow(options: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    options
}

#[cfg(unix)]
fn still_linked(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata()?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn still_linked(_file: &File, path: &Path) -> io::Result<bool> {
    Ok(path.exists())
}

impl ComputeLock {
    /// True when nobody holds the lock at `path` (checked by taking it without unlinking).
    pub fn try_acquire_probe(path: &Path) -> io::Result<bool> {
        let file = match no_follow(fs::OpenOptions::new().read(true).write(true)).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let first = ComputeLock::try_acquire(&path).unwrap().expect("free lock");
        assert!(ComputeLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        assert!(!path.exists(), "the holder removes its lock file");
        assert!(ComputeLock::try_acquire(&path).unwrap().is_some());
    }
}
