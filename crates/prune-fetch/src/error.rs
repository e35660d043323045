//! `FetchError`: what went wrong placing the cache, downloading, verifying or unpacking, with
//! the URL, file or archive entry involved.

use std::path::PathBuf;

/// Errors of the cache, downloads, verification and unpacking.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// None of `PRUNE_CACHE_DIR`, `XDG_CACHE_HOME` and `HOME` is set.
    #[error("cannot place prune's cache: set PRUNE_CACHE_DIR (or XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    /// The server could not be reached: no network, unknown host, refused connection, timeout.
    #[error("cannot reach {url}: {reason}")]
    NoNetwork {
        /// The URL asked for.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP status {status}")]
    Http {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request or the transfer of the body failed once connected.
    #[error("GET {url}: {reason}")]
    Transfer {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The body does not have the expected length.
    #[error("GET {url}: expected {expected} bytes, got {found}")]
    Size {
        /// The URL asked for.
        url: String,
        /// The published size.
        expected: u64,
        /// What arrived (a count, or "more than N").
        found: String,
    },
    /// The body does not have the expected sha256.
    #[error("GET {url}: sha256 mismatch: expected {expected}, found {found}")]
    Sha256 {
        /// The URL asked for.
        url: String,
        /// The published digest.
        expected: String,
        /// The digest of what arrived.
        found: String,
    },
    /// A file or folder could not be read, written, created or renamed.
    #[error("cannot {action} {path}: {cause}")]
    Io {
        /// What was being done ("create", "write", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// An archive is not a readable zip file.
    #[error("{path}: bad zip archive: {cause}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What the zip reader said.
        cause: zip::result::ZipError,
    },
    /// An entry could not be extracted: corrupt data, or the file could not be written.
    #[error("{archive}: cannot extract {entry:?}: {cause}")]
    Extract {
        /// The archive.
        archive: PathBuf,
        /// The entry's name as stored.
        entry: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// An archive entry would land outside the destination, or is a symbolic link.
    #[error("{archive}: refusing entry {entry:?}: {why}")]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's name as stored.
        entry: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// An archive lacks a file it must provide.
    #[error("{archive}: no {file}")]
    MissingFile {
        /// The archive.
        archive: PathBuf,
        /// The file, relative to the unpacked folder.
        file: String,
    },
    /// A downloaded text file is not in the expected format.
    #[error("{path}:{line}: {why}")]
    BadSource {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A name that is not a GLUE task.
    #[error(
        "unknown GLUE task {0:?}: expected one of CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI"
    )]
    UnknownTask(String),
}

impl FetchError {
    /// Whether the server could not be reached at all, so that a local copy is the way out.
    pub fn is_no_network(&self) -> bool {
        matches!(self, FetchError::NoNetwork { .. })
    }

    /// An [`FetchError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        cause: std::io::Error,
    ) -> Self {
        FetchError::Io {
            action,
            path: path.into(),
            cause,
        }
    }
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, FetchError>;
