//! `tokenizer.json` loading: a byte-order mark is allowed, and malformed files give a clear
//! error naming the file, never a panic or a stack overflow (some of them make the
//! `tokenizers` library panic or recurse without bound).

use prune_transformer::{Padding, Tokenizer};
use serde_json::{Value, json};
use std::path::PathBuf;

/// A tiny BERT WordPiece tokenizer: special tokens, a few words and pieces.
fn tiny() -> Value {
    let vocab: serde_json::Map<String, Value> = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "film", "##s", "!",
    ]
    .iter()
    .enumerate()
    .map(|(i, w)| (w.to_string(), json!(i)))
    .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let piece = |kind: &str, id: &str, type_id: u32| json!({kind: {"id": id, "type_id": type_id}});
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"),
                         special(3, "[SEP]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("SpecialToken", "[CLS]", 0), piece("Sequence", "A", 0),
                       piece("SpecialToken", "[SEP]", 0)],
            "pair": [piece("SpecialToken", "[CLS]", 0), piece("Sequence", "A", 0),
                     piece("SpecialToken", "[SEP]", 0), piece("Sequence", "B", 1),
                     piece("SpecialToken", "[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

/// Writes `bytes` as a `tokenizer.json` of its own and loads it.
fn load(name: &str, bytes: &[u8]) -> (prune_transformer::Result<Tokenizer>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("prune-tokenizer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, bytes).unwrap();
    (Tokenizer::from_file(&path, 8, Padding::Longest), path)
}

#[test]
fn a_byte_order_mark_is_allowed() {
    let text = tiny().to_string();
    let (tok, _) = load("bom", format!("\u{feff}{text}").as_bytes());
    let batch = tok.unwrap().encode_single(&["Good films!"]).unwrap();
    assert_eq!(batch.input_ids, [2, 4, 5, 6, 7, 3]);
}

#[test]
fn malformed_files_are_clear_errors_not_panics() {
    let text = tiny().to_string();
    // A syntax error inside the decoder (the library panics on it when it parses).
    let broken = text.replace("\"prefix\":\"##\"", "\"prefix\" \"##\"");
    assert_ne!(broken, text);
    let (e, path) = load("syntax", broken.as_bytes());
    let msg = e.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "tokenizer {}: invalid JSON: expected `:`",
            path.display()
        )),
        "{msg}"
    );

    // Valid JSON the library panics on while reading it.
    let mut v = tiny();
    v["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": null});
    let (e, path) = load("precompiled", v.to_string().as_bytes());
    let msg = e.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "tokenizer {}: the tokenizers library failed while reading the file: ",
            path.display()
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");

    // A template naming a special token the file does not define.
    let mut v = tiny();
    v["post_processor"]["special_tokens"]
        .as_object_mut()
        .unwrap()
        .remove("[SEP]");
    let (e, path) = load("template", v.to_string().as_bytes());
    assert_eq!(
        e.unwrap_err().to_string(),
        format!(
            "tokenizer {}: post_processor: the template uses special token `[SEP]`, which \
             special_tokens does not define",
            path.display()
        )
    );

    // A Unigram piece long enough to overflow the stack in the library's recursive trie.
    let mut v = tiny();
    let long = format!("x{}", "a".repeat(20_000));
    v["model"] = json!({"type": "Unigram", "unk_id": 1,
                        "vocab": [["[PAD]", 0.0], ["[UNK]", 0.0], [long, -1.0]]});
    let (e, path) = load("unigram", v.to_string().as_bytes());
    assert_eq!(
        e.unwrap_err().to_string(),
        format!(
            "tokenizer {}: model: vocabulary piece 2 is 20001 bytes long, more than 1024",
            path.display()
        )
    );

    // A BPE merge whose second token is shorter than the continuing-subword prefix.
    let mut v = tiny();
    v["model"] = json!({"type": "BPE", "continuing_subword_prefix": "##",
                        "vocab": {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3, "ab": 4},
                        "merges": [["a", "b"]]});
    let (e, path) = load("merges", v.to_string().as_bytes());
    assert_eq!(
        e.unwrap_err().to_string(),
        format!(
            "tokenizer {}: model: the continuing_subword_prefix `##` (2 bytes) cannot be \
             stripped from `b`, the second token of merge 0",
            path.display()
        )
    );

    let (e, path) = load("empty", b"");
    let msg = e.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("tokenizer {}: invalid JSON", path.display())),
        "{msg}"
    );
}
