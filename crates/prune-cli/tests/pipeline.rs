//! The whole pipeline, end to end, through the `prune` binary: a tiny random BERT (with the
//! real tokenizer) on a few hundred SST-2 rows; every artifact exists and loads, and the
//! final model is smaller and evaluates. Bad input gives one line and exit code 2.

mod common;

use common::{TINY_PIPELINE, prune, prune_ok, prune_refuses, scratch, tiny_checkpoint};
use std::path::Path;

#[test]
fn the_pipeline_runs_end_to_end_on_a_tiny_model() {
    let root = scratch("pipeline");
    let model = root.join("tiny");
    tiny_checkpoint(&model);
    let out = root.join("run");
    let mut args = vec!["pipeline", "--quiet", "--latency-seconds", "0.05"];
    args.extend([
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    for s in &TINY_PIPELINE {
        args.extend(["--set", s]);
    }
    prune_ok(&args);

    for file in ["report.json", "report.md", "report.svg", "recipe.toml"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let mut accuracy = std::collections::BTreeMap::new();
    for stage in ["finetune", "heads", "distill", "ffn"] {
        let dir = out.join(stage).join("model");
        let eval = prune_ok(&["eval", "--model", dir.to_str().unwrap(), "--max-len", "64"]);
        let value = eval
            .split("accuracy ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok());
        accuracy.insert(stage, value.unwrap_or_else(|| panic!("{stage}: {eval}")));
    }
    assert!(out.join("heads/masks.safetensors").is_file());
    for export in [
        "export/teacher.onnx",
        "export/final.onnx",
        "export/final-hf/config.json",
    ] {
        assert!(out.join(export).is_file(), "{export}");
    }
    assert!(out.join("ffn/plan.json").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let (t, f) = (&report["teacher"], &report["final"]);
    assert!(
        f["params_total"].as_u64() < t["params_total"].as_u64(),
        "the final model is smaller"
    );
    assert!(f["flops_per_token"].as_f64() < t["flops_per_token"].as_f64());
    // Sizes recounted from the saved models: all parameters (`prune inspect`) and the
    // embedding tables from each config.
    for (m, stage) in [(t, "finetune"), (f, "ffn")] {
        let dir = out.join(stage).join("model");
        assert_eq!(
            Some(parameters(&dir)),
            m["params_total"].as_u64(),
            "{stage}"
        );
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let n = |k: &str| c[k].as_u64().unwrap();
        let hidden = c
            .get("prune_hidden_size")
            .map_or(n("hidden_size"), |v| v.as_u64().unwrap());
        let rows = n("vocab_size") + n("max_position_embeddings") + n("type_vocab_size");
        assert_eq!(
            m["params_embeddings"].as_u64(),
            Some((rows + 2) * hidden),
            "{stage}"
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let total = |m: &serde_json::Value| m["params_total"].as_f64().unwrap() / 1e6;
    let headline = format!("**{:.2}M → {:.2}M parameters", total(t), total(f));
    assert!(md.contains(&headline), "{md}");
    // The metrics are the saved models' own (as `prune eval` prints them, to 4 places), in
    // the headline and in every stage's row; the speed-ups are the latencies' ratios.
    for (m, stage) in [(t, "finetune"), (f, "ffn")] {
        let metric = m["metric"].as_f64().unwrap();
        assert!(
            (metric - accuracy[stage]).abs() < 5.1e-5,
            "{stage}: {metric}"
        );
        assert!(m["latency_ms_b32"].as_f64().unwrap() > 0.0);
    }
    let ms = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    for b in ["b1", "b32"] {
        let ratio = ms(t, &format!("latency_ms_{b}")) / ms(f, &format!("latency_ms_{b}"));
        let speedup = ms(f, &format!("speedup_{b}"));
        assert!(
            (speedup - ratio).abs() < 1e-9 * ratio,
            "{b}: {speedup} vs {ratio}"
        );
    }
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    for row in stages {
        let name = row["name"].as_str().unwrap();
        let metric = row["metric"].as_f64().unwrap();
        assert!((metric - accuracy[name]).abs() < 5.1e-5, "{name}: {metric}");
    }
    assert_eq!(report["exports"]["final_onnx"], "export/final.onnx");
    let ort = report["onnxruntime"].as_str().unwrap();
    assert!(
        ort.starts_with("onnxruntime ") || ort.starts_with("latency not measured: "),
        "{ort}"
    );
    let hf = prune_ok(&[
        "eval",
        "--model",
        out.join("export/final-hf").to_str().unwrap(),
        "--max-len",
        "64",
    ]);
    assert!(hf.contains("accuracy"), "{hf}");

    // An interrupted run (the folder as a run killed during the FFN stage leaves it) is
    // continued: the finished stages are kept, the rest runs, and only the same recipe
    // may continue it.
    let partial = root.join("run.partial");
    std::fs::rename(&out, &partial).unwrap();
    std::fs::remove_dir_all(partial.join("ffn")).unwrap();
    std::fs::remove_file(partial.join("report.json")).unwrap();
    let kept = std::fs::read(partial.join("distill/model/model.safetensors")).unwrap();
    let mut changed = args.clone();
    changed.extend(["--resume", "--set", "distill.lr=1e-4"]);
    prune_refuses(&changed, "cannot resume");
    let mut resume = args.clone();
    resume.push("--resume");
    let r = prune(&resume);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    for stage in ["finetune", "heads", "distill"] {
        assert!(
            err.contains(&format!("== {stage}: complete, kept")),
            "{err}"
        );
    }
    assert!(
        err.contains("== ffn: ") && err.contains(" batch-size=32 "),
        "{err}"
    );
    assert!(out.join("report.json").is_file() && !partial.exists());
    assert_eq!(
        std::fs::read(out.join("distill/model/model.safetensors")).unwrap(),
        kept
    );

    // `prune hidden` goes on from the final model: the hidden width shrinks and the cut
    // model evaluates.
    let (teacher, student) = (out.join("finetune/model"), out.join("ffn/model"));
    // The arguments of a short hidden-width run of `command` from the final model.
    let looped = |command: &str, goal: &[&str], out: &Path| -> Vec<String> {
        let mut argv = vec![command, "--quiet", "--teacher", teacher.to_str().unwrap()];
        argv.extend(["--model", student.to_str().unwrap()]);
        argv.extend(goal);
        argv.extend(["--max-steps", "2", "--interval", "1", "--rounds", "2"]);
        argv.extend([
            "--max-train",
            "100",
            "--max-len",
            "64",
            "--out",
            out.to_str().unwrap(),
        ]);
        argv.into_iter().map(String::from).collect()
    };
    let hidden = root.join("hidden");
    prune_ok(&strs(&looped(
        "hidden",
        &["--hidden-ratio", "0.25"],
        &hidden,
    )));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hidden.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["prune_hidden_size"], 24, "{config}");
    let dir = hidden.join("model");
    prune_ok(&["eval", "--model", dir.to_str().unwrap(), "--max-len", "64"]);

    // A size target instead of a ratio: the widest hidden width that fits. The target is
    // the size of the model just cut to a hidden width of 24, so 24 is the answer.
    let target = parameters(&dir).to_string();
    let sized = root.join("sized");
    let sized_args = |target: &str, out: &Path| {
        looped("ffn", &["--target-params", target, "--ffn-ratio", "0"], out)
    };
    prune_ok(&strs(&sized_args(&target, &sized)));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sized.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["prune_hidden_size"], 24, "{config}");
    assert_eq!(parameters(&sized.join("model")).to_string(), target);
    // A size no hidden width reaches is refused before any work, nothing written.
    let too_small = root.join("too-small");
    prune_refuses(
        &strs(&sized_args("1000", &too_small)),
        "no hidden width leaves at most 1000 parameters",
    );
    assert!(!too_small.exists() && !root.join("too-small.partial").exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// `v` as the `&str`s the helpers take.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// All parameters of the checkpoint in `dir`, as `prune inspect` counts them.
fn parameters(dir: &Path) -> u64 {
    let text = prune_ok(&["inspect", "--model", dir.to_str().unwrap()]);
    let line = text.lines().find(|l| l.starts_with("parameters: "));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no parameter count in {text}"))
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let root = scratch("bad");
    let recipe = root.join("bad.toml");
    std::fs::write(&recipe, "[pruning]\nsteps = 3\n").unwrap();
    let malformed = root.join("malformed.toml");
    std::fs::write(&malformed, "[heads\n").unwrap();
    let out = root.join("out");
    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec!["eval", "--model", "/nonexistent/dir"],
            "/nonexistent/dir",
        ),
        (
            vec![
                "pipeline",
                "--recipe",
                recipe.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            "unknown stage [pruning]",
        ),
        (
            vec![
                "pipeline",
                "--recipe",
                malformed.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            "malformed recipe",
        ),
        (
            vec![
                "pipeline",
                "--set",
                "heads.no-such-flag=1",
                "--out",
                out.to_str().unwrap(),
            ],
            "recipe [heads]",
        ),
        (vec!["eval", "--task", "nosuchtask"], "unknown task"),
        (
            vec![
                "heads",
                "--sparse-ratio",
                "1.5",
                "--out",
                out.to_str().unwrap(),
            ],
            "--sparse-ratio must be in [0, 1)",
        ),
    ];
    for (args, expected) in cases {
        let r = prune(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(
        !out.join("report.json").exists(),
        "no partial output that looks complete"
    );
    let _ = std::fs::remove_dir_all(&root);
}
