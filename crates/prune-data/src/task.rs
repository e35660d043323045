//! The nine GLUE tasks: where their files are, which columns hold text and label, their label
//! sets and their metrics.

use crate::error::DataError;
use crate::metrics::Metric;
use std::fmt;
use std::str::FromStr;

/// A GLUE task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// Corpus of Linguistic Acceptability (single sentence, Matthews correlation).
    Cola,
    /// Stanford Sentiment Treebank, binary (single sentence, accuracy).
    Sst2,
    /// Microsoft Research Paraphrase Corpus (pair, F1 and accuracy).
    Mrpc,
    /// Semantic Textual Similarity Benchmark (pair, regression, Pearson and Spearman).
    Stsb,
    /// Quora Question Pairs (pair, F1 and accuracy).
    Qqp,
    /// Multi-Genre NLI (pair, 3 classes, accuracy on matched and mismatched dev).
    Mnli,
    /// Question NLI (pair, accuracy).
    Qnli,
    /// Recognising Textual Entailment (pair, accuracy).
    Rte,
    /// Winograd NLI (pair, accuracy).
    Wnli,
}

/// Which column of a TSV row holds what (0-based), for the labelled splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The header row the files start with (checked, then skipped); `None`: no header row.
    pub header: Option<Header>,
    /// Column of the first text.
    pub text_a: usize,
    /// Column of the second text, for pair tasks.
    pub text_b: Option<usize>,
    /// Column of the label; `None` means the last column (MNLI's `gold_label`).
    pub label: Option<usize>,
    /// Smallest number of columns a row must have.
    pub min_columns: usize,
}

/// The names a task's header row gives the columns a [`Layout`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Name of the first text's column.
    pub text_a: &'static str,
    /// Name of the second text's column, for pair tasks.
    pub text_b: Option<&'static str>,
    /// Name of the label's column.
    pub label: &'static str,
}

/// What a task predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// One of these label strings; the class index is the position in the list.
    Classes(&'static [&'static str]),
    /// A real-valued score.
    Regression,
}

impl Task {
    /// Every task, in GLUE's order.
    pub const ALL: [Task; 9] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Stsb,
        Task::Qqp,
        Task::Mnli,
        Task::Qnli,
        Task::Rte,
        Task::Wnli,
    ];

    /// The directory name in the standard `glue_data/` layout.
    pub fn dir_name(self) -> &'static str {
        match self {
            Task::Cola => "CoLA",
            Task::Sst2 => "SST-2",
            Task::Mrpc => "MRPC",
            Task::Stsb => "STS-B",
            Task::Qqp => "QQP",
            Task::Mnli => "MNLI",
            Task::Qnli => "QNLI",
            Task::Rte => "RTE",
            Task::Wnli => "WNLI",
        }
    }

    /// File names of the dev split(s): MNLI has matched and mismatched.
    pub fn dev_files(self) -> &'static [&'static str] {
        match self {
            Task::Mnli => &["dev_matched.tsv", "dev_mismatched.tsv"],
            _ => &["dev.tsv"],
        }
    }

    /// Column layout of `train.tsv` and the dev files.
    pub fn layout(self) -> Layout {
        let header = |text_a, text_b, label| {
            Some(Header {
                text_a,
                text_b,
                label,
            })
        };
        let l = |header, text_a, text_b, label, min_columns| Layout {
            header,
            text_a,
            text_b,
            label,
            min_columns,
        };
        let pair = |a, b, label| header(a, Some(b), label);
        match self {
            Task::Cola => l(None, 3, None, Some(1), 4),
            Task::Sst2 => l(header("sentence", None, "label"), 0, None, Some(1), 2),
            Task::Mrpc => l(
                pair("#1 String", "#2 String", "Quality"),
                3,
                Some(4),
                Some(0),
                5,
            ),
            Task::Stsb => l(
                pair("sentence1", "sentence2", "score"),
                7,
                Some(8),
                Some(9),
                10,
            ),
            Task::Qqp => l(
                pair("question1", "question2", "is_duplicate"),
                3,
                Some(4),
                Some(5),
                6,
            ),
            Task::Mnli => l(
                pair("sentence1", "sentence2", "gold_label"),
                8,
                Some(9),
                None,
                11,
            ),
            Task::Qnli => l(
                pair("question", "sentence", "label"),
                1,
                Some(2),
                Some(3),
                4,
            ),
            Task::Rte | Task::Wnli => l(
                pair("sentence1", "sentence2", "label"),
                1,
                Some(2),
                Some(3),
                4,
            ),
        }
    }

    /// The label set (class index = position) or regression.
    pub fn labels(self) -> LabelKind {
        match self {
            Task::Stsb => LabelKind::Regression,
            Task::Mnli => LabelKind::Classes(&["contradiction", "entailment", "neutral"]),
            Task::Qnli | Task::Rte => LabelKind::Classes(&["entailment", "not_entailment"]),
            _ => LabelKind::Classes(&["0", "1"]),
        }
    }

    /// Number of model outputs: classes, or 1 for regression.
    pub fn num_labels(self) -> usize {
        match self.labels() {
            LabelKind::Classes(c) => c.len(),
            LabelKind::Regression => 1,
        }
    }

    /// The metrics reported for the task; the first is the main one.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Task::Cola => &[Metric::Matthews],
            Task::Mrpc | Task::Qqp => &[Metric::F1, Metric::Accuracy],
            Task::Stsb => &[Metric::Pearson, Metric::Spearman],
            _ => &[Metric::Accuracy],
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

impl FromStr for Task {
    type Err = DataError;

    /// Parses a task name case-insensitively, with or without dashes (`sst2`, `SST-2`).
    fn from_str(s: &str) -> Result<Self, DataError> {
        let key: String = s
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        Task::ALL
            .into_iter()
            .find(|t| t.dir_name().replace('-', "").to_lowercase() == key)
            .ok_or_else(|| DataError::UnknownTask(s.to_string()))
    }
}

impl serde::Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Task {
    /// A task name in any spelling [`FromStr`] takes.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_any_spelling() {
        assert_eq!("sst2".parse::<Task>().unwrap(), Task::Sst2);
        assert_eq!("SST-2".parse::<Task>().unwrap(), Task::Sst2);
        assert_eq!("sts-b".parse::<Task>().unwrap(), Task::Stsb);
        assert!("glue".parse::<Task>().is_err());
    }
}
