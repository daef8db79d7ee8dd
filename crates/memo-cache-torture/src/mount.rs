//! Small tmpfs mounts for the full-disk and read-only suites, unmounted on drop.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;

/// A mounted tmpfs; lazily unmounted when dropped, even on a panic.
#[derive(Debug)]
pub struct Tmpfs {
    target: CString,
    path: PathBuf,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"3m"`) on the existing directory `path`. Fails with
    /// `PermissionDenied` (EPERM) where the process may not mount.
    pub fn mount(path: &Path, size: &str) -> io::Result<Tmpfs> {
        let target = c_path(path)?;
        let data = CString::new(format!("size={size},mode=0755")).expect("no NUL in mount options");
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tmpfs {
            target,
            path: path.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the mount read-only (no file on it may be open for writing).
    pub fn remount_read_only(&self) -> io::Result<()> {
        // SAFETY: the target is a valid NUL-terminated string; null source, type and data are
        // allowed for MS_REMOUNT.
        let rc = unsafe {
            libc::mount(
                ptr::null(),
                self.target.as_ptr(),
                ptr::null(),
                libc::MS_REMOUNT | libc::MS_RDONLY,
                ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: the target is a valid NUL-terminated string.
        unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
    }
}
