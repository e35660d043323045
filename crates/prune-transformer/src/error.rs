//! `TransformerError`: everything that can go wrong in this crate, with the path, key or tensor involved.

use prune_tensor::{Shape, TensorError};
use std::borrow::Cow;
use std::path::PathBuf;

/// `text` read from an input file (a name, a key, a pattern), fit for a one-line error
/// message: control characters (line breaks, tabs, NUL...) escaped, everything else as is.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Errors of configuration, checkpoint I/O, tokenization and the model's forward/backward.
#[derive(Debug, thiserror::Error)]
pub enum TransformerError {
    /// A tensor op failed (shapes, indices, arguments).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Reading or writing a file failed. (The message includes the underlying error's, so
    /// that error is not also given as the source: chains would print it twice.)
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: invalid JSON: {cause}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: serde_json::Error,
    },
    /// A safetensors file is truncated or corrupt, or could not be serialised.
    #[error("{path}: not a valid safetensors file: {why}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A checkpoint does not fit the configuration (too few values, a tensor stored under
    /// two names) or holds NaN or infinity, or such a model was about to be saved.
    #[error("{path}: {why}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The tokenizer could not be loaded or failed to encode.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The `tokenizer.json` file.
        path: PathBuf,
        /// What the tokenizers library said.
        message: String,
    },
    /// A configuration key is missing, has the wrong type, or is inconsistent with others.
    #[error("config key `{key}`: {why}")]
    Config {
        /// The offending key of `config.json`.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A tensor the configuration requires is absent from the checkpoint.
    #[error("{path}: missing tensor `{name}` (expected shape {expected})")]
    MissingTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The Hugging Face name of the tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Shape,
    },
    /// A tensor's shape does not match the configuration.
    #[error("tensor `{name}`: expected shape {expected}, found {found}")]
    TensorShape {
        /// The Hugging Face name of the tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Shape,
        /// The shape found.
        found: Shape,
    },
    /// A tensor is stored in a data type that cannot be read as floats.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    Dtype {
        /// The checkpoint file.
        path: PathBuf,
        /// The Hugging Face name of the tensor.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A model input (token ids, masks, labels, upstream gradients) is malformed.
    #[error("invalid input: {0}")]
    Input(String),
    /// A file the caller needs (checkpoint, fixture) is not on disk.
    #[error("{what} not found at {path}: {hint}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// prune's cache folder cannot be placed (no `PRUNE_CACHE_DIR`, `XDG_CACHE_HOME` or `HOME`).
    #[error(transparent)]
    Cache(prune_fetch::FetchError),
    /// The traced model's dependency analysis failed.
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, TransformerError>;

impl TransformerError {
    /// A [`TransformerError::Config`] for `key`.
    pub(crate) fn config(key: impl Into<String>, why: impl Into<String>) -> Self {
        TransformerError::Config {
            key: key.into(),
            why: why.into(),
        }
    }

    /// An [`TransformerError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        TransformerError::Io {
            path: path.into(),
            cause,
        }
    }

    /// An [`TransformerError::Checkpoint`] for `path`.
    pub(crate) fn checkpoint(path: &std::path::Path, why: impl Into<String>) -> Self {
        TransformerError::Checkpoint {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}
