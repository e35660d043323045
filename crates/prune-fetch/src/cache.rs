//! The cache folder every prune tool shares (checkpoints, GLUE data, NVRTC).

use crate::error::{FetchError, Result};
use std::ffi::OsString;
use std::path::PathBuf;

/// prune's cache folder: `$PRUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/prune`, else
/// `$HOME/.cache/prune` (empty variables count as unset). With none of the three set it is
/// [`FetchError::NoCacheDir`]: there is no guessing at a relative or temporary folder.
pub fn cache_dir() -> Result<PathBuf> {
    cache_dir_from(|key| std::env::var_os(key))
}

/// [`cache_dir`] with the environment given by `var`.
fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let var = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("PRUNE_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("prune"));
    }
    var("HOME")
        .map(|home| home.join(".cache").join("prune"))
        .ok_or(FetchError::NoCacheDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache folder for an environment of `(name, value)` pairs.
    fn with(vars: &[(&str, &str)]) -> Result<PathBuf> {
        cache_dir_from(|key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn follows_the_documented_order() {
        let all = [
            ("PRUNE_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(with(&all).unwrap(), PathBuf::from("/c"));
        assert_eq!(with(&all[1..]).unwrap(), PathBuf::from("/x/prune"));
        assert_eq!(with(&all[2..]).unwrap(), PathBuf::from("/h/.cache/prune"));
        let empty = [
            ("PRUNE_CACHE_DIR", ""),
            ("XDG_CACHE_HOME", ""),
            ("HOME", "/h"),
        ];
        assert_eq!(with(&empty).unwrap(), PathBuf::from("/h/.cache/prune"));
    }

    #[test]
    fn no_home_is_a_clear_error() {
        let err = with(&[]).unwrap_err();
        assert!(matches!(err, FetchError::NoCacheDir));
        assert!(err.to_string().contains("PRUNE_CACHE_DIR"), "{err}");
    }
}
