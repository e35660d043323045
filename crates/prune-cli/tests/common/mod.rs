//! Helpers of the `prune` binary's end-to-end tests (each test binary uses a part of them).
#![allow(dead_code)]

use prune::data::default_glue_dir;
use prune::tensor::CpuBackend;
use prune::transformer::{BertConfig, BertModel, paths};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `prune` binary with `args`.
pub fn prune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prune"))
        .args(args)
        .output()
        .expect("the prune binary runs")
}

/// Runs the `prune` binary with `args` and asserts that it succeeds; returns its stdout.
pub fn prune_ok(args: &[&str]) -> String {
    let run = prune(args);
    assert!(
        run.status.success(),
        "prune {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// A fresh scratch directory for test `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prune-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny random BERT (2 layers, hidden 32, 4 heads, FFN 64) with MiniLM's vocabulary and
/// tokenizer, saved as a checkpoint directory.
pub fn tiny_checkpoint(dir: &Path) {
    let tokenizer = paths::require_model_dir()
        .expect("cargo xtask fetch")
        .join("tokenizer.json");
    let config = BertConfig::new(30522, 32, 2, 4, 64).unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config, true, false, 5).unwrap();
    model.save(dir).unwrap();
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
}

/// The `--set`s of a few-step pipeline on a tiny model.
pub const TINY_PIPELINE: [&str; 12] = [
    "common.max-train=200",
    "common.max-len=64",
    "finetune.max-steps=4",
    "finetune.lr=1e-3",
    "heads.max-steps=6",
    "heads.warmup-steps=1",
    "heads.cooldown-step=4",
    "heads.score-lr=0.5",
    "distill.max-steps=3",
    "ffn.max-steps=4",
    "ffn.interval=2",
    "ffn.rounds=2",
];

/// A tiny random RoBERTa-architecture model of `model_type` (`roberta` or `xlm-roberta`; 2
/// layers, hidden 32, 4 heads, FFN 64 with `gelu_new`, pad id 1, positions from 2, `tokens`
/// tokens) with a byte-level BPE tokenizer of the 256 bytes and RoBERTa's special tokens,
/// saved as transformers saves a pretrained model.
pub fn tiny_roberta_checkpoint(dir: &Path, model_type: &str, tokens: usize) {
    let config = BertConfig::from_json(&serde_json::json!({
        "model_type": model_type, "vocab_size": 260, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu_new",
        "layer_norm_eps": 1e-5, "max_position_embeddings": tokens + 2, "type_vocab_size": 1,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "pad_token_id": 1,
    }))
    .unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config, false, false, 5).unwrap();
    model.save(dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), byte_level_bpe().to_string()).unwrap();
}

/// A tiny random DistilBERT (2 layers, dim 32, 4 heads, FFN 64 with ReLU) with MiniLM's vocabulary and
/// tokenizer, its config in DistilBERT's own keys.
pub fn tiny_distilbert_checkpoint(dir: &Path) {
    let tokenizer = paths::require_model_dir()
        .expect("cargo xtask fetch")
        .join("tokenizer.json");
    let config = BertConfig::from_json(&serde_json::json!({
        "model_type": "distilbert", "vocab_size": 30522, "dim": 32, "n_layers": 2,
        "n_heads": 4, "hidden_dim": 64, "activation": "relu", "dropout": 0.1,
        "attention_dropout": 0.1, "seq_classif_dropout": 0.2, "max_position_embeddings": 512,
        "pad_token_id": 0, "sinusoidal_pos_embds": false,
    }))
    .unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config, false, false, 5).unwrap();
    model.save(dir).unwrap();
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
}

/// A tiny random ELECTRA (2 layers, hidden 32, 4 heads, FFN 64, embeddings of width 16
/// projected to the hidden width) with MiniLM's vocabulary and tokenizer.
pub fn tiny_electra_checkpoint(dir: &Path) {
    let tokenizer = paths::require_model_dir()
        .expect("cargo xtask fetch")
        .join("tokenizer.json");
    let mut config = BertConfig::new(30522, 32, 2, 4, 64).unwrap().to_json();
    config["model_type"] = "electra".into();
    config["embedding_size"] = 16.into();
    let config = BertConfig::from_json(&config).unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config, false, false, 5).unwrap();
    model.save(dir).unwrap();
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
}

/// A byte-level BPE `tokenizer.json` as RoBERTa's: `<s>`, `<pad>`, `</s>`, `<unk>`, then
/// one token per byte (in the byte-to-character map of byte-level BPE), no merges.
fn byte_level_bpe() -> serde_json::Value {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut vocab = serde_json::Map::new();
    let specials = ["<s>", "<pad>", "</s>", "<unk>"];
    for (i, t) in specials.iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    let mut shifted = 256;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            shifted += 1;
            shifted - 1
        };
        let token = char::from_u32(c).unwrap().to_string();
        vocab.insert(token, (specials.len() as u32 + b).into());
    }
    let added: Vec<serde_json::Value> = (specials.iter().enumerate())
        .map(|(i, t)| {
            serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": byte_level, "decoder": byte_level,
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
            "trim_offsets": true, "add_prefix_space": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "vocab": vocab, "merges": []},
    })
}

/// A GLUE directory holding the header and the first `train` / `dev` rows of SST-2.
pub fn small_sst2(dir: &Path, train: usize, dev: usize) {
    let task = dir.join("SST-2");
    std::fs::create_dir_all(&task).unwrap();
    for (file, rows) in [("train.tsv", train), ("dev.tsv", dev)] {
        let text = std::fs::read_to_string(default_glue_dir().join("SST-2").join(file)).unwrap();
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(task.join(file), head.join("\n") + "\n").unwrap();
    }
}

/// Runs `prune` with `args`, expects exit code 2 with a one-line error containing
/// `expected` and no panic; returns the error line.
pub fn prune_refuses(args: &[&str], expected: &str) -> String {
    let r = prune(args);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.status.code(), Some(2), "prune {}: {err}", args.join(" "));
    assert!(err.contains(expected), "prune {}: {err}", args.join(" "));
    assert!(!err.contains("panicked"), "prune {}: {err}", args.join(" "));
    let last = err.lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with("error: "),
        "prune {}: {err}",
        args.join(" ")
    );
    let parts: Vec<&str> = last.split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "the cause is repeated: {last}"
    );
    last
}

/// The contents of every file under `dir`, by path, to check that nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
