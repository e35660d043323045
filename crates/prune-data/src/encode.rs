//! Tokenizing a dataset once, in parallel, into unpadded [`Encoded`] examples.

use crate::batching::Encoded;
use crate::dataset::Example;
use crate::error::{DataError, Result};
use prune_transformer::{Padding, Tokenizer};

/// Examples tokenized per call of the tokenizer (which parallelises inside a call).
const CHUNK: usize = 1024;

/// Tokenizes every example with `tokenizer`'s truncation (its max length, longest-first for
/// pairs), keeping each sequence unpadded so that batches can pad dynamically.
pub fn encode_examples(tokenizer: &Tokenizer, examples: &[Example]) -> Result<Vec<Encoded>> {
    let mut tok = tokenizer.clone();
    tok.set_padding(Padding::Longest).map_err(tokenizer_error)?;
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(CHUNK) {
        let texts: Vec<(&str, Option<&str>)> = chunk
            .iter()
            .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
            .collect();
        let batch = tok.encode(&texts).map_err(tokenizer_error)?;
        let t = batch.seq;
        for (i, e) in chunk.iter().enumerate() {
            let row = i * t..(i + 1) * t;
            let len = batch.attention_mask[row.clone()]
                .iter()
                .filter(|&&m| m == 1)
                .count();
            out.push(Encoded {
                ids: batch.input_ids[row.start..row.start + len].to_vec(),
                type_ids: batch.token_type_ids[row.start..row.start + len].to_vec(),
                label: e.label,
            });
        }
    }
    Ok(out)
}

fn tokenizer_error(e: prune_transformer::TransformerError) -> DataError {
    DataError::Tokenizer(e.to_string())
}
