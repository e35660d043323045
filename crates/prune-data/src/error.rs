//! `DataError`: what went wrong reading a dataset, with file and line.

use crate::task::Task;
use std::path::PathBuf;

/// Errors of dataset loading and batching.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read. (The message includes the underlying error's, so that
    /// error is not also given as the source: chains would print it twice.)
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A file as a whole is unusable (empty, or no examples).
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {why}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The task name is not a GLUE task.
    #[error(
        "unknown task {0:?}: expected one of CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI"
    )]
    UnknownTask(String),
    /// A column named in a user's column spec is missing from the file's header.
    #[error("{path}: no column named {column:?} (columns: {available})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The columns present.
        available: String,
    },
    /// Tokenization failed.
    #[error("tokenizing: {0}")]
    Tokenizer(String),
    /// Arguments that cannot work together (empty dataset, zero batch size...).
    #[error("{0}")]
    Invalid(String),
    /// A GLUE folder given explicitly lacks one of the task's train and dev files.
    #[error("GLUE {task}: {path} does not exist")]
    MissingGlueFile {
        /// The task.
        task: Task,
        /// The missing file.
        path: PathBuf,
    },
    /// A GLUE task is in none of the folders searched and cannot be downloaded.
    #[error(
        "GLUE {task} is not in {searched} and cannot be downloaded ({reason}): pass `--data DIR` \
         or set GLUE_DIR to a folder in the glue_data layout (or set PRUNE_GLUE_MIRROR to a \
         mirror of the GLUE files)"
    )]
    GlueUnavailable {
        /// The task.
        task: Task,
        /// The folders searched, comma-separated.
        searched: String,
        /// Why it cannot be downloaded.
        reason: String,
    },
    /// Downloading a GLUE task failed (bad checksum, HTTP error, disk...).
    #[error("downloading GLUE {task}: {cause}")]
    Fetch {
        /// The task.
        task: Task,
        /// What went wrong.
        cause: prune_fetch::FetchError,
    },
}

/// Result of data operations.
pub type Result<T> = std::result::Result<T, DataError>;
