//! Where the default checkpoint and the reference fixtures live on disk, shared by every
//! crate's tests and tools.
//!
//! - cache dir: [`cache_dir`], defined once in `prune-fetch` (`$PRUNE_CACHE_DIR`, else
//!   `$XDG_CACHE_HOME/prune`, else `$HOME/.cache/prune`, else an error);
//! - default checkpoint: `$PRUNE_MODEL_DIR`, else `<cache>/models/all-MiniLM-L6-v2/`
//!   (written by `cargo xtask fetch`);
//! - fixtures: `$PRUNE_FIXTURES`, else `<workspace root>/../shared/fixtures`.

use crate::error::{Result, TransformerError};
use crate::weights::WEIGHT_FILES;
use std::path::{Path, PathBuf};

/// Name of the default checkpoint's directory under `<cache>/models/`.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// What to do when a checkpoint or fixture is missing.
pub const FETCH_HINT: &str =
    "run `cargo xtask fetch` to download it (or point PRUNE_MODEL_DIR / PRUNE_FIXTURES at a copy)";

fn env_dir(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

pub use prune_fetch::cache_dir;

/// The default checkpoint directory: `$PRUNE_MODEL_DIR`, else
/// `<cache>/models/all-MiniLM-L6-v2` (an error when the cache cannot be placed).
pub fn model_dir() -> Result<PathBuf> {
    match env_dir("PRUNE_MODEL_DIR") {
        Some(dir) => Ok(dir),
        None => Ok(cache_dir()
            .map_err(TransformerError::Cache)?
            .join("models")
            .join(DEFAULT_MODEL)),
    }
}

/// The workspace root (two levels above this crate's manifest, fixed at compile time).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The fixtures directory: `$PRUNE_FIXTURES`, else `<workspace root>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    env_dir("PRUNE_FIXTURES")
        .unwrap_or_else(|| workspace_root().join("..").join("shared").join("fixtures"))
}

/// The default checkpoint directory, or an error saying how to fetch it when its
/// `config.json`, its weights or `tokenizer.json` is missing.
pub fn require_model_dir() -> Result<PathBuf> {
    require_checkpoint(model_dir()?)
}

/// What a checkpoint folder a user names must hold.
const GIVEN_HINT: &str = "a checkpoint folder holds config.json, model.safetensors or \
     pytorch_model.bin, and tokenizer.json, as transformers' save_pretrained writes them \
     for the model and for its tokenizer";

/// `dir`, or an error saying how to fetch the checkpoint when its `config.json`, its
/// weights (`model.safetensors` or `pytorch_model.bin`) or `tokenizer.json` is missing.
pub fn require_checkpoint(dir: PathBuf) -> Result<PathBuf> {
    require_files(dir, true, FETCH_HINT)
}

/// `dir`, a checkpoint folder the user names, or an error naming the missing file and what
/// such a folder holds: `config.json`, the weights, and `tokenizer.json` when
/// `with_tokenizer` (commands that read no text need none).
pub fn require_given_checkpoint(dir: PathBuf, with_tokenizer: bool) -> Result<PathBuf> {
    require_files(dir, with_tokenizer, GIVEN_HINT)
}

/// `dir` when it holds `config.json`, the weights and (`with_tokenizer`) `tokenizer.json`;
/// else an error naming the first missing file, with `hint`.
fn require_files(dir: PathBuf, with_tokenizer: bool, hint: &str) -> Result<PathBuf> {
    let weights = WEIGHT_FILES.iter().find(|f| dir.join(f).is_file());
    let weights = weights.unwrap_or(&WEIGHT_FILES[0]);
    let tokenizer = with_tokenizer.then_some("tokenizer.json");
    for file in ["config.json", weights].into_iter().chain(tokenizer) {
        let p = dir.join(file);
        if !p.is_file() {
            return Err(TransformerError::NotFound {
                what: format!("checkpoint file {file}"),
                path: p,
                hint: hint.into(),
            });
        }
    }
    Ok(dir)
}

/// `<fixtures>/<name>`, or an error saying how to fetch it when missing.
pub fn require_fixture(name: &str) -> Result<PathBuf> {
    let p = fixtures_dir().join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(TransformerError::NotFound {
            what: format!("fixture {name}"),
            path: p,
            hint: FETCH_HINT.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_checkpoint_says_how_to_fetch_it() {
        let dir = std::env::temp_dir().join("prune-no-such-model-dir");
        let msg = require_checkpoint(dir).unwrap_err().to_string();
        assert!(
            msg.contains("config.json") && msg.contains("cargo xtask fetch"),
            "{msg}"
        );
        let dir = std::env::temp_dir().join("prune-no-such-model-dir");
        let msg = require_given_checkpoint(dir, false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("config.json") && msg.contains("save_pretrained"),
            "{msg}"
        );
        assert!(
            fixtures_dir().ends_with("shared/fixtures")
                || std::env::var_os("PRUNE_FIXTURES").is_some()
        );
    }
}
