//! GLUE: the task table, and `fetch_glue` end to end against a local server standing in as a
//! mirror (download, checksum, unpack or MRPC build, atomic install, nothing done twice).
//! MRPC is built from sources reconstructed from the shared GLUE files and must reproduce
//! them byte for byte.

mod common;

use common::{Reply, Server, listing, scratch, sha256, zip_of};
use prune_fetch::glue::{self, Source, TASKS};
use prune_fetch::{FetchError, GlueTask, Remote, fetch_glue};
use std::path::PathBuf;

#[test]
fn tasks_are_found_by_cli_and_folder_names() {
    assert_eq!(glue::task("sst2").unwrap().dir, "SST-2");
    assert_eq!(glue::task("STS-B").unwrap().dir, "STS-B");
    assert_eq!(glue::task("qnli").unwrap().dir, "QNLI");
    assert!(
        glue::task("mnli")
            .unwrap()
            .files
            .contains(&"dev_mismatched.tsv")
    );
    let err = glue::task("glue").unwrap_err();
    assert!(matches!(err, FetchError::UnknownTask(_)), "{err}");
}

#[test]
fn every_task_has_an_official_https_source_with_a_digest() {
    let dirs: Vec<&str> = TASKS.iter().map(|t| t.dir).collect();
    assert_eq!(
        dirs,
        [
            "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"
        ]
    );
    for task in &TASKS {
        for remote in task.remotes() {
            assert!(remote.url.starts_with("https://dl.fbaipublicfiles.com/"));
            assert_eq!(remote.sha256.len(), 64, "{}", remote.url);
            assert!(remote.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(remote.size > 0);
        }
        if let Source::Archive { zip, folder } = task.source {
            assert_eq!(folder, task.dir);
            let expected = if task.dir == "QNLI" {
                "QNLIv2.zip"
            } else {
                &format!("{}.zip", task.dir)
            };
            assert_eq!(zip.file_name(), expected);
        }
    }
}

/// An SST-2-like task whose archive `bytes` is published (on no real host) with its digest.
fn sst2(sha: &str, size: usize) -> GlueTask<'_> {
    GlueTask {
        dir: "SST-2",
        files: &["train.tsv", "dev.tsv"],
        source: Source::Archive {
            zip: Remote {
                url: "https://glue.invalid/data/SST-2.zip",
                size: size as u64,
                sha256: sha,
            },
            folder: "SST-2",
        },
    }
}

#[test]
fn an_archive_task_is_fetched_from_the_mirror_once() {
    let bytes = zip_of(&[
        ("SST-2/train.tsv", b"sentence\tlabel\ngood \t1\n"),
        ("SST-2/dev.tsv", b"sentence\tlabel\nbad \t0\n"),
    ]);
    let server = Server::start();
    server.route("/glue/SST-2.zip", Reply::ok(&bytes));
    let sha = sha256(&bytes);
    let task = sst2(&sha, bytes.len());
    let root = scratch("glue-archive").join("glue");
    let mirror = server.url("/glue/");
    let dirs = fetch_glue(&[&task], &root, Some(&mirror)).unwrap();
    assert_eq!(dirs, [root.join("SST-2")]);
    assert_eq!(listing(&root), ["SST-2"]);
    assert_eq!(
        std::fs::read(root.join("SST-2/dev.tsv")).unwrap(),
        b"sentence\tlabel\nbad \t0\n"
    );
    assert!(task.is_present(&root));
    let hits = server.hits();
    fetch_glue(&[&task], &root, Some(&mirror)).unwrap();
    assert_eq!(
        server.hits(),
        hits,
        "a task already there is not fetched again"
    );
}

#[test]
fn a_wrong_archive_leaves_nothing_in_the_root() {
    let bytes = zip_of(&[("SST-2/train.tsv", b"x"), ("SST-2/dev.tsv", b"y")]);
    let server = Server::start();
    server.route("/SST-2.zip", Reply::ok(&bytes));
    let wrong = sha256(b"something else");
    let task = sst2(&wrong, bytes.len());
    let root = scratch("glue-wrong");
    let err = fetch_glue(&[&task], &root, Some(&server.base)).unwrap_err();
    assert!(matches!(err, FetchError::Sha256 { .. }), "{err}");
    assert!(err.to_string().contains(&server.url("/SST-2.zip")), "{err}");
    assert!(!task.is_present(&root));
    assert!(listing(&root).is_empty(), "{:?}", listing(&root));
}

#[test]
fn no_mirror_and_no_network_is_recognisable() {
    let url = common::refused_url();
    let base = url.trim_end_matches("/file.zip");
    let task = sst2("00", 1);
    let root = scratch("glue-offline");
    let err = fetch_glue(&[&task], &root, Some(base)).unwrap_err();
    assert!(err.is_no_network(), "{err:?}");
    assert!(listing(&root).is_empty());
}

/// The shared GLUE folder: `$GLUE_DIR`, else `../shared/data/glue` beside the workspace.
fn shared_glue() -> PathBuf {
    std::env::var_os("GLUE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/glue")
        })
}

/// The rows of a shared MRPC file after its header, as tab-separated fields.
fn mrpc_rows(file: &str) -> (String, Vec<Vec<String>>) {
    let path = shared_glue().join("MRPC").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set GLUE_DIR to a glue_data folder)",
            path.display()
        )
    });
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// SentEval-like sources rebuilt from the shared MRPC files: the training pairs with the dev
/// pairs interleaved (CRLF line ends, padded fields), GLUE's dev ids, the test pairs with a
/// label column.
fn mrpc_sources() -> [(&'static str, Vec<u8>); 3] {
    let (header, train) = mrpc_rows("train.tsv");
    let (_, dev) = mrpc_rows("dev.tsv");
    let mut source = format!("{header}\r\n");
    let mut dev_rows = dev.iter();
    for (i, row) in train.iter().enumerate() {
        source.push_str(&format!(" {} \r\n", row.join("\t")));
        if i % 9 == 8 {
            if let Some(d) = dev_rows.next() {
                source.push_str(&format!(
                    "{}\t{}\t{} \t{}\t{}\r\n",
                    d[0], d[1], d[2], d[3], d[4]
                ));
            }
        }
    }
    for d in dev_rows {
        source.push_str(&format!("{}\r\n", d.join("\t")));
    }
    let ids: String = dev
        .iter()
        .map(|d| format!("{}\t{}\r\n", d[1], d[2]))
        .collect();
    let (_, test) = mrpc_rows("test.tsv");
    let mut test_source = format!("{header}\r\n");
    for row in &test {
        test_source.push_str(&format!("1\t{}\r\n", row[1..].join("\t")));
    }
    [
        ("msr_paraphrase_train.txt", source.into_bytes()),
        ("msr_paraphrase_test.txt", test_source.into_bytes()),
        ("mrpc_dev_ids.tsv", ids.into_bytes()),
    ]
}

/// Serves the three MRPC `sources` (name, bytes) as `<url_base><name>` and fetches MRPC
/// from the server as a mirror into a fresh root; returns the root and the result.
fn fetch_mrpc(
    sources: &[(&str, &[u8]); 3],
    url_base: &str,
    name: &str,
) -> (PathBuf, prune_fetch::Result<Vec<PathBuf>>) {
    let server = Server::start();
    let shas: Vec<String> = sources.iter().map(|(_, b)| sha256(b)).collect();
    let urls: Vec<String> = sources
        .iter()
        .map(|(file, _)| format!("{url_base}{file}"))
        .collect();
    for (file, bytes) in sources {
        server.route(&format!("/{file}"), Reply::ok(bytes));
    }
    let remote = |i: usize| Remote {
        url: &urls[i],
        size: sources[i].1.len() as u64,
        sha256: &shas[i],
    };
    let task = GlueTask {
        dir: "MRPC",
        files: &["train.tsv", "dev.tsv"],
        source: Source::Mrpc {
            train: remote(0),
            test: remote(1),
            dev_ids: remote(2),
        },
    };
    let root = scratch(name);
    let result = fetch_glue(&[&task], &root, Some(&server.base));
    (root, result)
}

#[test]
fn mrpc_is_built_exactly_as_glue_ships_it() {
    let owned = mrpc_sources();
    let sources = [
        (owned[0].0, owned[0].1.as_slice()),
        (owned[1].0, owned[1].1.as_slice()),
        (owned[2].0, owned[2].1.as_slice()),
    ];
    let (root, result) = fetch_mrpc(&sources, "https://senteval.invalid/", "glue-mrpc");
    result.unwrap();
    assert_eq!(listing(&root), ["MRPC"]);
    for file in ["train.tsv", "dev.tsv", "test.tsv"] {
        let built = std::fs::read(root.join("MRPC").join(file)).unwrap();
        let shipped = std::fs::read(shared_glue().join("MRPC").join(file)).unwrap();
        assert!(built == shipped, "MRPC/{file} differs from the shared copy");
    }
}

#[test]
fn a_malformed_mrpc_source_names_file_and_line() {
    let train = b"\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n0\t3\tonly three\n";
    let files: [(&str, &[u8]); 3] = [
        ("msr_paraphrase_train.txt", train),
        ("msr_paraphrase_test.txt", b"Quality\n"),
        ("mrpc_dev_ids.tsv", b"1\t2\n"),
    ];
    let (root, result) = fetch_mrpc(&files, "", "glue-mrpc-bad");
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FetchError::BadSource { line: 3, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("msr_paraphrase_train.txt:3") && msg.contains("found 3"),
        "{msg}"
    );
    assert!(listing(&root).is_empty(), "{:?}", listing(&root));
}
