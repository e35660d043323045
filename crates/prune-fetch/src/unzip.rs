//! Atomic, safe zip unpacking: entries are checked before anything is written, extracted into
//! a temporary folder beside the destination, and the folder is renamed into place only when
//! complete.

use crate::error::{FetchError, Result};
use crate::scratch::Scratch;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use zip::ZipArchive;

/// Unpacks the entries of the zip `archive` that lie under the folder `prefix` (`""`: all of
/// them) into the folder `dest`, with paths relative to `prefix`; other entries are skipped.
/// Fails, writing nothing, when any entry has an absolute path, a `..` component or is a
/// symbolic link, and fails when a file of `required` (relative to `dest`) is not among those
/// unpacked. The files go to a temporary folder beside `dest` that replaces `dest` only once
/// every entry is out, so an interrupted or failed unpack leaves nothing new under `dest`.
pub fn unpack_zip(archive: &Path, prefix: &str, dest: &Path, required: &[&str]) -> Result<()> {
    let zip_error = |cause| FetchError::Zip {
        path: archive.to_path_buf(),
        cause,
    };
    let file = File::open(archive).map_err(|e| FetchError::io("open", archive, e))?;
    let mut zip = ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(zip_error)?;
        check_entry(archive, entry.name(), entry.is_symlink())?;
    }
    let prefix = components(prefix);
    let staging = Scratch::dir_beside(dest, "unpack")?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_error)?;
        let parts = components(entry.name());
        let Some(rel) = parts.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        if rel.is_empty() {
            continue;
        }
        let out: PathBuf = rel
            .iter()
            .fold(staging.path().to_path_buf(), |p, c| p.join(c));
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(|e| FetchError::io("create", &out, e))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| FetchError::io("create", parent, e))?;
        }
        let mut writer = File::create(&out).map_err(|e| FetchError::io("create", &out, e))?;
        io::copy(&mut entry, &mut writer).map_err(|cause| FetchError::Extract {
            archive: archive.to_path_buf(),
            entry: entry.name().to_string(),
            cause,
        })?;
    }
    if let Some(file) = required.iter().find(|f| !staging.path().join(f).is_file()) {
        return Err(FetchError::MissingFile {
            archive: archive.to_path_buf(),
            file: join(&prefix, file),
        });
    }
    staging.finish(dest)
}

/// Fails for an entry that could write outside the destination or is a symbolic link.
fn check_entry(archive: &Path, name: &str, is_symlink: bool) -> Result<()> {
    let refuse = |why| {
        Err(FetchError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: name.to_string(),
            why,
        })
    };
    let bytes = name.as_bytes();
    if name.starts_with(['/', '\\']) || (bytes.len() >= 2 && bytes[1] == b':') {
        return refuse("absolute path");
    }
    if name.split(['/', '\\']).any(|c| c == "..") {
        return refuse("`..` in its path");
    }
    if name.contains('\0') {
        return refuse("NUL in its name");
    }
    if is_symlink {
        return refuse("symbolic link");
    }
    Ok(())
}

/// The non-empty components of an entry name other than `.`.
fn components(name: &str) -> Vec<&str> {
    name.split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// `file` under the `prefix` folder, as an entry name.
fn join(prefix: &[&str], file: &str) -> String {
    prefix
        .iter()
        .chain([&file])
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}
