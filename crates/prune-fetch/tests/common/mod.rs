//! Test helpers: a small HTTP server on 127.0.0.1, scratch folders, zip archives built in
//! memory.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use zip::write::SimpleFileOptions;

/// What the server answers for one path.
#[derive(Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The bytes sent as the body.
    pub body: Vec<u8>,
    /// The Content-Length announced; `None`: none, the body ends when the connection closes.
    pub length: Option<usize>,
}

impl Reply {
    /// 200 with `body` and its true length.
    pub fn ok(body: &[u8]) -> Self {
        Reply {
            status: 200,
            body: body.to_vec(),
            length: Some(body.len()),
        }
    }

    /// An empty answer with `status`.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            body: Vec::new(),
            length: Some(0),
        }
    }
}

/// A server on 127.0.0.1 answering GET requests from a table of paths, in a thread that
/// lives as long as the test process.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Requests answered so far.
    hits: Arc<AtomicUsize>,
    /// The table, by path (`/SST-2.zip`).
    routes: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Server {
    /// Starts a server answering 404 to every path until [`Server::route`] adds some.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(Mutex::new(HashMap::new()));
        let (h, r) = (hits.clone(), routes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(stream, &r);
                h.fetch_add(1, Ordering::SeqCst);
            }
        });
        Server { base, hits, routes }
    }

    /// Answers `reply` to `path` (which starts with `/`).
    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Reads one request from `stream` and answers it from `routes`, then closes.
fn answer(mut stream: TcpStream, routes: &Mutex<HashMap<String, Reply>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 2 => continue,
            _ => break,
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Reply::status(404));
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    if let Some(n) = reply.length {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
}

/// A URL on 127.0.0.1 where nothing listens (a port just bound and released).
pub fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/file.zip")
}

/// An empty scratch folder for the test `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("prune-fetch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A zip archive of `(name, content)` files, stored uncompressed.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in files {
        zip.start_file(*name, options).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The sha256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
