//! `--device cuda` through the `prune` binary (feature `cuda`; a missing GPU is a failure):
//! fine-tuning a tiny BERT on the first SST-2 rows on the GPU follows the same run on the CPU;
//! pruning it on the GPU (heads, then the FFN while distilling) removes what it should; and
//! every checkpoint the GPU writes evaluates on either device to the same figures.
#![cfg(feature = "cuda")]

mod common;

use common::{prune_ok, scratch, small_sst2, tiny_checkpoint};
use std::path::Path;

/// The flags that put `prune` on `device` with `model` and the SST-2 rows of `data`.
fn on<'a>(device: &'a str, model: &'a Path, data: &'a Path) -> [&'a str; 8] {
    [
        "--device",
        device,
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--max-len",
        "48",
    ]
}

/// `prune finetune` of `model` on the SST-2 rows of `data`, on `device`, into `out`; returns
/// summary.json.
fn finetune(model: &Path, data: &Path, device: &str, out: &Path) -> serde_json::Value {
    let mut args = vec!["finetune", "--quiet", "--out", out.to_str().unwrap()];
    args.extend(on(device, model, data));
    args.extend(["--batch-size", "16", "--max-steps", "4", "--lr", "1e-3"]);
    prune_ok(&args);
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// The dev loss `prune eval` prints for `model` on the SST-2 rows of `data`, on `device`.
fn eval_loss(model: &Path, data: &Path, device: &str) -> f64 {
    let mut args = vec!["eval"];
    args.extend(on(device, model, data));
    let text = prune_ok(&args);
    let loss = text
        .split("loss ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next());
    loss.and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no loss in `{text}`"))
}

/// Asserts that `model` evaluates to the same dev loss on the CPU and on the GPU.
fn evaluates_alike(model: &Path, data: &Path) {
    let (on_cpu, on_gpu) = (
        eval_loss(model, data, "cpu"),
        eval_loss(model, data, "cuda"),
    );
    let rel = (on_cpu - on_gpu).abs() / on_cpu.abs().max(1e-6);
    assert!(rel <= 1e-3, "{}: {on_cpu} vs {on_gpu}", model.display());
}

/// The JSON config of the checkpoint in `dir`.
fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn finetuning_and_pruning_on_the_gpu() {
    let root = scratch("cuda");
    let model = root.join("tiny");
    tiny_checkpoint(&model);
    let data = root.join("glue");
    small_sst2(&data, 96, 64);

    // Fine-tuning follows the CPU run.
    let cpu = finetune(&model, &data, "cpu", &root.join("cpu"));
    let gpu = finetune(&model, &data, "cuda", &root.join("gpu"));
    assert_eq!(cpu["steps"], gpu["steps"]);
    assert_eq!(cpu["examples"], gpu["examples"]);
    let rel = |a: &serde_json::Value, b: &serde_json::Value| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        (a - b).abs() / a.abs().max(1e-6)
    };
    let train = rel(&cpu["final_loss"], &gpu["final_loss"]);
    assert!(
        train <= 1e-3,
        "training loss differs by {train:e} (relative)"
    );
    let dev = rel(&cpu["evaluation"]["loss"], &gpu["evaluation"]["loss"]);
    assert!(dev <= 1e-3, "dev loss differs by {dev:e} (relative)");
    let teacher = root.join("gpu").join("model");
    evaluates_alike(&teacher, &data);

    // Half the heads of every layer, then three quarters of the FFN in two rounds.
    let heads = root.join("heads");
    let mut args = vec!["heads", "--quiet", "--out", heads.to_str().unwrap()];
    args.extend(on("cuda", &teacher, &data));
    args.extend([
        "--sparse-ratio",
        "0.5",
        "--max-steps",
        "6",
        "--warmup-steps",
        "1",
    ]);
    args.extend([
        "--cooldown-step",
        "4",
        "--score-lr",
        "0.5",
        "--batch-size",
        "16",
    ]);
    prune_ok(&args);
    let ffn = root.join("ffn");
    let student = heads.join("model");
    let mut args = vec!["ffn", "--quiet", "--out", ffn.to_str().unwrap()];
    args.extend(on("cuda", &student, &data));
    args.extend([
        "--teacher",
        teacher.to_str().unwrap(),
        "--ffn-ratio",
        "0.75",
    ]);
    args.extend([
        "--max-steps",
        "4",
        "--interval",
        "2",
        "--rounds",
        "2",
        "--batch-size",
        "16",
    ]);
    prune_ok(&args);
    let pruned = ffn.join("model");
    let c = config(&pruned);
    // One FFN width in every layer is transformers' own `intermediate_size`.
    assert_eq!(c["intermediate_size"], serde_json::json!(16), "{c}");
    assert!(c.get("prune_layer_intermediate").is_none(), "{c}");
    for layer in ["0", "1"] {
        assert_eq!(
            c["pruned_heads"][layer].as_array().map(Vec::len),
            Some(2),
            "{c}"
        );
    }
    evaluates_alike(&pruned, &data);
    let _ = std::fs::remove_dir_all(&root);
}
