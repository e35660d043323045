//! `Batch`: the token-level inputs of one forward pass (ids, token types, attention mask),
//! row-major over `[B, T]`.

use crate::error::{Result, TransformerError};

/// Token ids, token type ids and attention mask of B sequences padded to T tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T.
    pub seq: usize,
    /// Token ids, `[B·T]`.
    pub input_ids: Vec<u32>,
    /// Token type (segment) ids, `[B·T]`.
    pub token_type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding, `[B·T]`.
    pub attention_mask: Vec<u32>,
}

impl Batch {
    /// A batch from its parts; fails unless every vector has `batch · seq` entries and the
    /// mask holds only 0 and 1.
    pub fn new(
        batch: usize,
        seq: usize,
        input_ids: Vec<u32>,
        token_type_ids: Vec<u32>,
        attention_mask: Vec<u32>,
    ) -> Result<Self> {
        let b = Batch {
            batch,
            seq,
            input_ids,
            token_type_ids,
            attention_mask,
        };
        b.check()?;
        Ok(b)
    }

    /// Checks lengths and mask values.
    pub fn check(&self) -> Result<()> {
        let n = self.batch * self.seq;
        if n == 0 {
            return Err(TransformerError::Input(format!(
                "empty batch ({} sequences of {} tokens)",
                self.batch, self.seq
            )));
        }
        for (what, len) in [
            ("input_ids", self.input_ids.len()),
            ("token_type_ids", self.token_type_ids.len()),
            ("attention_mask", self.attention_mask.len()),
        ] {
            if len != n {
                return Err(TransformerError::Input(format!(
                    "{what} has {len} entries, expected B·T = {}·{} = {n}",
                    self.batch, self.seq
                )));
            }
        }
        if let Some(v) = self.attention_mask.iter().find(|&&v| v > 1) {
            return Err(TransformerError::Input(format!(
                "attention_mask holds {v}; only 0 and 1 are allowed"
            )));
        }
        Ok(())
    }

    /// Number of tokens B·T.
    pub fn tokens(&self) -> usize {
        self.batch * self.seq
    }
}
