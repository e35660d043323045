//! What every stage reads: a checkpoint directory and a GLUE task, tokenized once; the
//! evaluator of the task's dev split; the identity of a run over them; and loading a
//! classifier.

use crate::error::{Context, Result};
use crate::options::TrainOptions;
use crate::refuse;
use prune_data::dataset::glue_path;
use prune_data::{
    BadRows, Dataset, Encoded, Split, Task, encode_examples, glue_dir_for, load_glue,
};
use prune_tensor::Backend;
use prune_train::{Evaluator, RunDir, RunIdentity};
use prune_transformer::{
    BertConfig, BertForSequenceClassification, BertModel, Padding, Tokenizer, paths,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the model and the data come from. Serialised, the settings that decide what the
/// examples are (the task, the model and the data files are recorded as such elsewhere).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all(deserialize = "kebab-case"))]
pub struct Source {
    /// GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli.
    #[arg(long, default_value_t = Source::default().task)]
    #[serde(skip_serializing)]
    pub task: Task,
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json); default: the
    /// fetched all-MiniLM-L6-v2 (`cargo xtask fetch`).
    #[arg(long)]
    #[serde(skip)]
    pub model: Option<PathBuf>,
    /// The glue_data directory; default: the first of $GLUE_DIR, ../shared/data/glue
    /// beside the workspace and <cache>/glue that holds the task, else the task is
    /// downloaded into <cache>/glue.
    #[arg(long)]
    #[serde(skip)]
    pub data: Option<PathBuf>,
    /// Longest sequence in tokens (longer inputs are truncated, longest-first for pairs).
    #[arg(long, default_value_t = Source::default().max_len)]
    pub max_len: usize,
    /// Examples per evaluation batch.
    #[arg(long, default_value_t = Source::default().eval_batch_size)]
    #[serde(skip_serializing)]
    pub eval_batch_size: usize,
    /// Skip malformed data rows (with a warning count) instead of failing.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            task: Task::Sst2,
            model: None,
            data: None,
            max_len: 128,
            eval_batch_size: 64,
            skip_bad_rows: false,
        }
    }
}

impl Source {
    /// Checks the values (before anything is read).
    pub fn check(&self) -> Result<()> {
        if self.max_len < 2 {
            refuse!(
                "--max-len must be at least 2 tokens ([CLS] and [SEP]), got {}",
                self.max_len
            );
        }
        if self.eval_batch_size == 0 {
            refuse!("--eval-batch-size must be at least 1");
        }
        Ok(())
    }

    /// The glue_data directory the task is read from: `--data`, else the first folder
    /// that has the task (`$GLUE_DIR`, `../shared/data/glue`, the cache), else the cache
    /// after downloading the task into it.
    pub fn data_dir(&self) -> Result<PathBuf> {
        Ok(glue_dir_for(self.task, self.data.as_deref())?)
    }
}

/// A task's data, tokenized.
pub struct Prepared {
    /// Id of the padding token.
    pub pad: u32,
    /// Tokenized training examples (empty when not asked for).
    pub train: Vec<Encoded>,
    /// Tokenized dev examples.
    pub dev: Vec<Encoded>,
    /// The checkpoint directory.
    pub model_dir: PathBuf,
    /// The glue_data directory.
    pub data_dir: PathBuf,
}

/// Loads one split from the glue_data directory `dir`, warning about skipped rows.
fn load(source: &Source, dir: &Path, split: Split) -> Result<Dataset> {
    let bad = if source.skip_bad_rows {
        BadRows::Skip
    } else {
        BadRows::Fail
    };
    let d = load_glue(dir, source.task, split, bad)
        .context_with(|| format!("loading {} {split:?}", source.task))?;
    if !d.skipped.is_empty() {
        eprintln!(
            "warning: skipped {} malformed rows, first: {}",
            d.skipped.len(),
            d.skipped[0]
        );
    }
    Ok(d)
}

/// Loads and tokenizes the task (the training split only when `with_train`, cut to
/// `max_train` rows) with the checkpoint's tokenizer.
pub fn prepare(source: &Source, max_train: Option<usize>, with_train: bool) -> Result<Prepared> {
    let model_dir = match &source.model {
        Some(d) => paths::require_given_checkpoint(d.clone(), true)?,
        None => paths::require_model_dir()?,
    };
    let config = BertConfig::from_file(&model_dir.join("config.json"))?;
    let (table, positions) = (config.max_position_embeddings, config.max_tokens());
    if source.max_len > positions {
        refuse!(
            "--max-len {} exceeds the {positions} tokens the model's {table} positions cover",
            source.max_len
        );
    }
    let tok = Tokenizer::from_file(
        &model_dir.join("tokenizer.json"),
        source.max_len,
        Padding::Longest,
    )?;
    let pad = tok.pad_id();
    let data_dir = source.data_dir()?;
    let start = Instant::now();
    let train = if with_train {
        let mut t = load(source, &data_dir, Split::Train)?.examples;
        t.truncate(max_train.unwrap_or(usize::MAX));
        encode_examples(&tok, &t)?
    } else {
        Vec::new()
    };
    let dev = encode_examples(&tok, &load(source, &data_dir, Split::Dev)?.examples)?;
    eprintln!(
        "tokenized {} train and {} dev examples in {:.1}s",
        train.len(),
        dev.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(Prepared {
        pad,
        train,
        dev,
        model_dir,
        data_dir,
    })
}

/// The identity of a run of `command` over `source` as prepared in `p`: the task, the
/// source's settings, and hashes of the input model and the training file. Commands add
/// their own settings.
pub fn source_identity(command: &str, source: &Source, p: &Prepared) -> Result<RunIdentity> {
    let train_file = glue_path(&p.data_dir, source.task, Split::Train)?;
    Ok(RunIdentity::new(command)
        .with("task", source.task.to_string())
        .with_fields("source", source)
        .with_checkpoint("model", &p.model_dir)?
        .with_file("data.train", &train_file)?)
}

/// The identity of a training run: [`source_identity`] and the training options `train`.
/// Stages add their own settings.
pub fn run_identity(
    command: &str,
    source: &Source,
    p: &Prepared,
    train: &TrainOptions,
) -> Result<RunIdentity> {
    Ok(source_identity(command, source, p)?.with_fields("train", train))
}

/// The evaluator of the dev split with the task's metrics.
pub fn evaluator(source: &Source, p: &Prepared) -> Result<Evaluator> {
    Ok(Evaluator::new(
        p.dev.clone(),
        source.task.metrics(),
        source.eval_batch_size,
        p.pad,
    )?)
}

/// Claims `out` for a stage `command` that distils from `teacher`: its identity (that of
/// [`run_identity`], the stage's own `settings` and the teacher's hashes) and its inputs
/// (model, teacher, data).
pub fn claim_distilling(
    command: &str,
    (source, p, train): (&Source, &Prepared, &TrainOptions),
    settings: &impl Serialize,
    teacher: &Path,
    (out, resume): (&Path, bool),
) -> Result<RunDir> {
    let identity = run_identity(command, source, p, train)?
        .with_fields(command, settings)
        .with_checkpoint("teacher", teacher)?;
    let inputs = [
        ("--model", p.model_dir.as_path()),
        ("--teacher", teacher),
        ("--data", &p.data_dir),
    ];
    Ok(RunDir::claim(out, &inputs, &identity, resume)?)
}

/// Loads a classification checkpoint onto backend `b`.
pub fn load_classifier<B: Backend>(b: B, dir: &Path) -> Result<BertForSequenceClassification<B>> {
    let bert = BertModel::load(b, dir).context_with(|| format!("loading {}", dir.display()))?;
    Ok(BertForSequenceClassification::new(bert)?)
}
