//! Checks of a `tokenizer.json` document for what the `tokenizers` library trusts without
//! checking and would panic or overflow the stack on: special tokens a template uses but does
//! not define, BPE merges whose second token is shorter than the continuing-subword prefix
//! the library strips from it, and Unigram pieces so long that the library's recursive trie
//! overflows the stack when it is dropped or cloned.

use crate::error::one_line;
use serde_json::Value;

/// Longest Unigram vocabulary piece accepted, in bytes (SentencePiece's own limit is 16
/// characters by default; the library's trie recurses once per byte).
pub(super) const MAX_PIECE_BYTES: usize = 1024;

/// Checks the post-processor and the model of a `tokenizer.json` document; the error says
/// which section is wrong and why.
pub(super) fn check(doc: &Value) -> Result<(), String> {
    if let Some(p) = doc.get("post_processor") {
        check_templates(p).map_err(|e| format!("post_processor: {e}"))?;
    }
    if let Some(m) = doc.get("model") {
        check_pieces(m)
            .and_then(|()| check_merges(m))
            .map_err(|e| format!("model: {e}"))?;
    }
    Ok(())
}

/// Checks that the continuing-subword prefix's length in bytes can be sliced off the second
/// token of every BPE merge (`["a", "b"]` or `"a b"`), as the library does unchecked.
fn check_merges(model: &Value) -> Result<(), String> {
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if model.get("type").and_then(Value::as_str) != Some("BPE") || prefix.is_empty() {
        return Ok(());
    }
    let merges = model.get("merges").and_then(Value::as_array);
    for (i, merge) in merges.into_iter().flatten().enumerate() {
        let second = match merge {
            Value::Array(pair) => pair.get(1).and_then(Value::as_str),
            Value::String(s) => s.split_once(' ').map(|(_, b)| b),
            _ => None,
        };
        if let Some(b) = second
            && b.get(prefix.len()..).is_none()
        {
            return Err(format!(
                "the continuing_subword_prefix `{}` ({} bytes) cannot be stripped from `{}`, \
                 the second token of merge {i}",
                one_line(prefix),
                prefix.len(),
                one_line(b)
            ));
        }
    }
    Ok(())
}

/// Checks that no piece of a Unigram vocabulary (`[[piece, score], ...]`) is longer than
/// [`MAX_PIECE_BYTES`].
fn check_pieces(model: &Value) -> Result<(), String> {
    if model.get("type").and_then(Value::as_str) != Some("Unigram") {
        return Ok(());
    }
    let pieces = model
        .get("vocab")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, entry)| Some((i, entry.get(0)?.as_str()?)));
    for (i, piece) in pieces {
        if piece.len() > MAX_PIECE_BYTES {
            return Err(format!(
                "vocabulary piece {i} is {} bytes long, more than {MAX_PIECE_BYTES}",
                piece.len()
            ));
        }
    }
    Ok(())
}

/// Checks a `TemplateProcessing` post-processor (or those of a `Sequence` of them) for what
/// the library trusts without checking: every special token a template uses is defined
/// (encoding would panic otherwise).
fn check_templates(processor: &Value) -> Result<(), String> {
    match processor.get("type").and_then(Value::as_str) {
        Some("Sequence") => processor
            .get("processors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .try_for_each(check_templates),
        Some("TemplateProcessing") => {
            let defined = processor.get("special_tokens").and_then(Value::as_object);
            let pieces = ["single", "pair"]
                .into_iter()
                .filter_map(|key| processor.get(key).and_then(Value::as_array))
                .flatten();
            for piece in pieces {
                let id = piece
                    .get("SpecialToken")
                    .and_then(|t| t.get("id"))
                    .and_then(Value::as_str);
                if let Some(id) = id
                    && !defined.is_some_and(|d| d.contains_key(id))
                {
                    return Err(format!(
                        "the template uses special token `{}`, which special_tokens does not \
                         define",
                        one_line(id)
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
