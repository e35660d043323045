//! `Tokenizer`: a wrapper around the `tokenizers` library's `tokenizer.json` (WordPiece for
//! BERT) producing padded [`Batch`]es of single sentences or pairs, with the same ids as
//! transformers' fast tokenizer. The file's own truncation and padding are replaced by the
//! wrapper's settings. Every call into the `tokenizers` library is guarded: a panic inside it
//! (some malformed files make it panic) becomes an error naming the file.

mod checks;

use crate::batch::Batch;
use crate::error::{Result, TransformerError};
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use tokenizers::{
    EncodeInput, PaddingDirection, PaddingParams, PaddingStrategy, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

/// The pad tokens looked for, in order, when the file names none.
const PAD_TOKENS: [&str; 2] = ["[PAD]", "<pad>"];

/// How a batch is padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// To the longest sequence of the batch.
    Longest,
    /// To exactly this many tokens (after truncation to at most the maximum length).
    Fixed(usize),
}

/// A BERT tokenizer with truncation to a maximum length (longest-first for pairs) and
/// padding.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    max_len: usize,
    padding: Padding,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("max_len", &self.max_len)
            .field("padding", &self.padding)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` (a UTF-8 byte-order mark is allowed); truncates to `max_len`
    /// tokens (special tokens included) and pads as `padding` says.
    pub fn from_file(path: &Path, max_len: usize, padding: Padding) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TransformerError::io(path, e))?;
        let json = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        // The JSON syntax is checked first (the library panics on some syntax errors), then
        // what the library trusts (see `checks`).
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| tokenizer_error(path, format!("invalid JSON: {e}")))?;
        checks::check(&value).map_err(|e| tokenizer_error(path, e))?;
        let inner = guarded(path, "reading the file", || {
            serde_json::from_value::<tokenizers::Tokenizer>(value)
        })?
        .map_err(|e| tokenizer_error(path, e.to_string()))?;
        let mut t = Tokenizer {
            inner,
            path: path.to_path_buf(),
            max_len,
            padding,
        };
        t.configure()?;
        Ok(t)
    }

    /// Changes the maximum length.
    pub fn set_max_len(&mut self, max_len: usize) -> Result<()> {
        self.max_len = max_len;
        self.configure()
    }

    /// Changes the padding.
    pub fn set_padding(&mut self, padding: Padding) -> Result<()> {
        self.padding = padding;
        self.configure()
    }

    /// The maximum length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The file's pad token when it names one, else `[PAD]` (WordPiece vocabularies) or
    /// `<pad>` (BPE ones): its text, id and token type.
    fn pad(&self) -> Result<(String, u32, u32)> {
        if let Some(p) = self.inner.get_padding() {
            return Ok((p.pad_token.clone(), p.pad_id, p.pad_type_id));
        }
        PAD_TOKENS
            .iter()
            .find_map(|t| Some((t.to_string(), self.inner.token_to_id(t)?, 0)))
            .ok_or_else(|| {
                self.err(format!(
                    "no padding token: the vocabulary has none of {}",
                    PAD_TOKENS.join(", ")
                ))
            })
    }

    /// The id padding is written with.
    pub fn pad_id(&self) -> u32 {
        self.inner.get_padding().map_or(0, |p| p.pad_id)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn err(&self, message: impl Into<String>) -> TransformerError {
        tokenizer_error(&self.path, message)
    }

    /// Replaces the file's truncation and padding with ours.
    fn configure(&mut self) -> Result<()> {
        if self.max_len < 3 {
            return Err(self.err(format!(
                "max length {} leaves no room for [CLS] and [SEP]",
                self.max_len
            )));
        }
        if let Padding::Fixed(n) = self.padding
            && n < self.max_len
        {
            return Err(self.err(format!(
                "fixed padding length {n} is shorter than the max length {}",
                self.max_len
            )));
        }
        let (pad_token, pad_id, pad_type_id) = self.pad()?;
        let strategy = match self.padding {
            Padding::Longest => PaddingStrategy::BatchLongest,
            Padding::Fixed(n) => PaddingStrategy::Fixed(n),
        };
        let padding = PaddingParams {
            strategy,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        };
        let trunc = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: self.max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        let inner = &mut self.inner;
        let result = guarded(&self.path, "setting padding and truncation", || {
            inner.with_padding(Some(padding));
            inner.with_truncation(Some(trunc)).map(|_| ())
        })?;
        result.map_err(|e| self.err(e.to_string()))
    }

    /// Encodes single sentences (`(a, None)`) and pairs (`(a, Some(b))`) into one padded
    /// batch with `[CLS] a [SEP] (b [SEP])`, token types 0/1 and the attention mask.
    pub fn encode(&self, texts: &[(&str, Option<&str>)]) -> Result<Batch> {
        if texts.is_empty() {
            return Err(TransformerError::Input("nothing to tokenize".into()));
        }
        let inputs: Vec<EncodeInput<'_>> = texts
            .iter()
            .map(|&(a, b)| match b {
                None => EncodeInput::Single(a.into()),
                Some(b) => EncodeInput::Dual(a.into(), b.into()),
            })
            .collect();
        let encodings = guarded(&self.path, "encoding", || {
            self.inner.encode_batch(inputs, true)
        })?
        .map_err(|e| self.err(e.to_string()))?;
        let seq = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut batch = Batch {
            batch: encodings.len(),
            seq,
            input_ids: Vec::with_capacity(encodings.len() * seq),
            token_type_ids: Vec::with_capacity(encodings.len() * seq),
            attention_mask: Vec::with_capacity(encodings.len() * seq),
        };
        for e in &encodings {
            if e.get_ids().len() != seq {
                return Err(self.err("encodings of one batch have different lengths"));
            }
            batch.input_ids.extend_from_slice(e.get_ids());
            batch.token_type_ids.extend_from_slice(e.get_type_ids());
            batch
                .attention_mask
                .extend_from_slice(e.get_attention_mask());
        }
        batch.check()?;
        Ok(batch)
    }

    /// Encodes single sentences.
    pub fn encode_single(&self, texts: &[&str]) -> Result<Batch> {
        let pairs: Vec<(&str, Option<&str>)> = texts.iter().map(|&t| (t, None)).collect();
        self.encode(&pairs)
    }
}

/// An [`TransformerError::Tokenizer`] for the file at `path`.
fn tokenizer_error(path: &Path, message: impl Into<String>) -> TransformerError {
    TransformerError::Tokenizer {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Runs `f` (a call into the `tokenizers` library), turning a panic inside it into an error
/// naming the tokenizer file and what was being done.
fn guarded<T>(path: &Path, doing: &str, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        tokenizer_error(
            path,
            format!("the tokenizers library failed while {doing}: {why}"),
        )
    })
}
