//! Verification: is every entry's value present and intact, and is every file accounted for?

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::blobs;
use crate::cache::Cache;
use crate::error::Result;
use crate::evict::{DEFAULT_FILE_GRACE, StrayKind, stray_files};
use crate::index;
use crate::key::{Digest, Key};

/// One thing `verify` found wrong.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The entry concerned, for entry problems.
    pub key: Option<Key>,
    /// The entry's function, for entry problems.
    pub function: Option<String>,
    /// The file concerned, for file problems and blob entries.
    pub path: Option<PathBuf>,
    /// A sentence for people.
    pub detail: String,
    /// True once `verify` with fix has repaired it.
    pub fixed: bool,
    /// The hash of the bad value, so a fix never removes a good value stored since.
    hash: Option<Digest>,
    /// The row of a malformed entry, which has no usable key to address it by.
    rowid: Option<i64>,
}

/// The kinds of problem `verify` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// SQLite's own check of the index failed. Not repaired automatically.
    IndexCorrupt,
    /// A value's bytes do not match the hash stored with them.
    HashMismatch,
    /// A row whose blob file is missing.
    MissingBlob,
    /// A blob path that is not a regular file, or has the wrong length.
    BadBlob,
    /// A blob file no row refers to.
    OrphanFile,
    /// A temp file left by a write that never finished.
    StaleTempFile,
    /// A lock file left by a process that is gone.
    StaleLock,
    /// An index row memo-cache did not write: its key or hash is not a 32-byte digest, or its
    /// size or value has the wrong type. Never served; removed by fix.
    MalformedRow,
}

impl ProblemKind {
    /// A short stable name, used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::IndexCorrupt => "index-corrupt",
            ProblemKind::HashMismatch => "hash-mismatch",
            ProblemKind::MissingBlob => "missing-blob",
            ProblemKind::BadBlob => "bad-blob",
            ProblemKind::OrphanFile => "orphan-file",
            ProblemKind::StaleTempFile => "stale-temp-file",
            ProblemKind::StaleLock => "stale-lock",
            ProblemKind::MalformedRow => "malformed-row",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)?;
        if self.fixed {
            f.write_str(" (fixed)")?;
        }
        Ok(())
    }
}

/// The result of [`Cache::verify`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Entries whose bytes were read and checked.
    pub entries_checked: u64,
    /// Files in `blobs/`, `tmp/` and `locks/` looked at.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong, or everything wrong was fixed.
    pub fn is_sound(&self) -> bool {
        self.problems.iter().all(|p| p.fixed)
    }
}

/// Options for [`Cache::verify`].
#[derive(Debug, Clone)]
pub struct Verify {
    fix: bool,
    file_grace: Duration,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            fix: false,
            file_grace: DEFAULT_FILE_GRACE,
        }
    }
}

impl Verify {
    /// Report only.
    pub fn new() -> Self {
        Verify::default()
    }

    /// Repair what can be repaired: drop entries whose bytes are bad, remove stray files.
    pub fn fix(mut self, fix: bool) -> Self {
        self.fix = fix;
        self
    }

    /// Files younger than this are not reported as stray (they may be writes in progress).
    pub fn file_grace(mut self, grace: Duration) -> Self {
        self.file_grace = grace;
        self
    }
}

impl Cache {
    /// Checks every entry's bytes against its hash and looks for stray files; with
    /// [`Verify::fix`], repairs what it finds.
    ///
    /// ```
    /// use memo_cache::{Cache, Function, Verify};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::open(dir.path()).unwrap();
    /// cache.put(&Function::new("docs::f", "v1", "u8"), &(1,), &7u8).unwrap();
    /// let report = cache.verify(&Verify::new()).unwrap();
    /// assert!(report.is_sound());
    /// assert_eq!(report.entries_checked, 1);
    /// ```
    pub fn verify(&self, options: &Verify) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let check: String = self
            .index()?
            .read(|c| c.query_row("PRAGMA quick_check", [], |r| r.get(0)))?;
        if check != "ok" {
            report.problems.push(Problem {
                kind: ProblemKind::IndexCorrupt,
                key: None,
                function: None,
                path: Some(self.index()?.path().to_path_buf()),
                hash: None,
                rowid: None,
                detail: format!(
                    "SQLite reports the index damaged ({check}); run `memo-cache clear` or delete the directory"
                ),
                fixed: false,
            });
        }
        self.check_entries(&mut report)?;
        for stray in stray_files(self, options.file_grace)? {
            let (kind, what) = match stray.kind {
                StrayKind::Orphan => (ProblemKind::OrphanFile, "blob file that no entry refers to"),
                StrayKind::Temp => (
                    ProblemKind::StaleTempFile,
                    "temp file of an unfinished write",
                ),
                StrayKind::Lock => (ProblemKind::StaleLock, "lock file whose holder is gone"),
                StrayKind::Hint => {
                    if options.fix {
                        let _ = stray.remove();
                    }
                    continue;
                }
            };
            let fixed = options.fix && stray.remove().is_ok();
            report.problems.push(Problem {
                kind,
                key: None,
                function: None,
                detail: format!("{}: {what}", stray.path.display()),
                path: Some(stray.path),
                hash: None,
                rowid: None,
                fixed,
            });
        }
        if options.fix {
            self.fix_entries(&mut report)?;
        }
        Ok(report)
    }

    fn check_entries(&self, report: &mut VerifyReport) -> Result<()> {
        let layout = self.layout().clone();
        let problems = self.index()?.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT e.key, f.name, e.size, e.hash, e.value, e.rowid FROM entries e
                 LEFT JOIN functions f ON f.id = e.function_id",
            )?;
            let mut rows = stmt.query([])?;
            let mut problems = Vec::new();
            let mut checked = 0u64;
            while let Some(row) = rows.next()? {
                checked += 1;
                let function: Option<String> = row.get(1).ok().flatten();
                let inline = match row.get_ref(4)? {
                    rusqlite::types::ValueRef::Null => Some(None),
                    rusqlite::types::ValueRef::Blob(bytes) => Some(Some(bytes.to_vec())),
                    _ => None,
                };
                let (Some(key), Some(hash), Ok(size), Some(inline)) = (
                    index::digest_at(row, 0),
                    index::digest_at(row, 3),
                    row.get::<_, i64>(2),
                    inline,
                ) else {
                    let rowid: i64 = row.get(5)?;
                    let name = function.clone().unwrap_or_else(|| "?".into());
                    problems.push(Problem {
                        kind: ProblemKind::MalformedRow,
                        key: None,
                        detail: format!(
                            "index row {rowid} of {name}: its key, hash, size or value is not of the form memo-cache writes"
                        ),
                        function,
                        path: None,
                        hash: None,
                        rowid: Some(rowid),
                        fixed: false,
                    });
                    continue;
                };
                let size = size.max(0) as u64;
                let (path, outcome) = match inline {
                    Some(bytes) => {
                        let digest = Digest::of(&bytes);
                        (None, Ok((bytes, digest)))
                    }
                    None => {
                        let path = layout.blob_path(&key, &hash);
                        let outcome = blobs::read_hashed(&path, size);
                        (Some(path), outcome)
                    }
                };
                let (kind, detail) = match outcome {
                    Ok((bytes, digest)) if digest == hash && bytes.len() as u64 == size => {
                        continue;
                    }
                    Ok(_) => (
                        ProblemKind::HashMismatch,
                        "stored bytes do not match their hash".to_owned(),
                    ),
                    Err(blobs::ReadFailure::Missing) => {
                        (ProblemKind::MissingBlob, "blob file is missing".to_owned())
                    }
                    Err(other) => (ProblemKind::BadBlob, other.to_string()),
                };
                let name = function.clone().unwrap_or_else(|| "?".into());
                problems.push(Problem {
                    kind,
                    key: Some(key),
                    detail: format!("entry {key} of {name}: {detail}"),
                    function,
                    path,
                    hash: Some(hash),
                    rowid: None,
                    fixed: false,
                });
            }
            Ok((checked, problems))
        })?;
        report.entries_checked = problems.0;
        report.problems.extend(problems.1);
        Ok(())
    }

    fn fix_entries(&self, report: &mut VerifyReport) -> Result<()> {
        for problem in &mut report.problems {
            if let Some(rowid) = problem.rowid {
                self.index()?.write(|tx| index::delete_rowid(tx, rowid))?;
                problem.fixed = true;
                continue;
            }
            let (Some(key), Some(hash)) = (problem.key, problem.hash) else {
                continue;
            };
            let removed = self
                .index()?
                .write(|tx| index::delete_entry_if(tx, &key, &hash))?;
            // The file may be a directory or symlink planted there: `blobs::remove` handles those.
            self.remove_blobs(removed.as_slice());
            problem.fixed = true;
        }
        Ok(())
    }
}
