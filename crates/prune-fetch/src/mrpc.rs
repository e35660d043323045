//! GLUE's MRPC files built from SentEval's MSR Paraphrase files and GLUE's list of dev ids,
//! as GLUE's download script builds them: the training pairs whose `(#1 ID, #2 ID)` is a dev
//! id go to dev.tsv and the others to train.tsv (both under the source's header line, a BOM
//! included), and test.tsv numbers the test pairs from 0 under an `index` header.

use crate::error::{FetchError, Result};
use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// The header of `msr_paraphrase_train.txt` (after an optional BOM), kept in train and dev.
const HEADER: &str = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String";
/// The header of GLUE's test.tsv.
const TEST_HEADER: &str = "index\t#1 ID\t#2 ID\t#1 String\t#2 String";

/// Writes `train.tsv`, `dev.tsv` and `test.tsv` into the folder `out` from the training pairs
/// `train`, the test pairs `test` and the dev id pairs `dev_ids`.
pub(crate) fn build(train: &Path, test: &Path, dev_ids: &Path, out: &Path) -> Result<()> {
    let ids_text = read(dev_ids)?;
    let ids = id_pairs(dev_ids, &ids_text)?;
    let text = read(train)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header.trim_start_matches('\u{feff}').trim() != HEADER {
        return Err(bad(train, 1, format!("expected the header {HEADER:?}")));
    }
    let mut train_tsv = format!("{}\n", header.trim_end());
    let mut dev_tsv = train_tsv.clone();
    for row in rows(train, lines) {
        let row = row?;
        let to = if ids.contains(&(row[1], row[2])) {
            &mut dev_tsv
        } else {
            &mut train_tsv
        };
        to.push_str(&row.join("\t"));
        to.push('\n');
    }
    let text = read(test)?;
    let mut test_tsv = format!("{TEST_HEADER}\n");
    for (index, row) in rows(test, text.lines().skip(1)).enumerate() {
        test_tsv.push_str(&format!("{index}\t{}\n", row?[1..].join("\t")));
    }
    for (name, content) in [
        ("train.tsv", train_tsv),
        ("dev.tsv", dev_tsv),
        ("test.tsv", test_tsv),
    ] {
        let path = out.join(name);
        fs::write(&path, content).map_err(|e| FetchError::io("write", &path, e))?;
    }
    Ok(())
}

/// The `(#1 ID, #2 ID)` pairs of the dev ids file `path` (one tab-separated pair a line).
fn id_pairs<'t>(path: &Path, text: &'t str) -> Result<HashSet<(&'t str, &'t str)>> {
    let mut pairs = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match line.split('\t').map(str::trim).collect::<Vec<_>>()[..] {
            [id1, id2] => pairs.insert((id1, id2)),
            ref other => {
                let why = format!("expected 2 tab-separated ids, found {} fields", other.len());
                return Err(bad(path, i + 1, why));
            }
        };
    }
    Ok(pairs)
}

/// The non-blank lines after the header of `path`, each split on tabs into five fields
/// stripped of surrounding whitespace.
fn rows<'t>(
    path: &'t Path,
    lines: impl Iterator<Item = &'t str> + 't,
) -> impl Iterator<Item = Result<[&'t str; 5]>> + 't {
    lines
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(move |(i, line)| {
            let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
            <[&str; 5]>::try_from(fields).map_err(|f| {
                let why = format!("expected 5 tab-separated fields, found {}", f.len());
                bad(path, i + 2, why)
            })
        })
}

/// The text of `path`.
fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| FetchError::io("read", path, e))
}

/// A [`FetchError::BadSource`] at `line` of `path`.
fn bad(path: &Path, line: usize, why: String) -> FetchError {
    FetchError::BadSource {
        path: path.to_path_buf(),
        line,
        why,
    }
}
