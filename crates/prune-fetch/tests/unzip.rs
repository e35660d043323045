//! `unpack_zip`: the folder under the prefix lands complete under the final name; unsafe
//! entries (zip-slip, absolute paths, symbolic links), missing files and corrupt data fail
//! with nothing left under the final name and no temporary folder behind.

mod common;

use common::{listing, scratch, zip_of};
use prune_fetch::{FetchError, unpack_zip};
use std::io::Cursor;
use std::path::Path;
use zip::write::SimpleFileOptions;

/// Writes `bytes` as `dir/a.zip` and returns its path.
fn archive(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("a.zip");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn unpacks_the_prefix_folder_into_place() {
    let dir = scratch("unzip-ok");
    let zip = archive(
        &dir,
        &zip_of(&[
            ("SST-2/train.tsv", b"sentence\tlabel\nok \t1\n"),
            ("SST-2/dev.tsv", b"sentence\tlabel\n"),
            ("SST-2/original/notes.txt", b"n"),
            ("__MACOSX/SST-2/._train.tsv", b"junk"),
        ]),
    );
    let dest = dir.join("glue").join("SST-2");
    unpack_zip(&zip, "SST-2", &dest, &["train.tsv", "dev.tsv"]).unwrap();
    assert_eq!(listing(&dest), ["dev.tsv", "original", "train.tsv"]);
    assert_eq!(
        std::fs::read(dest.join("train.tsv")).unwrap(),
        b"sentence\tlabel\nok \t1\n"
    );
    assert_eq!(listing(&dest.join("original")), ["notes.txt"]);
    assert_eq!(listing(&dir.join("glue")), ["SST-2"]);
}

#[test]
fn replaces_an_incomplete_folder() {
    let dir = scratch("unzip-replace");
    let zip = archive(&dir, &zip_of(&[("m/config.json", b"{}")]));
    let dest = dir.join("model");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("stale.bin"), "old").unwrap();
    unpack_zip(&zip, "m", &dest, &["config.json"]).unwrap();
    assert_eq!(listing(&dest), ["config.json"]);
    assert_eq!(listing(&dir), ["a.zip", "model"]);
}

/// Fails unless unpacking `bytes` is refused as unsafe, writing nothing.
fn refused(name: &str, bytes: &[u8], why: &str) {
    let dir = scratch(name);
    let zip = archive(&dir, bytes);
    let dest = dir.join("out").join("T");
    let err = unpack_zip(&zip, "", &dest, &[]).unwrap_err();
    assert!(matches!(err, FetchError::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains(why), "{err}");
    assert_eq!(listing(&dir), ["a.zip"]);
}

#[test]
fn zip_slip_is_refused() {
    let bytes = zip_of(&[("T/ok.txt", b"fine"), ("T/../../evil.txt", b"x")]);
    refused("unzip-slip", &bytes, "..");
}

#[test]
fn absolute_paths_are_refused() {
    refused(
        "unzip-absolute",
        &zip_of(&[("/tmp/evil.txt", b"x")]),
        "absolute",
    );
}

#[test]
fn symbolic_links_are_refused() {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.add_symlink("T/link", "/etc/passwd", SimpleFileOptions::default())
        .unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    refused("unzip-symlink", &bytes, "symbolic link");
}

#[test]
fn a_missing_required_file_fails_and_installs_nothing() {
    let dir = scratch("unzip-missing");
    let zip = archive(&dir, &zip_of(&[("T/train.tsv", b"x")]));
    let dest = dir.join("T");
    let err = unpack_zip(&zip, "T", &dest, &["train.tsv", "dev.tsv"]).unwrap_err();
    assert!(err.to_string().contains("T/dev.tsv"), "{err}");
    assert_eq!(listing(&dir), ["a.zip"]);
}

#[test]
fn corrupt_data_fails_midway_and_installs_nothing() {
    let dir = scratch("unzip-corrupt");
    let mut bytes = zip_of(&[
        ("T/first.tsv", b"intact first file"),
        ("T/second.tsv", b"this one gets corrupted"),
    ]);
    let at = bytes
        .windows(4)
        .position(|w| w == b"gets")
        .expect("stored data is in the archive");
    bytes[at] = b'G';
    let zip = archive(&dir, &bytes);
    let err = unpack_zip(&zip, "T", &dir.join("T"), &[]).unwrap_err();
    assert!(matches!(err, FetchError::Extract { .. }), "{err}");
    assert!(err.to_string().contains("T/second.tsv"), "{err}");
    assert_eq!(listing(&dir), ["a.zip"]);
}

#[test]
fn not_a_zip_is_a_clear_error() {
    let dir = scratch("unzip-garbage");
    let zip = archive(&dir, b"<html>not found</html>");
    let err = unpack_zip(&zip, "", &dir.join("T"), &[]).unwrap_err();
    assert!(matches!(err, FetchError::Zip { .. }), "{err}");
    assert!(err.to_string().contains("a.zip"), "{err}");
    assert_eq!(listing(&dir), ["a.zip"]);
}
