//! `download` against a local server: a good file lands in place; a wrong sha256, a short or
//! long body and an error status fail and leave nothing behind; a refused connection is the
//! "no network" error.

mod common;

use common::{Reply, Server, listing, refused_url, scratch, sha256};
use prune_fetch::{FetchError, Remote, download, sha256_file};

const BODY: &[u8] = b"a small file served over HTTP\n";

/// Downloads `path` of `server` into `dir/file.txt`, expecting `BODY`'s size and sha256.
fn fetch(server: &Server, path: &str, dir: &std::path::Path) -> Result<(), FetchError> {
    let url = server.url(path);
    let sha = sha256(BODY);
    let remote = Remote {
        url: &url,
        size: BODY.len() as u64,
        sha256: &sha,
    };
    download(&remote, &dir.join("file.txt"))
}

#[test]
fn a_good_file_is_verified_and_renamed_into_place() {
    let server = Server::start();
    server.route("/good.txt", Reply::ok(BODY));
    let dir = scratch("download-good");
    fetch(&server, "/good.txt", &dir).unwrap();
    assert_eq!(std::fs::read(dir.join("file.txt")).unwrap(), BODY);
    assert_eq!(listing(&dir), ["file.txt"]);
    assert_eq!(sha256_file(&dir.join("file.txt")).unwrap(), sha256(BODY));
}

#[test]
fn a_wrong_sha256_fails_with_both_digests_and_leaves_nothing() {
    let server = Server::start();
    let mut other = BODY.to_vec();
    other[0] = b'A';
    server.route("/changed.txt", Reply::ok(&other));
    let dir = scratch("download-sha");
    let err = fetch(&server, "/changed.txt", &dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Sha256 { .. }), "{msg}");
    assert!(
        msg.contains(&sha256(BODY)) && msg.contains(&sha256(&other)),
        "{msg}"
    );
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn a_wrong_sha256_keeps_an_existing_file() {
    let server = Server::start();
    server.route("/changed.txt", Reply::ok(&[b'x'; BODY.len()]));
    let dir = scratch("download-keep");
    std::fs::write(dir.join("file.txt"), "old").unwrap();
    assert!(fetch(&server, "/changed.txt", &dir).is_err());
    assert_eq!(
        std::fs::read_to_string(dir.join("file.txt")).unwrap(),
        "old"
    );
    assert_eq!(listing(&dir), ["file.txt"]);
}

#[test]
fn a_truncated_body_fails_and_leaves_nothing() {
    let server = Server::start();
    let half = &BODY[..BODY.len() / 2];
    let announced = Reply {
        length: Some(BODY.len()),
        ..Reply::ok(half)
    };
    let unannounced = Reply {
        length: None,
        ..Reply::ok(half)
    };
    server.route("/announced.txt", announced);
    server.route("/unannounced.txt", unannounced);
    let dir = scratch("download-short");
    let err = fetch(&server, "/announced.txt", &dir).unwrap_err();
    assert!(
        matches!(err, FetchError::Transfer { .. } | FetchError::Size { .. }),
        "{err}"
    );
    let err = fetch(&server, "/unannounced.txt", &dir).unwrap_err();
    assert!(matches!(err, FetchError::Size { .. }), "{err}");
    assert!(err.to_string().contains(&half.len().to_string()), "{err}");
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn a_longer_body_fails_and_leaves_nothing() {
    let server = Server::start();
    let long = [BODY, b"and more"].concat();
    server.route("/long.txt", Reply::ok(&long));
    server.route(
        "/long-unannounced.txt",
        Reply {
            length: None,
            ..Reply::ok(&long)
        },
    );
    let dir = scratch("download-long");
    let err = fetch(&server, "/long.txt", &dir).unwrap_err();
    assert!(err.to_string().contains("Content-Length"), "{err}");
    let err = fetch(&server, "/long-unannounced.txt", &dir).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn an_error_status_names_the_url() {
    let server = Server::start();
    let dir = scratch("download-404");
    let err = fetch(&server, "/missing.zip", &dir).unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 404, .. }), "{err}");
    assert!(
        err.to_string().contains(&server.url("/missing.zip")),
        "{err}"
    );
    assert!(!err.is_no_network());
    assert!(listing(&dir).is_empty());
}

#[test]
fn a_refused_connection_is_no_network() {
    let url = refused_url();
    let dir = scratch("download-refused");
    let remote = Remote {
        url: &url,
        size: 1,
        sha256: "00",
    };
    let err = download(&remote, &dir.join("file.zip")).unwrap_err();
    assert!(err.is_no_network(), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(listing(&dir).is_empty());
}

#[test]
fn file_names_and_mirrors_come_from_the_url() {
    let remote = Remote {
        url: "https://example.org/glue/data/SST-2.zip?x=1",
        size: 1,
        sha256: "00",
    };
    assert_eq!(remote.file_name(), "SST-2.zip");
    assert_eq!(remote.url_on(None), remote.url);
    assert_eq!(
        remote.url_on(Some("http://mirror/glue/")),
        "http://mirror/glue/SST-2.zip"
    );
}

#[test]
fn sha256_of_a_file_is_the_standard_digest() {
    let dir = scratch("download-digest");
    std::fs::write(dir.join("abc"), "abc").unwrap();
    assert_eq!(
        sha256_file(&dir.join("abc")).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
