//! `PrunerError`: what went wrong while reading a `config_list`, selecting parameters,
//! building masks or running a pruner, with the entry, key, parameter or file involved.

use std::fmt;
use std::path::PathBuf;

/// A did-you-mean suggestion appended to an error message (empty when there is none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suggestion(pub Option<String>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(s) => write!(f, " (did you mean `{s}`?)"),
            None => Ok(()),
        }
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum PrunerError {
    /// A `config_list` file or string is not valid JSON or TOML, or not a list of tables.
    #[error("config_list ({format}): {why}")]
    Parse {
        /// `JSON` or `TOML`.
        format: &'static str,
        /// What the parser said.
        why: String,
    },
    /// An entry has a key this crate does not know.
    #[error("config_list entry {entry}: unknown key `{key}`{suggestion}")]
    UnknownKey {
        /// Index of the entry in the list.
        entry: usize,
        /// The key found.
        key: String,
        /// The closest known key, if any is close.
        suggestion: Suggestion,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("config_list entry {entry}, key `{key}`: {why}")]
    InvalidValue {
        /// Index of the entry in the list.
        entry: usize,
        /// The key.
        key: String,
        /// What is wrong with the value.
        why: String,
    },
    /// A name or pattern of an entry selects no parameter-owning module of the model.
    #[error(
        "config_list entry {entry}: {key} `{pattern}` matches no module of the model{suggestion}"
    )]
    NoMatch {
        /// Index of the entry in the list.
        entry: usize,
        /// The key (`op_names`, `op_names_re`, ...).
        key: &'static str,
        /// The name or pattern.
        pattern: String,
        /// The closest module name, if any is close.
        suggestion: Suggestion,
    },
    /// Two entries (or an entry and a group) disagree about a parameter.
    #[error("config_list entries {first} and {second} conflict on `{name}`: {why}")]
    Conflict {
        /// Index of the earlier entry.
        first: usize,
        /// Index of the later entry.
        second: usize,
        /// The parameter or group both concern.
        name: String,
        /// What the conflict is.
        why: String,
    },
    /// A granularity does not fit a parameter's shape.
    #[error("parameter `{name}` of shape {shape:?}: {why}")]
    Granularity {
        /// The parameter.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What does not fit.
        why: String,
    },
    /// A dependency or global group cannot be allocated as one.
    #[error("group `{group}`: {why}")]
    Group {
        /// The group id.
        group: String,
        /// What is wrong.
        why: String,
    },
    /// A mask does not fit its parameter, or a mask file is malformed.
    #[error("mask of `{name}`: {why}")]
    Mask {
        /// The parameter.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A parameter or gradient the pruner needs is not in the model.
    #[error("the model has no parameter `{0}`")]
    MissingParameter(String),
    /// Pruner settings that cannot work (schedule steps, learning rates).
    #[error("invalid pruner settings: {0}")]
    Settings(String),
    /// Reading or writing a file failed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A tensor op failed.
    #[error(transparent)]
    Tensor(#[from] prune_tensor::TensorError),
    /// The model refused something (mask shapes, layer counts).
    #[error(transparent)]
    Model(#[from] prune_transformer::TransformerError),
    /// Training failed while the pruner ran inside the trainer.
    #[error(transparent)]
    Train(#[from] prune_train::TrainError),
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, PrunerError>;

impl PrunerError {
    /// An [`PrunerError::InvalidValue`].
    pub(crate) fn value(entry: usize, key: impl Into<String>, why: impl Into<String>) -> Self {
        PrunerError::InvalidValue {
            entry,
            key: key.into(),
            why: why.into(),
        }
    }

    /// A [`PrunerError::File`] naming `path`.
    pub(crate) fn file(path: &std::path::Path, why: impl fmt::Display) -> Self {
        PrunerError::File {
            path: path.to_path_buf(),
            why: why.to_string(),
        }
    }
}

/// Callbacks run inside the trainer, whose error type is `TrainError`: tensor, model and
/// training errors keep their variant; the others become a configuration error carrying
/// this crate's message.
impl From<PrunerError> for prune_train::TrainError {
    fn from(e: PrunerError) -> Self {
        match e {
            PrunerError::Tensor(t) => prune_train::TrainError::Tensor(t),
            PrunerError::Model(m) => prune_train::TrainError::Model(m),
            PrunerError::Train(t) => t,
            other => prune_train::TrainError::Config(format!("pruner: {other}")),
        }
    }
}

/// Levenshtein distance between two strings (by chars).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a
/// plausible typo (at most a third of the word's length, at least 2 edits allowed).
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Suggestion {
    let limit = (word.chars().count() / 3).max(2);
    let best = candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    Suggestion(best.map(|(_, c)| c.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(edit_distance("sparsity", "sparsty"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let keys = ["sparse_ratio", "op_names", "op_types"];
        assert_eq!(did_you_mean("op_name", keys).0.as_deref(), Some("op_names"));
        assert_eq!(did_you_mean("granularity", keys).0, None);
    }
}
