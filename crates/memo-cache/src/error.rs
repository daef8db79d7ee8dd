//! The library's one error type.
//!
//! Every variant that concerns a file names it, so a message printed to a user says what happened
//! and to which path. Inside `#[disk_cache]` these errors never reach the caller: they are logged
//! and the function runs. The explicit [`Cache`](crate::Cache) API returns them.

use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside memo-cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation on `path` failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "creating cache directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The SQLite index at `path` reported an error.
    #[error("cache index {path}: {source}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },

    /// The index file exists but is not an SQLite database; nothing was changed.
    #[error(
        "{path} is not a memo-cache index (not an SQLite database), so the cache is off; \
         move it aside (the cache then starts empty) or point memo-cache at another \
         directory. Nothing was deleted"
    )]
    NotAnIndex {
        /// The offending file.
        path: PathBuf,
    },

    /// SQLite found the index damaged.
    #[error(
        "cache index {path} is damaged ({source}); `memo-cache verify` says how badly, and \
         moving the index aside starts the cache afresh"
    )]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// The index was written by a newer memo-cache whose schema this version cannot read.
    #[error(
        "cache index {path} has schema version {found}, but this memo-cache understands \
         versions up to {supported}; upgrade memo-cache or use another cache directory"
    )]
    NewerSchema {
        /// The index file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build understands.
        supported: i64,
    },

    /// Another process kept the index locked past the write timeout (for a write) or a moment
    /// (for a read): a stopped or frozen process, or a hand-held `sqlite3` transaction, perhaps
    /// in exclusive locking mode. Nothing was changed.
    #[error(
        "cache index {path}: another process has held it locked for over {waited:?}, so \
         nothing was changed (a stopped process, or a `sqlite3` session inside a transaction?). \
         Find it with `fuser {path}`; for writes, the write timeout can be raised"
    )]
    Busy {
        /// The index file.
        path: PathBuf,
        /// How long this call waited.
        waited: std::time::Duration,
    },

    /// A file or directory memo-cache manages is a symbolic link, which it never follows inside
    /// a cache directory; nothing was read or written through it.
    #[error(
        "{path} is a symbolic link; memo-cache never follows one inside its cache directory. \
         Move it aside (memo-cache then makes its own file there) or use another directory"
    )]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },

    /// Something other than a regular file (a FIFO, a directory, a device) stands where the
    /// index belongs; nothing was read or written.
    #[error(
        "{path} is {found}, not an index file; move it aside (the cache then starts empty) \
         or use another directory"
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What is there, e.g. "a FIFO".
        found: &'static str,
    },

    /// The index or the cache directory cannot be written by this process: another user's, or
    /// a read-only file or mount.
    #[error(
        "cache index {path} cannot be written ({source}): the cache belongs to another user or \
         is read-only. Fix its owner or permissions (`ls -l {path}`), or use a directory of \
         your own (MEMO_CACHE_DIR)"
    )]
    ReadOnly {
        /// The index file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// The cache directory's path names something that is not a directory.
    #[error(
        "{path} is not a directory, so it cannot hold a cache; point memo-cache at a directory \
         (MEMO_CACHE_DIR, `dir = ..`, --dir) or move the file aside"
    )]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },

    /// The index path is longer than SQLite accepts.
    #[error(
        "the cache index path {path} is {len} bytes long, over the {max} bytes SQLite accepts; \
         use a shorter cache directory (MEMO_CACHE_DIR, `dir = ..`, or Cache::open)"
    )]
    PathTooLong {
        /// The index path.
        path: PathBuf,
        /// Its length in bytes (after resolving symbolic links in the directory's path).
        len: usize,
        /// The longest SQLite accepts.
        max: usize,
    },

    /// A directory that was expected to be a cache is not one.
    #[error("{path} is not a memo-cache directory (no index.sqlite3 in it)")]
    NotACache {
        /// The directory.
        path: PathBuf,
    },

    /// The arguments of a call could not be encoded into a key.
    #[error("cannot encode the arguments of {function} into a cache key: {message}")]
    EncodeKey {
        /// The function's stable name.
        function: String,
        /// What serde reported.
        message: String,
    },

    /// A value could not be encoded for storage.
    #[error("cannot encode a value of {function} for storage: {message}")]
    EncodeValue {
        /// The function's stable name.
        function: String,
        /// What the encoder reported.
        message: String,
    },

    /// A stored value passed its hash check but cannot be decoded (a compressed value whose
    /// frame is damaged or too large to expand).
    #[error(
        "the value of cache entry {key} cannot be decoded: {message}; a program that reads it \
         drops it and computes it again"
    )]
    DecodeValue {
        /// The entry's key, in hex.
        key: String,
        /// What went wrong.
        message: String,
    },

    /// No cache entry matches the given key or key prefix.
    #[error("no cache entry matches key {0}")]
    NoSuchKey(String),

    /// A key prefix matches more than one entry.
    #[error("key prefix {prefix} is ambiguous: it matches {count} entries; give more digits")]
    AmbiguousKey {
        /// The prefix given.
        prefix: String,
        /// How many entries start with it (at least 2).
        count: usize,
    },

    /// A key given as text is not hexadecimal.
    #[error("{0:?} is not a cache key: expected hexadecimal digits")]
    BadKey(String),

    /// A shared tier's URL is not usable.
    #[error("bad shared tier URL {url}: {reason}")]
    BadRemote {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The Redis tier at `url` failed (only reported by explicit remote commands; cached calls
    /// go on local-only instead).
    #[cfg(feature = "redis")]
    #[error("Redis tier {url}: {source}")]
    Remote {
        /// The server, password hidden.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },

    /// The PostgreSQL tier at `url` failed (only reported by explicit remote commands; cached
    /// calls go on local-only instead).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL tier {url}: {}", postgres_message(source))]
    Postgres {
        /// The server, password hidden.
        url: String,
        /// What the client reported.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The shared tier cannot do what was asked of it.
    #[error("the {tier} tier does not support {operation}: {reason}")]
    RemoteUnsupported {
        /// The tier's name.
        tier: String,
        /// What was asked.
        operation: String,
        /// Why it cannot, and what to do instead.
        reason: String,
    },

    /// A server of the shared tier at `url` failed or answered nonsense (only reported by
    /// explicit remote commands; cached calls go on local-only instead).
    #[error("shared tier server {url}: {message}")]
    RemoteServer {
        /// The server, password hidden.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// The default cache directory could not be determined.
    #[error(
        "cannot determine a cache directory: set MEMO_CACHE_DIR or pass a directory explicitly"
    )]
    NoDefaultDir,
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let action = if source.kind() == std::io::ErrorKind::PermissionDenied {
            // Say what to do, not only what failed.
            match action {
                "creating cache directory" => {
                    "no permission to create (the cache directory belongs to another user or is \
                     read-only: fix its owner or permissions, or set MEMO_CACHE_DIR to a \
                     directory of your own)"
                }
                _ => action,
            }
        } else {
            action
        };
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// True when the error means the disk or a quota is full.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::FileTooLarge
            ),
            Error::Index { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull)
            ),
            _ => false,
        }
    }
}

/// A PostgreSQL error in one line: the server's SQLSTATE and message when it refused, not only
/// the client's "db error".
#[cfg(feature = "postgres")]
fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
