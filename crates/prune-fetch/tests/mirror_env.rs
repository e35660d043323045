//! `$PRUNE_GLUE_MIRROR`: used when no mirror is passed, and overridden by one that is. The
//! only test of its binary, because it sets the variable.

mod common;

use common::{Reply, Server, listing, refused_url, scratch, sha256, zip_of};
use prune_fetch::glue::{MIRROR_VAR, Source};
use prune_fetch::{GlueTask, Remote, fetch_glue};

#[test]
fn the_mirror_variable_applies_unless_a_mirror_is_passed() {
    let refused = refused_url();
    let refused_base = refused.trim_end_matches("/file.zip");
    // SAFETY: set before any other thread exists (the server starts below), in the only test
    // of this binary, so nothing reads the environment concurrently.
    unsafe { std::env::set_var(MIRROR_VAR, refused_base) };
    let bytes = zip_of(&[("RTE/train.tsv", b"t"), ("RTE/dev.tsv", b"d")]);
    let sha = sha256(&bytes);
    let task = GlueTask {
        dir: "RTE",
        files: &["train.tsv", "dev.tsv"],
        source: Source::Archive {
            zip: Remote {
                url: "https://glue.invalid/data/RTE.zip",
                size: bytes.len() as u64,
                sha256: &sha,
            },
            folder: "RTE",
        },
    };
    let root = scratch("mirror-env");
    let err = fetch_glue(&[&task], &root, None).unwrap_err();
    assert!(err.is_no_network(), "{err}");
    assert!(err.to_string().contains(refused_base), "{err}");

    let server = Server::start();
    server.route("/RTE.zip", Reply::ok(&bytes));
    fetch_glue(&[&task], &root, Some(&server.base)).unwrap();
    assert_eq!(listing(&root.join("RTE")), ["dev.tsv", "train.tsv"]);
    std::fs::remove_dir_all(root.join("RTE")).unwrap();

    // SAFETY: as above; the server thread never reads the environment.
    unsafe { std::env::set_var(MIRROR_VAR, &server.base) };
    fetch_glue(&[&task], &root, None).unwrap();
    assert_eq!(listing(&root), ["RTE"]);
}
