//! The pipeline on other architectures of the BERT family: tiny random RoBERTa and XLM-R
//! models (byte-level BPE tokenizer, `gelu_new`), a tiny random DistilBERT (ReLU) and a tiny
//! random ELECTRA (embeddings projected to the hidden width, a GELU head) go through every
//! stage (finetune, heads, distill, ffn, then hidden) and the exports, and
//! every model written is a checkpoint of the same family and class that loads and
//! evaluates.

mod common;

use common::{
    TINY_PIPELINE, prune_ok, prune_refuses, scratch, tiny_distilbert_checkpoint,
    tiny_electra_checkpoint, tiny_roberta_checkpoint,
};
use std::path::Path;

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn accuracy(dir: &Path) -> f64 {
    let eval = prune_ok(&["eval", "--model", dir.to_str().unwrap(), "--max-len", "64"]);
    let value = eval.split("accuracy ").nth(1);
    value
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{}: {eval}", dir.display()))
}

/// The `prune pipeline` arguments of a short run from `model` into `out`.
fn pipeline_args(model: &Path, out: &Path) -> Vec<String> {
    let mut args = vec!["pipeline", "--quiet", "--latency-seconds", "0.05"];
    args.extend(["--model", model.to_str().unwrap()]);
    args.extend(["--out", out.to_str().unwrap()]);
    for s in &TINY_PIPELINE {
        args.extend(["--set", s]);
    }
    args.into_iter().map(String::from).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs the pipeline and then the hidden-width stage on the checkpoint `model` of
/// `model_type` (transformers' class `class`), checking every model written.
fn every_stage_keeps_the_family(root: &Path, model: &Path, model_type: &str, class: &str) {
    let out = root.join("run");
    prune_ok(&strs(&pipeline_args(model, &out)));
    for stage in ["finetune", "heads", "distill", "ffn"] {
        let dir = out.join(stage).join("model");
        let c = config(&dir);
        assert_eq!(c["model_type"], model_type, "{stage}");
        assert_eq!(c["architectures"][0], class, "{stage}");
        assert!((0.0..=1.0).contains(&accuracy(&dir)), "{stage}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let (t, f) = (&report["teacher"], &report["final"]);
    assert!(f["params_total"].as_u64() < t["params_total"].as_u64());
    assert!(out.join("export/final.onnx").is_file());
    let hf = out.join("export/final-hf");
    assert_eq!(config(&hf)["model_type"], model_type);
    assert_eq!(
        accuracy(&hf),
        accuracy(&out.join("ffn/model")),
        "the transformers export evaluates as the model it exports"
    );

    let hidden = root.join("hidden");
    let (teacher, student) = (out.join("finetune/model"), out.join("ffn/model"));
    let mut argv = vec!["hidden", "--quiet", "--hidden-ratio", "0.25"];
    argv.extend(["--teacher", teacher.to_str().unwrap()]);
    argv.extend(["--model", student.to_str().unwrap()]);
    argv.extend(["--max-steps", "2", "--interval", "1", "--rounds", "2"]);
    argv.extend(["--max-train", "100", "--max-len", "64"]);
    argv.extend(["--out", hidden.to_str().unwrap()]);
    prune_ok(&argv);
    let c = config(&hidden.join("model"));
    assert_eq!(c["model_type"], model_type);
    assert_eq!(c["prune_hidden_size"], 24);
    accuracy(&hidden.join("model"));
    let student = config(&student);
    for key in ["embedding_size", "prune_embedding_size"] {
        assert_eq!(c.get(key), student.get(key), "the hidden stage keeps {key}");
    }
}

#[test]
fn the_pipeline_runs_end_to_end_on_a_tiny_roberta() {
    let root = scratch("roberta");
    // The report times models at 128 tokens: a model covering fewer is refused up front.
    let short = root.join("short-roberta");
    tiny_roberta_checkpoint(&short, "roberta", 64);
    let out = root.join("run");
    prune_refuses(
        &strs(&pipeline_args(&short, &out)),
        "positions cover only 64",
    );
    assert!(!out.exists() && !root.join("run.partial").exists());

    let model = root.join("tiny-roberta");
    tiny_roberta_checkpoint(&model, "roberta", 128);
    every_stage_keeps_the_family(&root, &model, "roberta", "RobertaForSequenceClassification");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_pipeline_runs_end_to_end_on_a_tiny_xlm_roberta() {
    let root = scratch("xlm-roberta");
    let model = root.join("tiny-xlm-roberta");
    tiny_roberta_checkpoint(&model, "xlm-roberta", 128);
    let class = "XLMRobertaForSequenceClassification";
    every_stage_keeps_the_family(&root, &model, "xlm-roberta", class);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_pipeline_runs_end_to_end_on_a_tiny_distilbert() {
    let root = scratch("distilbert");
    let model = root.join("tiny-distilbert");
    tiny_distilbert_checkpoint(&model);
    let class = "DistilBertForSequenceClassification";
    every_stage_keeps_the_family(&root, &model, "distilbert", class);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_pipeline_runs_end_to_end_on_a_tiny_electra() {
    let root = scratch("electra");
    let model = root.join("tiny-electra");
    tiny_electra_checkpoint(&model);
    let class = "ElectraForSequenceClassification";
    every_stage_keeps_the_family(&root, &model, "electra", class);
    let hf = config(&root.join("run/export/final-hf"));
    assert_eq!(
        (&hf["embedding_size"], &hf["hidden_size"]),
        (&16.into(), &32.into())
    );
    let hidden = root.join("hidden/model");
    let text = prune_ok(&["inspect", "--model", hidden.to_str().unwrap()]);
    assert!(text.contains("hidden 24 (of 32)"), "{text}");
    assert!(
        text.contains("embeddings 16 wide (of 16), projected"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
