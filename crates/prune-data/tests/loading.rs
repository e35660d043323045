//! Loading the real GLUE files shipped beside the workspace, and malformed input.

use prune_data::dataset::{load_csv, load_jsonl, load_tsv};
use prune_data::{
    BadRows, Columns, DataError, Label, Labels, Split, Task, default_glue_dir, load_glue,
};
use std::path::PathBuf;

fn class_counts(task: Task, split: Split) -> (usize, Vec<usize>) {
    let d = load_glue(&default_glue_dir(), task, split, BadRows::Fail).unwrap_or_else(|e| {
        panic!("{task} {split:?}: {e} (set GLUE_DIR to the glue_data directory)")
    });
    let mut counts = vec![0; d.labels.num_outputs()];
    for e in &d.examples {
        if let Label::Class(c) = e.label {
            counts[c] += 1;
        }
    }
    (d.examples.len(), counts)
}

#[test]
fn every_shipped_file_has_the_official_row_and_label_counts() {
    use Split::*;
    // (task, split, rows, per-class counts in the task's label order)
    let expected: &[(Task, Split, usize, &[usize])] = &[
        (Task::Cola, Train, 8551, &[2528, 6023]),
        (Task::Cola, Dev, 1043, &[322, 721]),
        (Task::Sst2, Train, 67349, &[29780, 37569]),
        (Task::Sst2, Dev, 872, &[428, 444]),
        (Task::Mrpc, Train, 3668, &[1194, 2474]),
        (Task::Mrpc, Dev, 408, &[129, 279]),
        (Task::Rte, Train, 2490, &[1249, 1241]),
        (Task::Rte, Dev, 277, &[146, 131]),
        (Task::Qnli, Dev, 5463, &[2702, 2761]),
        (Task::Wnli, Train, 635, &[323, 312]),
        (Task::Wnli, Dev, 71, &[40, 31]),
        (Task::Stsb, Train, 5749, &[0]),
        (Task::Stsb, Dev, 1500, &[0]),
    ];
    for &(task, split, rows, counts) in expected {
        let (n, c) = class_counts(task, split);
        assert_eq!(n, rows, "{task} {split:?} rows");
        assert_eq!(c, counts, "{task} {split:?} label counts");
    }
}

#[test]
fn texts_and_scores_come_from_the_right_columns() {
    let mrpc = load_glue(&default_glue_dir(), Task::Mrpc, Split::Dev, BadRows::Fail).unwrap();
    let first = &mrpc.examples[0];
    assert!(first.text_b.is_some() && !first.text_a.contains('\t'));
    let stsb = load_glue(&default_glue_dir(), Task::Stsb, Split::Dev, BadRows::Fail).unwrap();
    assert!(
        stsb.examples
            .iter()
            .all(|e| matches!(e.label, Label::Score(s) if (0.0..=5.0).contains(&s)))
    );
    let sst = load_glue(&default_glue_dir(), Task::Sst2, Split::Dev, BadRows::Fail).unwrap();
    assert!(sst.examples.iter().all(|e| e.text_b.is_none()));
}

fn write(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prune-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn malformed_rows_name_file_and_line_or_are_skipped() {
    let layout = Task::Rte.layout();
    let labels: Labels = Task::Rte.labels().into();
    let cases: [(&str, &[u8], usize, &str); 3] = [
        (
            "cols.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
            3,
            "2 columns",
        ),
        (
            "label.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n",
            2,
            "unknown label \"maybe\"",
        ),
        (
            "utf8.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\t\xff\tb\tentailment\n",
            3,
            "invalid UTF-8",
        ),
    ];
    for (name, content, line, why) in cases {
        let path = write(name, content);
        let err = load_tsv(&path, layout, labels.clone(), BadRows::Fail).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, DataError::BadRow { line: l, .. } if l == line),
            "{msg}"
        );
        assert!(msg.contains(name) && msg.contains(why), "{msg}");
        let d = load_tsv(&path, layout, labels.clone(), BadRows::Skip).unwrap();
        assert_eq!(d.skipped.len(), 1, "{name}");
    }
    let missing = load_tsv(
        &PathBuf::from("/nonexistent/x.tsv"),
        layout,
        labels,
        BadRows::Fail,
    );
    let missing = missing.unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/x.tsv"));
    // The message holds the cause's text, so the cause is not repeated as the source.
    assert!(std::error::Error::source(&missing).is_none());
}

#[test]
fn headers_are_checked_and_blank_lines_skipped() {
    let sst = |content: &[u8], name: &str| {
        let path = write(name, content);
        let labels: Labels = Task::Sst2.labels().into();
        (
            load_tsv(&path, Task::Sst2.layout(), labels, BadRows::Fail),
            path,
        )
    };
    // CRLF line ends, a blank line, a line holding only `\r`, a trailing blank line.
    let (d, _) = sst(
        b"sentence\tlabel\r\ngood film\t1\r\n\r\nbad film\t0\n\r\n\n",
        "crlf.tsv",
    );
    let d = d.unwrap();
    assert_eq!(d.examples.len(), 2);
    assert_eq!(d.examples[1].text_a, "bad film");
    assert_eq!(d.examples[1].label, Label::Class(0));

    // No header row: the first example is not silently dropped.
    let (e, path) = sst(b"good film\t1\nbad film\t0\n", "noheader.tsv");
    assert_eq!(
        e.unwrap_err().to_string(),
        format!(
            "{}:1: expected the header row (`sentence` in column 1, `label` in column 2), \
             found \"good film\\t1\": is the header missing?",
            path.display()
        )
    );
    let mnli = write("mnli.tsv", b"index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tlabel\n");
    let msg = load_tsv(
        &mnli,
        Task::Mnli.layout(),
        Task::Mnli.labels().into(),
        BadRows::Skip,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("`gold_label` in the last column"), "{msg}");

    // Empty files and files without examples name the file.
    for (content, why) in [
        (&b""[..], "empty file, expected a header row"),
        (b"\n\r\n", "empty file, expected a header row"),
        (b"sentence\tlabel\n\n", "no examples"),
    ] {
        let (e, path) = sst(content, "empty.tsv");
        assert_eq!(
            e.unwrap_err().to_string(),
            format!("{}: {why}", path.display())
        );
    }
    let cola = write("cola.tsv", b"\n");
    let msg = load_tsv(
        &cola,
        Task::Cola.layout(),
        Task::Cola.labels().into(),
        BadRows::Fail,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(msg, format!("{}: no examples", cola.display()));
}

#[test]
fn users_csv_and_jsonl_with_named_columns() {
    let cols = Columns {
        text_a: "premise".into(),
        text_b: Some("hypothesis".into()),
        label: "y".into(),
    };
    let labels = Labels::Classes(vec!["no".into(), "yes".into()]);
    let csv = write(
        "own.csv",
        b"id,premise,hypothesis,y\n1,\"A, quoted\",B,yes\n2,C,D,no\n",
    );
    let d = load_csv(&csv, &cols, labels.clone(), BadRows::Fail).unwrap();
    assert_eq!(d.examples.len(), 2);
    assert_eq!(d.examples[0].text_a, "A, quoted");
    assert_eq!(d.examples[1].label, Label::Class(0));
    let bad = write("bad.csv", b"id,premise,hypothesis,y\n1,A,B,perhaps\n");
    let msg = load_csv(&bad, &cols, labels.clone(), BadRows::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bad.csv:2") && msg.contains("perhaps"),
        "{msg}"
    );
    let wrong = Columns {
        label: "label".into(),
        ..cols.clone()
    };
    let msg = load_csv(&csv, &wrong, labels.clone(), BadRows::Fail)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no column named \"label\""), "{msg}");

    let jsonl = write("own.jsonl", b"{\"premise\":\"A\",\"hypothesis\":\"B\",\"y\":\"yes\"}\n\n{\"premise\":\"C\",\"y\":\"no\"}\n");
    let msg = load_jsonl(&jsonl, &cols, labels.clone(), BadRows::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("own.jsonl:3") && msg.contains("no field \"hypothesis\""),
        "{msg}"
    );
    let d = load_jsonl(&jsonl, &cols, labels, BadRows::Skip).unwrap();
    assert_eq!((d.examples.len(), d.skipped.len()), (1, 1));
    let scores = write(
        "scores.jsonl",
        b"{\"premise\":\"A\",\"hypothesis\":\"B\",\"y\":3.5}\n",
    );
    let d = load_jsonl(&scores, &cols, Labels::Regression, BadRows::Fail).unwrap();
    assert_eq!(d.examples[0].label, Label::Score(3.5));
}
