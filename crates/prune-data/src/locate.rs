//! Where a GLUE task's files are found: a folder given explicitly (`--data DIR`), else the
//! first of `$GLUE_DIR`, `../shared/data/glue` beside the workspace and `<cache>/glue` that
//! holds the task's train and dev files, else the task is downloaded into `<cache>/glue`.

use crate::error::{DataError, Result};
use crate::task::Task;
use prune_fetch::{FetchError, glue};
use std::path::{Path, PathBuf};

/// The default GLUE directory: `$GLUE_DIR`, else `../shared/data/glue` beside the workspace.
pub fn default_glue_dir() -> PathBuf {
    glue_dir_env().unwrap_or_else(shared_glue_dir)
}

/// The `glue_data/`-style folder holding `task`'s train and dev files.
///
/// With `explicit` (the command line's `--data DIR`): that folder, or an error naming the
/// first missing file (no fallback). Otherwise the first of `$GLUE_DIR`,
/// `../shared/data/glue` beside the workspace and `<cache>/glue` that holds the files; if
/// none does, the task is downloaded into `<cache>/glue` (announced on stderr, from
/// `$PRUNE_GLUE_MIRROR` when set). Without network the error is one line saying to pass
/// `--data` or set `GLUE_DIR` (or `PRUNE_GLUE_MIRROR`).
pub fn glue_dir_for(task: Task, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return match missing_file(dir, task) {
            Some(path) => Err(DataError::MissingGlueFile { task, path }),
            None => Ok(dir.to_path_buf()),
        };
    }
    let cache = glue::cache_root();
    let mut searched: Vec<PathBuf> = glue_dir_env().into_iter().collect();
    searched.push(shared_glue_dir());
    searched.extend(cache.as_ref().ok().cloned());
    if let Some(dir) = first_with(task, &searched) {
        return Ok(dir);
    }
    match cache {
        Ok(root) => download(task, &root, None, &searched),
        Err(e) => Err(unavailable(task, &searched, &e)),
    }
}

/// `$GLUE_DIR`, when set and not empty.
fn glue_dir_env() -> Option<PathBuf> {
    std::env::var_os("GLUE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `../shared/data/glue` beside the workspace.
fn shared_glue_dir() -> PathBuf {
    prune_transformer::paths::workspace_root().join("../shared/data/glue")
}

/// The first of `task`'s train and dev files missing under `dir`, if any.
fn missing_file(dir: &Path, task: Task) -> Option<PathBuf> {
    let task_dir = dir.join(task.dir_name());
    std::iter::once("train.tsv")
        .chain(task.dev_files().iter().copied())
        .map(|file| task_dir.join(file))
        .find(|path| !path.is_file())
}

/// The first of `dirs` that holds `task`'s train and dev files.
fn first_with(task: Task, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .find(|dir| missing_file(dir, task).is_none())
        .cloned()
}

/// Downloads `task` into `root` (from `mirror`, else `$PRUNE_GLUE_MIRROR`, else the official
/// hosts) and returns `root`; `searched` are the folders that did not have it.
fn download(
    task: Task,
    root: &Path,
    mirror: Option<&str>,
    searched: &[PathBuf],
) -> Result<PathBuf> {
    let fetch_error = |cause| DataError::Fetch { task, cause };
    let published = glue::task(task.dir_name()).map_err(fetch_error)?;
    eprintln!(
        "GLUE {task} is not in {}: downloading it into {}",
        list(searched),
        root.display()
    );
    match prune_fetch::fetch_glue(&[published], root, mirror) {
        Ok(_) => Ok(root.to_path_buf()),
        Err(e) if e.is_no_network() => Err(unavailable(task, searched, &e)),
        Err(e) => Err(fetch_error(e)),
    }
}

/// The error for a task found nowhere that cannot be downloaded because of `why`.
fn unavailable(task: Task, searched: &[PathBuf], why: &FetchError) -> DataError {
    DataError::GlueUnavailable {
        task,
        searched: list(searched),
        reason: why.to_string(),
    }
}

/// `dirs`, comma-separated.
fn list(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// An empty scratch folder for the test `name`.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("prune-locate-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes `files` (empty) under `dir/<task dir>/`.
    fn put(dir: &Path, task: Task, files: &[&str]) {
        let task_dir = dir.join(task.dir_name());
        fs::create_dir_all(&task_dir).unwrap();
        for file in files {
            fs::write(task_dir.join(file), "").unwrap();
        }
    }

    #[test]
    fn an_explicit_folder_must_hold_the_files_and_has_no_fallback() {
        let dir = scratch("explicit");
        put(&dir, Task::Mnli, &["train.tsv", "dev_matched.tsv"]);
        let err = glue_dir_for(Task::Mnli, Some(&dir)).unwrap_err();
        let msg = err.to_string();
        let missing = dir.join("MNLI").join("dev_mismatched.tsv");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        let err = glue_dir_for(Task::Sst2, Some(&dir)).unwrap_err();
        assert!(err.to_string().contains("train.tsv"), "{err}");
        put(&dir, Task::Mnli, &["dev_mismatched.tsv"]);
        assert_eq!(glue_dir_for(Task::Mnli, Some(&dir)).unwrap(), dir);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_folder_with_train_and_dev_wins() {
        let root = scratch("order");
        let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|d| root.join(d)).collect();
        put(&dirs[0], Task::Rte, &["train.tsv"]);
        put(&dirs[1], Task::Rte, &["train.tsv", "dev.tsv"]);
        put(&dirs[2], Task::Rte, &["train.tsv", "dev.tsv"]);
        assert_eq!(first_with(Task::Rte, &dirs), Some(dirs[1].clone()));
        assert_eq!(first_with(Task::Cola, &dirs), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn without_network_one_line_says_how_to_provide_the_data() {
        let root = scratch("offline");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mirror = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let searched = [root.join("elsewhere")];
        let err = download(Task::Wnli, &root.join("glue"), Some(&mirror), &searched).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::GlueUnavailable { .. }), "{msg}");
        for needle in ["--data", "GLUE_DIR", glue::MIRROR_VAR, "elsewhere", "WNLI"] {
            assert!(msg.contains(needle), "{needle} missing from: {msg}");
        }
        assert!(!msg.contains('\n'), "{msg}");
        assert!(!root.join("glue").join("WNLI").exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
