//! Loading labelled examples: GLUE TSV files (split on tabs only, no quoting, as GLUE's own
//! readers do), and CSV / JSONL files with named columns for users' own tasks.

use crate::error::{DataError, Result};
use crate::task::{LabelKind, Layout, Task};
use std::path::{Path, PathBuf};

/// The gold label of an example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    /// A class index into the task's label list.
    Class(usize),
    /// A regression target.
    Score(f32),
}

/// One labelled example: one or two texts and a label.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The first (or only) text.
    pub text_a: String,
    /// The second text of a pair task.
    pub text_b: Option<String>,
    /// The gold label.
    pub label: Label,
}

/// What to do with a malformed row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadRows {
    /// Stop at the first malformed row with an error naming file and line.
    #[default]
    Fail,
    /// Skip malformed rows, counting them and keeping their errors as warnings.
    Skip,
}

/// A labelled split of a task.
#[derive(Debug)]
pub struct Dataset {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// The label set, or regression.
    pub labels: Labels,
    /// Malformed rows skipped under [`BadRows::Skip`], with what was wrong.
    pub skipped: Vec<DataError>,
}

/// A task's label set, owned, so users' own tasks can have theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    /// Class names; the class index is the position.
    Classes(Vec<String>),
    /// Real-valued targets.
    Regression,
}

impl Labels {
    /// Number of model outputs: classes, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        match self {
            Labels::Classes(c) => c.len(),
            Labels::Regression => 1,
        }
    }

    /// Parses a label field.
    fn parse(&self, field: &str) -> std::result::Result<Label, String> {
        let field = field.trim();
        match self {
            Labels::Classes(names) => names
                .iter()
                .position(|n| n == field)
                .map(Label::Class)
                .ok_or_else(|| format!("unknown label {field:?} (expected one of {names:?})")),
            Labels::Regression => field
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Label::Score)
                .ok_or_else(|| format!("label {field:?} is not a finite number")),
        }
    }
}

impl From<LabelKind> for Labels {
    fn from(k: LabelKind) -> Self {
        match k {
            LabelKind::Classes(c) => Labels::Classes(c.iter().map(|s| s.to_string()).collect()),
            LabelKind::Regression => Labels::Regression,
        }
    }
}

/// A split of a GLUE task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train.tsv`.
    Train,
    /// `dev.tsv` (MNLI: `dev_matched.tsv`).
    Dev,
    /// MNLI's `dev_mismatched.tsv`.
    DevMismatched,
}

/// The path of `split` of `task` under a `glue_data/`-style directory.
pub fn glue_path(dir: &Path, task: Task, split: Split) -> Result<PathBuf> {
    let file = match split {
        Split::Train => "train.tsv",
        Split::Dev => task.dev_files()[0],
        Split::DevMismatched => task.dev_files().get(1).copied().ok_or_else(|| {
            DataError::Invalid(format!(
                "{task} has no mismatched dev split (only MNLI has)"
            ))
        })?,
    };
    Ok(dir.join(task.dir_name()).join(file))
}

/// Loads `split` of `task` from a `glue_data/`-style directory.
pub fn load_glue(dir: &Path, task: Task, split: Split, bad: BadRows) -> Result<Dataset> {
    load_tsv(
        &glue_path(dir, task, split)?,
        task.layout(),
        task.labels().into(),
        bad,
    )
}

/// Reads a file, mapping the error to one that names it.
fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|cause| DataError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// Non-empty lines of a file as `(1-based line number, bytes)`, without a UTF-8 BOM or a
/// trailing `\r`: blank lines (a final newline, a blank last line) are skipped.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.is_empty())
}

/// Checks that `line` (number `n`) is the header row `layout` expects.
fn check_header(path: &Path, layout: &Layout, n: usize, line: &[u8]) -> Result<()> {
    let Some(header) = layout.header else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(line);
    let cols: Vec<&str> = text.split('\t').map(str::trim).collect();
    let label_col = layout.label.unwrap_or(cols.len() - 1);
    let mut wanted = vec![(Some(layout.text_a), header.text_a)];
    wanted.extend(
        layout
            .text_b
            .zip(header.text_b)
            .map(|(i, name)| (Some(i), name)),
    );
    wanted.push((layout.label, header.label));
    let fits = wanted
        .iter()
        .all(|&(i, name)| cols.get(i.unwrap_or(label_col)) == Some(&name));
    if fits {
        return Ok(());
    }
    let expected: Vec<String> = wanted
        .iter()
        .map(|&(i, name)| match i {
            Some(i) => format!("`{name}` in column {}", i + 1),
            None => format!("`{name}` in the last column"),
        })
        .collect();
    let found: String = text.chars().take(120).collect();
    Err(DataError::BadRow {
        path: path.to_path_buf(),
        line: n,
        why: format!(
            "expected the header row ({}), found {found:?}: is the header missing?",
            expected.join(", ")
        ),
    })
}

/// Collects parsed rows under the bad-row policy.
fn collect(
    path: &Path,
    labels: Labels,
    bad: BadRows,
    rows: impl Iterator<Item = (usize, std::result::Result<Example, String>)>,
) -> Result<Dataset> {
    let mut examples = Vec::new();
    let mut skipped = Vec::new();
    for (line, row) in rows {
        match row {
            Ok(e) => examples.push(e),
            Err(why) => {
                let err = DataError::BadRow {
                    path: path.to_path_buf(),
                    line,
                    why,
                };
                match bad {
                    BadRows::Fail => return Err(err),
                    BadRows::Skip => skipped.push(err),
                }
            }
        }
    }
    Ok(Dataset {
        examples,
        labels,
        skipped,
    })
}

/// Loads a TSV file with the given column layout and label set. The header row, when the
/// layout has one, must name the columns the layout reads; blank lines are skipped; a file
/// without examples is an error naming it.
pub fn load_tsv(path: &Path, layout: Layout, labels: Labels, bad: BadRows) -> Result<Dataset> {
    let bytes = read(path)?;
    let mut lines = lines(&bytes).peekable();
    let empty = |why: &str| DataError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if layout.header.is_some() {
        let (n, line) = lines
            .next()
            .ok_or_else(|| empty("empty file, expected a header row"))?;
        check_header(path, &layout, n, line)?;
    }
    if lines.peek().is_none() {
        return Err(empty("no examples"));
    }
    let rows = lines.map(|(n, raw)| {
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
            .and_then(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                if cols.len() < layout.min_columns {
                    return Err(format!(
                        "{} columns, expected at least {}",
                        cols.len(),
                        layout.min_columns
                    ));
                }
                let label_col = layout.label.unwrap_or(cols.len() - 1);
                let col = |i: usize| cols.get(i).copied().ok_or(format!("no column {i}"));
                Ok(Example {
                    text_a: col(layout.text_a)?.to_string(),
                    text_b: layout.text_b.map(col).transpose()?.map(str::to_string),
                    label: labels.parse(col(label_col)?)?,
                })
            });
        (n, parsed)
    });
    collect(path, labels.clone(), bad, rows)
}

/// Which named columns of a user's CSV / JSONL file hold the texts and the label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    /// Column of the first text.
    pub text_a: String,
    /// Column of the second text, for pair tasks.
    pub text_b: Option<String>,
    /// Column of the label.
    pub label: String,
}

/// Loads a CSV file (with a header row naming the columns, standard quoting).
pub fn load_csv(path: &Path, columns: &Columns, labels: Labels, bad: BadRows) -> Result<Dataset> {
    let bytes = read(path)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| DataError::BadRow {
            path: path.to_path_buf(),
            line: 1,
            why: e.to_string(),
        })?
        .clone();
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                available: header.iter().collect::<Vec<_>>().join(", "),
            })
    };
    let (a, b, l) = (
        find(&columns.text_a)?,
        columns.text_b.as_deref().map(find).transpose()?,
        find(&columns.label)?,
    );
    let rows = reader.into_byte_records().enumerate().map(|(i, rec)| {
        let line = rec
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| p.line() as usize);
        let parsed = rec.map_err(|e| e.to_string()).and_then(|r| {
            let field = |j: usize| {
                let raw = r
                    .get(j)
                    .ok_or(format!("{} fields, no field {}", r.len(), j + 1))?;
                std::str::from_utf8(raw)
                    .map_err(|e| format!("invalid UTF-8 in field {}: {e}", j + 1))
            };
            Ok(Example {
                text_a: field(a)?.to_string(),
                text_b: b.map(field).transpose()?.map(str::to_string),
                label: labels.parse(field(l)?)?,
            })
        });
        (line, parsed)
    });
    collect(path, labels.clone(), bad, rows)
}

/// Loads a JSON-lines file: one object per line with the named fields (a label may be a
/// JSON string or number).
pub fn load_jsonl(path: &Path, columns: &Columns, labels: Labels, bad: BadRows) -> Result<Dataset> {
    let bytes = read(path)?;
    let rows = lines(&bytes)
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(n, raw)| {
            let parsed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(raw)
                .map_err(|e| format!("not a JSON object: {e}"))
                .and_then(|obj| {
                    let field = |name: &str| match obj.get(name) {
                        Some(serde_json::Value::String(s)) => Ok(s.clone()),
                        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                            Ok(v.to_string())
                        }
                        Some(v) => Err(format!(
                            "field {name:?} is {v}, expected a string or number"
                        )),
                        None => Err(format!("no field {name:?}")),
                    };
                    Ok(Example {
                        text_a: field(&columns.text_a)?,
                        text_b: columns.text_b.as_deref().map(field).transpose()?,
                        label: labels.parse(&field(&columns.label)?)?,
                    })
                });
            (n, parsed)
        });
    collect(path, labels.clone(), bad, rows)
}
