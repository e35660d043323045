//! ONNX Runtime runs the exported graphs and gives prune's logits: tiny models of every
//! shape class (uneven heads and FFN widths per layer, a pruned hidden width, a layer that
//! lost every head and one that lost every FFN neuron) and MiniLM. Needs a Python with
//! onnxruntime and numpy in `$PRUNE_ORT_PYTHON`: `cargo xtask onnx-check` installs one
//! and runs these tests (they are ignored by a plain `cargo test`).

use prune_export::to_onnx;
use prune_tensor::rng::Rng;
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::{Batch, BertConfig, BertForSequenceClassification, BertModel, paths};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest difference allowed between ONNX Runtime's logits and prune's.
const TOLERANCE: f32 = 1e-4;

/// The Python that has onnxruntime.
fn python() -> PathBuf {
    std::env::var_os("PRUNE_ORT_PYTHON")
        .map(PathBuf::from)
        .expect("PRUNE_ORT_PYTHON: a Python with onnxruntime and numpy (cargo xtask onnx-check)")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prune-ort-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A batch of 3 rows of 9 tokens: random ids below `vocab`, the second row padded after 4
/// tokens, the third with two segments.
fn batch(vocab: usize) -> Batch {
    let (b, t) = (3, 9);
    let mut rng = Rng::new(11);
    let ids = (0..b * t).map(|_| rng.below(vocab) as u32).collect();
    let mask = (0..b * t)
        .map(|i| u32::from(!(i / t == 1 && i % t >= 4)))
        .collect();
    let types = (0..b * t)
        .map(|i| u32::from(i / t == 2 && i % t >= 5))
        .collect();
    Batch::new(b, t, ids, types, mask).unwrap()
}

/// ONNX Runtime's logits of `model` on `input` (and the operator counts of the graph it
/// optimized).
fn ort_logits(dir: &Path, model: &Path, input: &Batch) -> (Vec<f32>, serde_json::Value) {
    let as_i64 = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
    let inputs = json!({
        "batch": input.batch, "seq": input.seq,
        "input_ids": as_i64(&input.input_ids),
        "attention_mask": as_i64(&input.attention_mask),
        "token_type_ids": as_i64(&input.token_type_ids),
    });
    let inputs_path = dir.join("inputs.json");
    std::fs::write(&inputs_path, inputs.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort_logits.py");
    let run = Command::new(python())
        .arg(script)
        .arg(model)
        .arg(&inputs_path)
        .arg(dir.join("optimized.onnx"))
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let logits = out["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    (logits, out["ops"].clone())
}

/// Exports `model`, runs it in ONNX Runtime and compares the logits with prune's; returns
/// the operator counts of ONNX Runtime's optimized graph.
fn check(name: &str, model: &BertForSequenceClassification<CpuBackend>) -> serde_json::Value {
    let dir = scratch(name);
    let path = dir.join("model.onnx");
    let bytes = to_onnx(&model.bert.config, &model.bert.to_host().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let config = &model.bert.config;
    let mut input = batch(config.vocab_size);
    if config.type_vocab_size <= 1 {
        // One segment, and padding that holds the pad id, as a RoBERTa tokenizer gives.
        input.token_type_ids.fill(0);
        for (id, &m) in input.input_ids.iter_mut().zip(&input.attention_mask) {
            if m == 0 {
                *id = config.pad_token_id as u32;
            }
        }
    }
    let ours = model.logits(&input).unwrap();
    let (theirs, ops) = ort_logits(&dir, &path, &input);
    assert_eq!(ours.data().len(), theirs.len(), "{name}");
    let worst = ours
        .data()
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= TOLERANCE, "{name}: logits differ by {worst}");
    let _ = std::fs::remove_dir_all(&dir);
    ops
}

/// A tiny random classifier with `config` and every parameter drawn at random (biases and
/// LayerNorm included, so that none of them can be wired wrong unnoticed).
fn tiny(config: serde_json::Value) -> BertForSequenceClassification<CpuBackend> {
    let mut base = json!({
        "vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4,
        "intermediate_size": 24, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 20, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "num_labels": 3
    });
    for (k, v) in config.as_object().unwrap() {
        base[k] = v.clone();
    }
    let config = BertConfig::from_json(&base).unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config.clone(), true, true, 7).unwrap();
    let mut rng = Rng::new(3);
    let host = model.to_host().unwrap().map(|_, t: &Tensor<f32>| {
        Tensor::from_fn(t.dims().to_vec(), |_| (rng.normal() * 0.5) as f32)
    });
    let bert = BertModel::from_host(CpuBackend::new(), config, &host).unwrap();
    BertForSequenceClassification::new(bert).unwrap()
}

#[test]
#[ignore = "needs ONNX Runtime: cargo xtask onnx-check"]
fn every_shape_class_runs_in_onnx_runtime_with_prunes_logits() {
    check("dense", &tiny(json!({})));
    check(
        "uneven",
        &tiny(json!({"pruned_heads": {"0": [1], "2": [0, 2, 3]},
                     "prune_layer_intermediate": [24, 7, 13]})),
    );
    check("hidden", &tiny(json!({"prune_hidden_size": 11})));
    check("gelu_new", &tiny(json!({"hidden_act": "gelu_new"})));
    check("relu", &tiny(json!({"hidden_act": "relu"})));
    check(
        "distilbert",
        &tiny(json!({"model_type": "distilbert",
                     "prune_layer_intermediate": [24, 5, 24]})),
    );
    check(
        "roberta",
        &tiny(
            json!({"model_type": "roberta", "pad_token_id": 1, "type_vocab_size": 1,
                     "pruned_heads": {"1": [2]}}),
        ),
    );
    check(
        "electra",
        &tiny(json!({"model_type": "electra", "embedding_size": 10,
                     "prune_embedding_size": 7, "prune_hidden_size": 13})),
    );
    check(
        "emptied",
        &tiny(json!({"pruned_heads": {"1": [0, 1, 2, 3]},
                     "prune_layer_intermediate": [24, 24, 0]})),
    );
}

#[test]
#[ignore = "needs ONNX Runtime: cargo xtask onnx-check"]
fn minilm_runs_in_onnx_runtime_with_prunes_logits() {
    let dir = paths::require_model_dir().unwrap();
    let model =
        BertForSequenceClassification::from_pretrained(CpuBackend::new(), &dir, 2, 1).unwrap();
    let ops = check("minilm", &model);
    eprintln!("ONNX Runtime's optimized MiniLM graph: {ops}");
}
