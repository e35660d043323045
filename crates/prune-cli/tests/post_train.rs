//! `prune post-train` end to end on a tiny classifier and a slice of SST-2: the pruned
//! model, its plan and summary within the budget, several ratios from one importance pass,
//! and refusals before anything is written.

mod common;

use common::{prune_ok, prune_refuses, scratch, small_sst2, snapshot};
use prune::tensor::CpuBackend;
use prune::transformer::{BertConfig, BertModel, paths};
use serde_json::Value;
use std::path::Path;

/// A tiny random classifier (2 labels) with MiniLM's vocabulary and tokenizer.
fn tiny_classifier(dir: &Path) {
    let mut config = BertConfig::new(30522, 32, 2, 4, 64).unwrap();
    config.num_labels = Some(2);
    let model = BertModel::random(CpuBackend::<f32>::new(), config, true, true, 5).unwrap();
    model.save(dir).unwrap();
    let tokenizer = paths::require_model_dir().unwrap().join("tokenizer.json");
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn post_training_prunes_within_the_budget() {
    let root = scratch("post-train");
    let (model, data) = (root.join("model"), root.join("glue"));
    tiny_classifier(&model);
    small_sst2(&data, 200, 40);
    let before = snapshot(&model);
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let common = [
        "post-train",
        "--model",
        m,
        "--data",
        d,
        "--task",
        "sst2",
        "--samples",
        "64",
        "--batch-size",
        "16",
        "--latency-seconds",
        "0",
    ];
    let one = root.join("one");
    let mut args = common.to_vec();
    args.extend(["--flops-ratio", "0.5", "--out", one.to_str().unwrap()]);
    prune_ok(&args);
    let s = json(&one.join("summary.json"));
    let ratio = s["flops_ratio"].as_f64().unwrap();
    assert!(ratio <= 0.5 && ratio > 0.3, "{s}");
    assert!((0.0..=1.0).contains(&s["metric"].as_f64().unwrap()), "{s}");
    assert_eq!(s["examples"], 64);
    // The head refit runs by default and never raises the logits' error.
    let head = &s["pruning"]["head"]["error"];
    assert!(
        head[1].as_f64().unwrap() <= head[0].as_f64().unwrap(),
        "{s}"
    );
    let pruned = json(&one.join("model/config.json"));
    let heads: Vec<u64> = s["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let removed: usize = (0..2)
        .map(|l| {
            pruned["pruned_heads"][l.to_string()]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(removed as u64 + heads.iter().sum::<u64>(), 8, "{pruned}");
    assert!(one.join("plan.json").is_file() && one.join("model/tokenizer.json").is_file());
    // The pipeline's report, on the input and the pruned model, with their exports.
    let report = json(&one.join("report.json"));
    assert_eq!(report["final"]["metric"], s["metric"], "{report}");
    assert_eq!(report["teacher"]["metric"], s["teacher_metric"], "{report}");
    assert_eq!(report["final"]["params_total"], s["params"][1], "{report}");
    assert_eq!(report["stages"][0]["name"], "post-train");
    for f in [
        "report.md",
        "report.svg",
        "export/teacher.onnx",
        "export/final.onnx",
    ] {
        assert!(one.join(f).is_file(), "{f}");
    }

    let two = root.join("two");
    let mut args = common.to_vec();
    args.extend([
        "--flops-ratio",
        "0.4,0.8",
        "--no-tune",
        "--no-refit-head",
        "--out",
        two.to_str().unwrap(),
    ]);
    prune_ok(&args);
    let list = json(&two.join("summary.json"));
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    for (dir, r) in [("ratio-0.40", 0.4), ("ratio-0.80", 0.8)] {
        let s = json(&two.join(dir).join("summary.json"));
        assert!(s["flops_ratio"].as_f64().unwrap() <= r, "{s}");
        assert!(s["pruning"]["tune"].is_null(), "{s}");
        assert!(s["pruning"]["head"].is_null(), "{s}");
        assert!(two.join(dir).join("model/model.safetensors").is_file());
        let report = json(&two.join(dir).join("report.json"));
        assert_eq!(report["exports"]["teacher_onnx"], "../export/teacher.onnx");
        assert!(two.join(dir).join("export/final.onnx").is_file());
    }
    // The input model is exported once for all ratios.
    assert!(two.join("export/teacher.onnx").is_file());

    // A latency budget: sub-layers timed here (ratio 1: reachable whatever the timings).
    let three = root.join("three");
    let mut args = common.to_vec();
    args.extend([
        "--latency-ratio",
        "1",
        "--latency-batch",
        "4",
        "--latency-seq",
        "16",
    ]);
    args.extend(["--out", three.to_str().unwrap()]);
    prune_ok(&args);
    let s = json(&three.join("summary.json"));
    assert_eq!(s["budget"], "latency", "{s}");
    assert!(s["budget_ratio"].as_f64().unwrap() <= 1.0 + 1e-9, "{s}");
    assert_eq!(
        s["latency_table"]["heads"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(s["latency_table"]["batch"], 4);

    // Timings read from a file: 1 head 3 ms, each more 1 ms; up to 16 neurons 2 ms, each
    // more 1.5 ms per 16. Every layer keeps at least 3 + 2 of its 6 + 6.5 ms: 0.4.
    let table = serde_json::json!({
        "batch": 8, "seq": 32, "seconds": 1.0,
        "heads": [[1, 3.0], [2, 4.0], [3, 5.0], [4, 6.0]],
        "neurons": [[16, 2.0], [32, 3.5], [48, 5.0], [64, 6.5]],
    });
    let table_file = root.join("table.json");
    std::fs::write(&table_file, table.to_string()).unwrap();
    let t = table_file.to_str().unwrap();
    let four = root.join("four");
    let mut args = common.to_vec();
    args.extend(["--latency-ratio", "0.6", "--latency-table", t]);
    args.extend(["--out", four.to_str().unwrap()]);
    prune_ok(&args);
    let s = json(&four.join("summary.json"));
    let kept = s["budget_ratio"].as_f64().unwrap();
    assert!((0.4..=0.6 + 1e-9).contains(&kept), "{s}");
    assert_eq!(s["latency_table"], table, "{s}");
    assert!(
        s["heads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h.as_u64() >= Some(1))
    );
    let refused = root.join("refused");
    for (ratio, why) in [
        ("0.3", "cannot be met"),
        ("0.3,0.6", "keeps 0.400 of its latency"),
    ] {
        let mut args = common.to_vec();
        args.extend(["--latency-ratio", ratio, "--latency-table", t]);
        args.extend(["--out", refused.to_str().unwrap()]);
        prune_refuses(&args, why);
        assert!(!refused.exists());
    }
    let mut bad = table.clone();
    bad["heads"][3][0] = 5.into();
    std::fs::write(&table_file, bad.to_string()).unwrap();
    for (extra, why) in [
        (
            vec!["--latency-ratio", "0.6", "--latency-table", t],
            "1..=4",
        ),
        (
            vec!["--flops-ratio", "0.6", "--latency-table", t],
            "--latency-ratio",
        ),
    ] {
        let mut args = common.to_vec();
        args.extend(extra);
        args.extend(["--out", refused.to_str().unwrap()]);
        prune_refuses(&args, why);
        assert!(!refused.exists());
    }

    for (ratios, why) in [
        ("0", "--flops-ratio must be in (0, 1]"),
        ("1.5", "--flops-ratio must be in (0, 1]"),
        ("0.5,0.5", "the same ratio twice"),
    ] {
        for option in ["--flops-ratio", "--latency-ratio"] {
            let mut args = common.to_vec();
            args.extend([option, ratios, "--out", refused.to_str().unwrap()]);
            prune_refuses(&args, &why.replace("--flops-ratio", option));
            assert!(!refused.exists());
        }
    }
    for (extra, why) in [
        (["--latency-batch", "0"], "--latency-batch"),
        (["--latency-seconds", "inf"], "--latency-seconds"),
        (["--flops-ratio", "0.5"], "cannot be used with"),
    ] {
        let mut args = common.to_vec();
        args.extend(["--latency-ratio", "0.5", "--out", refused.to_str().unwrap()]);
        args.extend(extra);
        prune_refuses(&args, why);
        assert!(!refused.exists());
    }
    let mut args = common.to_vec();
    args.extend(["--flops-ratio", "0.5", "--out", m]);
    prune_refuses(&args, "--model");
    assert_eq!(snapshot(&model), before);
    let _ = std::fs::remove_dir_all(&root);
}
