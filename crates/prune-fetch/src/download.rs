//! Checked downloads: an HTTP(S) GET streamed to a temporary file beside the destination
//! while hashing, kept only when its size and sha256 are the published ones.

use crate::error::{FetchError, Result};
use crate::scratch::Scratch;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// A published file: where it is, and the size and sha256 it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote<'a> {
    /// Its URL.
    pub url: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, in hex.
    pub sha256: &'a str,
}

impl<'a> Remote<'a> {
    /// The file's name: the last segment of its URL.
    pub fn file_name(&self) -> &'a str {
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or(path)
    }

    /// Its URL on `mirror` (`<mirror>/<file name>`), or its own URL without a mirror.
    pub fn url_on(&self, mirror: Option<&str>) -> String {
        match mirror {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), self.file_name()),
            None => self.url.to_string(),
        }
    }
}

/// Downloads `remote` to `dest`: the body goes to a temporary file in `dest`'s folder while it
/// is hashed, and is renamed to `dest` only when its size and sha256 are the expected ones.
/// On any failure the temporary file is removed and `dest` is left as it was. A server that
/// cannot be reached is [`FetchError::NoNetwork`].
pub fn download(remote: &Remote<'_>, dest: &Path) -> Result<()> {
    let url = remote.url;
    let response = agent().get(url).call().map_err(|e| request_error(url, e))?;
    let body = response.into_body();
    if let Some(length) = body.content_length().filter(|&n| n != remote.size) {
        return Err(size_error(remote, format!("{length} (Content-Length)")));
    }
    let part = Scratch::beside(dest, "part")?;
    let mut file =
        File::create(part.path()).map_err(|e| FetchError::io("create", part.path(), e))?;
    let mut reader = body.into_reader().take(remote.size + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FetchError::Transfer {
                    url: url.to_string(),
                    reason: format!("reading the body after {received} bytes: {e}"),
                });
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| FetchError::io("write", part.path(), e))?;
        received += n as u64;
    }
    if received > remote.size {
        return Err(size_error(remote, format!("more than {}", remote.size)));
    }
    if received < remote.size {
        return Err(size_error(remote, received.to_string()));
    }
    check_sha256(url, remote.sha256, &hex(&hasher.finalize()))?;
    file.sync_all()
        .map_err(|e| FetchError::io("write", part.path(), e))?;
    drop(file);
    part.finish(dest)
}

/// The sha256 of the file at `path`, in lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| FetchError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| FetchError::io("read", path, e))?;
    Ok(hex(&hasher.finalize()))
}

/// The HTTP client: connection and read timeouts, so that a dead network fails instead of
/// hanging; no overall limit, so that large archives can take their time.
fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Sorts a failed request into an HTTP status, no network (the name did not resolve, the
/// connection was refused or timed out, the socket failed before a response came), or another
/// failure (TLS, protocol).
fn request_error(url: &str, err: ureq::Error) -> FetchError {
    let url = url.to_string();
    match err {
        ureq::Error::StatusCode(status) => FetchError::Http { url, status },
        ureq::Error::Io(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectProxyFailed(_) => FetchError::NoNetwork {
            url,
            reason: err.to_string(),
        },
        other => FetchError::Transfer {
            url,
            reason: other.to_string(),
        },
    }
}

/// A size mismatch for `remote`: `found` says what arrived or was announced.
fn size_error(remote: &Remote<'_>, found: String) -> FetchError {
    FetchError::Size {
        url: remote.url.to_string(),
        expected: remote.size,
        found,
    }
}

/// Fails unless `found` is the `expected` digest (hex, any case).
fn check_sha256(url: &str, expected: &str, found: &str) -> Result<()> {
    if expected.eq_ignore_ascii_case(found) {
        return Ok(());
    }
    Err(FetchError::Sha256 {
        url: url.to_string(),
        expected: expected.to_ascii_lowercase(),
        found: found.to_string(),
    })
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
