//! Temporary files and folders beside their destination, removed unless moved into place:
//! what makes downloads and unpacking atomic (the final name holds a complete result or
//! nothing new).

use crate::error::{FetchError, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the scratch paths of one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A temporary path in the folder of its destination, removed (file or folder, with whatever
/// is in it) when dropped unless [`Scratch::finish`] moved it into place.
pub struct Scratch {
    /// The temporary path: `.<destination name>.<tag>-<pid>-<n>`.
    path: PathBuf,
}

impl Scratch {
    /// A temporary path beside `dest`, nothing created yet (its folder is).
    pub fn beside(dest: &Path, tag: &str) -> Result<Self> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::create_dir_all(parent).map_err(|e| FetchError::io("create", parent, e))?;
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".{name}.{tag}-{}-{n}", std::process::id()));
        let scratch = Scratch { path };
        scratch.remove();
        Ok(scratch)
    }

    /// An empty temporary folder beside `dest`.
    pub fn dir_beside(dest: &Path, tag: &str) -> Result<Self> {
        let scratch = Scratch::beside(dest, tag)?;
        fs::create_dir(&scratch.path).map_err(|e| FetchError::io("create", &scratch.path, e))?;
        Ok(scratch)
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished file or folder to `dest`. An existing folder there is moved aside
    /// first and removed afterwards (put back if the move fails); a file is replaced.
    pub fn finish(self, dest: &Path) -> Result<()> {
        let aside = dest
            .is_dir()
            .then(|| Scratch::beside(dest, "old"))
            .transpose()?;
        if let Some(old) = &aside {
            fs::rename(dest, &old.path).map_err(|e| FetchError::io("move aside", dest, e))?;
        }
        if let Err(e) = fs::rename(&self.path, dest) {
            if let Some(old) = &aside {
                let _ = fs::rename(&old.path, dest);
            }
            return Err(FetchError::io("move into place", dest, e));
        }
        Ok(())
    }

    /// Removes whatever is at the temporary path.
    fn remove(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => drop(fs::remove_dir_all(&self.path)),
            Ok(_) => drop(fs::remove_file(&self.path)),
            Err(_) => {}
        }
    }
}

impl Drop for Scratch {
    /// Removes the temporary file or folder; it is gone already when it was moved into place.
    fn drop(&mut self) {
        self.remove();
    }
}
