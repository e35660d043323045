//! The pipeline on another architecture of the BERT family: a tiny random RoBERTa with a
//! byte-level BPE tokenizer goes through every stage (finetune, heads, distill, ffn, then
//! hidden) and the exports, and every model it writes is a RoBERTa checkpoint that loads
//! and evaluates.

mod common;

use common::{TINY_PIPELINE, prune_ok, prune_refuses, scratch, tiny_roberta_checkpoint};
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

#[test]
fn the_pipeline_runs_end_to_end_on_a_tiny_roberta() {
    let root = scratch("roberta");
    let model = root.join("tiny-roberta");
    let out = root.join("run");
    let args = |model: &Path| {
        let mut args = vec!["pipeline", "--quiet", "--latency-seconds", "0.05"];
        args.extend(["--model", model.to_str().unwrap()]);
        args.extend(["--out", out.to_str().unwrap()]);
        for s in &TINY_PIPELINE {
            args.extend(["--set", s]);
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // The report times models at 128 tokens: a model covering fewer is refused up front.
    let short = root.join("short-roberta");
    tiny_roberta_checkpoint(&short, 64);
    let argv = args(&short);
    prune_refuses(
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
        "positions cover only 64",
    );
    assert!(!out.exists() && !root.join("run.partial").exists());

    tiny_roberta_checkpoint(&model, 128);
    let argv = args(&model);
    prune_ok(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    for stage in ["finetune", "heads", "distill", "ffn"] {
        let dir = out.join(stage).join("model");
        let c = config(&dir);
        assert_eq!(c["model_type"], "roberta", "{stage}");
        assert_eq!(c["architectures"][0], "RobertaForSequenceClassification");
        assert!((0.0..=1.0).contains(&accuracy(&dir)), "{stage}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let (t, f) = (&report["teacher"], &report["final"]);
    assert!(f["params_total"].as_u64() < t["params_total"].as_u64());
    assert!(out.join("export/final.onnx").is_file());
    let hf = out.join("export/final-hf");
    assert_eq!(config(&hf)["model_type"], "roberta");
    assert_eq!(
        accuracy(&hf),
        accuracy(&out.join("ffn/model")),
        "the transformers export evaluates as the model it exports"
    );

    let hidden = root.join("hidden");
    let (teacher, student) = (out.join("finetune/model"), out.join("ffn/model"));
    prune_ok(&[
        "hidden",
        "--quiet",
        "--teacher",
        teacher.to_str().unwrap(),
        "--model",
        student.to_str().unwrap(),
        "--hidden-ratio",
        "0.25",
        "--max-steps",
        "2",
        "--interval",
        "1",
        "--rounds",
        "2",
        "--max-train",
        "100",
        "--max-len",
        "64",
        "--out",
        hidden.to_str().unwrap(),
    ]);
    let c = config(&hidden.join("model"));
    assert_eq!(
        (c["model_type"].as_str(), c["prune_hidden_size"].as_u64()),
        (Some("roberta"), Some(24))
    );
    accuracy(&hidden.join("model"));
    let _ = std::fs::remove_dir_all(&root);
}
