//! `--device cuda` through the `prune` binary (feature `cuda`; a missing GPU is a failure):
//! fine-tuning a tiny BERT on the first SST-2 rows on the GPU follows the same run on the CPU,
//! and the GPU's checkpoint evaluates on either device to the same figures.
#![cfg(feature = "cuda")]

mod common;

use common::{prune_ok, scratch, tiny_checkpoint};
use prune::data::default_glue_dir;
use std::path::Path;

/// A GLUE directory holding the header and the first `train` / `dev` rows of SST-2.
fn small_sst2(dir: &Path, train: usize, dev: usize) {
    let task = dir.join("SST-2");
    std::fs::create_dir_all(&task).unwrap();
    for (file, rows) in [("train.tsv", train), ("dev.tsv", dev)] {
        let text = std::fs::read_to_string(default_glue_dir().join("SST-2").join(file)).unwrap();
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(task.join(file), head.join("\n") + "\n").unwrap();
    }
}

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

#[test]
fn finetuning_on_the_gpu_follows_the_cpu() {
    let root = scratch("cuda");
    let model = root.join("tiny");
    tiny_checkpoint(&model);
    let data = root.join("glue");
    small_sst2(&data, 96, 64);
    let cpu = finetune(&model, &data, "cpu", &root.join("cpu"));
    let gpu = finetune(&model, &data, "cuda", &root.join("gpu"));
    assert_eq!(cpu["steps"], gpu["steps"]);
    assert_eq!(cpu["examples"], gpu["examples"]);
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-6);
    let (c, g) = (&cpu["final_loss"], &gpu["final_loss"]);
    let train = rel(c.as_f64().unwrap(), g.as_f64().unwrap());
    assert!(
        train <= 1e-3,
        "training loss differs by {train:e} (relative): {c} vs {g}"
    );
    let (c, g) = (&cpu["evaluation"], &gpu["evaluation"]);
    let loss = rel(c["loss"].as_f64().unwrap(), g["loss"].as_f64().unwrap());
    assert!(
        loss <= 1e-3,
        "dev loss differs by {loss:e} (relative): {c} vs {g}"
    );
    let trained = root.join("gpu").join("model");
    let (on_cpu, on_gpu) = (
        eval_loss(&trained, &data, "cpu"),
        eval_loss(&trained, &data, "cuda"),
    );
    assert!(rel(on_cpu, on_gpu) <= 1e-3, "{on_cpu} vs {on_gpu}");
    let _ = std::fs::remove_dir_all(&root);
}
