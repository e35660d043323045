//! User files are safe and bad options are refused up front, through the `prune` binary: an
//! output folder never overlaps an input nor overwrites a finished run, two runs never share
//! one, a resumed run must be the same run (and then ends bit-identical to an uninterrupted
//! one), and every option is checked before anything is written.

mod common;

use common::{prune, prune_ok, prune_refuses, scratch, small_sst2, snapshot, tiny_checkpoint};
use prune::pruners::{Blocking, Masks, ParamMask};
use prune::train::{RunDir, RunIdentity};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `--model`, `--data` and `--max-len` for a tiny model on the small SST-2 copy.
fn io<'a>(model: &'a Path, data: &'a Path) -> Vec<&'a str> {
    vec![
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--max-len",
        "32",
        "--quiet",
    ]
}

/// `prune finetune` for `steps` steps (with `extra` flags) into `out`.
fn finetune(model: &Path, data: &Path, out: &Path, steps: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["finetune"];
    args.extend(io(model, data));
    args.extend(["--max-steps", steps, "--out", out.to_str().unwrap()]);
    args.extend(extra);
    args.iter().map(|s| s.to_string()).collect()
}

fn run_ok(args: &[String]) -> String {
    prune_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn refuses(args: &[String], expected: &str) -> String {
    prune_refuses(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        expected,
    )
}

#[test]
fn outputs_never_overlap_inputs_nor_overwrite_finished_runs() {
    let root = scratch("overlap");
    let data = root.join("glue");
    small_sst2(&data, 64, 16);
    let model = root.join("m").join("model");
    tiny_checkpoint(&model);
    let teacher = root.join("teacher");
    run_ok(&finetune(&model, &data, &teacher, "2", &[]));
    let fine = teacher.join("model");
    let before = snapshot(&root);

    // The parent of the input model (the case that once truncated its tokenizer), the
    // model folder itself, and a folder inside it.
    for out in [root.join("m"), model.clone(), model.join("sub")] {
        refuses(
            &finetune(&model, &data, &out, "2", &[]),
            "the input --model",
        );
    }
    let mut heads = vec!["heads".to_string()];
    heads.extend(io(&fine, &data).iter().map(|s| s.to_string()));
    heads.extend(["--max-steps", "2", "--sparse-ratio", "0.5", "--out"].map(String::from));
    for out in [&teacher, &fine] {
        let mut args = heads.clone();
        args.push(out.to_str().unwrap().into());
        refuses(&args, "the input --model");
    }
    let masks = root.join("masks.safetensors");
    let cut = root.join("cut");
    let speedup = |model: &Path, out: &Path| {
        vec![
            "speedup".to_string(),
            "--model".into(),
            model.to_str().unwrap().into(),
            "--masks".into(),
            masks.to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    head_masks(&masks, 1.0);
    refuses(&speedup(&fine, &teacher), "the input --model");
    // A finished run's output is never written again.
    refuses(
        &finetune(&model, &data, &teacher, "2", &[]),
        "already exists",
    );
    std::fs::remove_file(&masks).unwrap();
    assert_eq!(
        snapshot(&root),
        before,
        "no input and no earlier output changed"
    );

    // Masks that remove no whole structure give an error, not a silently identical copy.
    head_masks(&masks, 0.5);
    refuses(
        &speedup(&fine, &cut),
        "no whole head, FFN neuron or hidden channel",
    );
    assert!(!cut.exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// Masks on layer 0's query weight of the tiny model (32 × 32, 4 heads of 8 rows): with
/// `fraction` 1 the whole first head's rows (removable), below 1 only that fraction of one
/// row's elements (nothing structural).
fn head_masks(path: &Path, fraction: f64) {
    let name = "encoder.layer.0.attention.self.query.weight";
    let mut keep = vec![true; 32 * 32];
    let cut = if fraction >= 1.0 {
        8 * 32
    } else {
        (32.0 * fraction) as usize
    };
    keep[..cut].iter_mut().for_each(|k| *k = false);
    let mut masks = Masks::new();
    let blocking = Blocking::new(vec![32, 32], vec![1, 1]).unwrap();
    masks.insert(name, ParamMask::new(name, blocking, keep).unwrap());
    masks.save(path).unwrap();
}

#[test]
fn a_run_owns_its_output_folder() {
    let root = scratch("owned");
    let data = root.join("glue");
    small_sst2(&data, 64, 16);
    let model = root.join("model");
    tiny_checkpoint(&model);
    let out = root.join("out");
    {
        // Another run holds the folder: the second fails at once and leaves it alone.
        let other = RunDir::claim(&out, &[], &RunIdentity::new("finetune"), false).unwrap();
        std::fs::write(other.path().join("theirs.txt"), "x").unwrap();
        refuses(
            &finetune(&model, &data, &out, "2", &[]),
            "another run is writing",
        );
        assert!(other.path().join("theirs.txt").is_file());
    }
    let summary = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
    };
    run_ok(&finetune(&model, &data, &out, "3", &[]));
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(log.matches("\"kind\":\"train\"").count(), 1, "{log}");
    assert_eq!(summary(&out)["steps"], 3);
    assert!(!out.join("checkpoints").exists(), "resume state is dropped");
    let _ = std::fs::remove_dir_all(&root);
}

/// Starts `args`, waits until its work folder has a checkpoint past step 1, then kills it
/// (SIGKILL).
fn kill_after_a_checkpoint(args: &[String], out: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prune"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = prune::train::run_dir::work_dir_of(out).join("checkpoints/latest");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let step = std::fs::read_to_string(&latest).unwrap_or_default();
        if step
            .trim()
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
            > Some(1)
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_killed_run_resumes_only_as_the_same_run_and_ends_bit_identical() {
    let root = scratch("resume");
    let data = root.join("glue");
    small_sst2(&data, 256, 16);
    let model = root.join("model");
    tiny_checkpoint(&model);
    // Another model: the same weights under another config.
    let other_model = root.join("other");
    tiny_checkpoint(&other_model);
    let config = other_model.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"layer_norm_eps\": 1e-12", "\"layer_norm_eps\": 1e-6"),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&config).unwrap(), text);
    let flags = [
        "--checkpoint-every",
        "1",
        "--batch-size",
        "8",
        "--epochs",
        "3",
    ];
    let straight = root.join("straight");
    run_ok(&finetune(&model, &data, &straight, "90", &flags));

    let out = root.join("killed");
    kill_after_a_checkpoint(&finetune(&model, &data, &out, "90", &flags), &out);
    refuses(
        &finetune(&model, &data, &out, "90", &flags),
        "pass --resume",
    );
    let mut resumed = finetune(&model, &data, &out, "90", &flags);
    resumed.push("--resume".into());
    let mut other_batch = resumed.clone();
    let at = other_batch.iter().position(|a| a == "8").unwrap();
    other_batch[at] = "16".into();
    refuses(&other_batch, "train.batch_size was 8, now 16");
    refuses(
        &finetune(
            &other_model,
            &data,
            &out,
            "90",
            &[&flags[..], &["--resume"]].concat(),
        ),
        "model was",
    );
    run_ok(&resumed);
    let weights = |dir: &Path| std::fs::read(dir.join("model/model.safetensors")).unwrap();
    assert!(
        weights(&out) == weights(&straight),
        "the resumed run ends where the straight one does"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 90, "{summary}");
    assert!(summary["resumed_from_step"].as_u64() > Some(1), "{summary}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn options_are_checked_before_anything_is_written() {
    let root = scratch("options");
    let out = root.join("out");
    let o = out.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 11] = [
        (
            vec!["finetune", "--checkpoint-every", "0", "--out", o],
            "checkpoint_every",
        ),
        (
            vec!["finetune", "--eval-every", "0", "--out", o],
            "eval_every",
        ),
        (
            vec!["finetune", "--weight-decay", "nan", "--out", o],
            "weight decay",
        ),
        (
            vec!["finetune", "--weight-decay=-0.1", "--out", o],
            "weight decay",
        ),
        (vec!["finetune", "--max-len", "1", "--out", o], "--max-len"),
        (
            vec!["heads", "--sparse-ratio", "1.5", "--out", o],
            "--sparse-ratio",
        ),
        (
            vec!["heads", "--warmup-steps", "800", "--out", o],
            "warmup_step",
        ),
        (vec!["bench", "--seconds", "inf"], "--seconds"),
        (
            vec!["pipeline", "--latency-seconds", "inf", "--out", o],
            "--latency-seconds",
        ),
        (
            vec!["pipeline", "--set", "heads.sparse-ratio=1.5", "--out", o],
            "recipe [heads]: --sparse-ratio",
        ),
        (
            vec!["hidden", "--teacher", o, "--hidden-ratio", "1", "--out", o],
            "--hidden-ratio",
        ),
    ];
    for (args, expected) in cases {
        prune_refuses(&args, expected);
        assert!(!out.exists(), "{args:?} created its output folder");
    }
    let r = prune(&["pipeline", "--resume"]);
    assert_eq!(r.status.code(), Some(2), "--resume needs --out");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn broken_inputs_are_named_once() {
    let root = scratch("broken");
    let model = root.join("model");
    tiny_checkpoint(&model);
    let (m, missing) = (model.to_str().unwrap(), root.join("nowhere"));
    let nowhere = missing.to_str().unwrap();
    prune_refuses(&["eval", "--model", m, "--data", nowhere], "nowhere");
    // Without a tokenizer: commands that read no text run, the others name what is missing.
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    prune_ok(&["inspect", "--model", m]);
    prune_refuses(&["eval", "--model", m], "tokenizer.json");
    prune_refuses(&["eval", "--model", m], "save_pretrained");
    std::fs::write(model.join("model.safetensors"), "garbage").unwrap();
    prune_refuses(&["inspect", "--model", m], "model.safetensors");
    std::fs::write(model.join("config.json"), "{").unwrap();
    prune_refuses(&["inspect", "--model", m], "config.json: invalid JSON");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bf16_products_run_where_amx_is_and_are_refused_elsewhere() {
    prune_refuses(&["bench", "--bf16", "--device", "cuda"], "CPU only");
    let root = scratch("bf16");
    let data = root.join("glue");
    small_sst2(&data, 64, 16);
    let model = root.join("model");
    tiny_checkpoint(&model);
    let out = root.join("out");
    refuses(
        &finetune(&model, &data, &out, "2", &["--bf16", "--device", "cuda"]),
        "CPU only",
    );
    let m = model.to_str().unwrap();
    let args = [
        "bench",
        "--model",
        m,
        "--batch",
        "2",
        "--seq",
        "16",
        "--seconds",
        "0",
    ];
    let bf16 = [&args[..], &["--bf16"]].concat();
    let train_bf16 = [&bf16[..], &["--train"]].concat();
    let fine = finetune(&model, &data, &out, "2", &["--bf16"]);
    match prune::tensor::cpu::check_bf16_products() {
        Ok(()) => {
            assert!(prune_ok(&bf16).contains("bf16 products, f32 sums, on Intel AMX"));
            assert!(prune_ok(&train_bf16).contains("on Intel AMX"));
            assert!(
                !prune_ok(&args).contains("on Intel AMX"),
                "bf16 products without --bf16"
            );
            run_ok(&fine);
            let run = std::fs::read_to_string(out.join("run.json")).unwrap();
            assert!(run.contains("\"train.bf16\": true"), "{run}");
        }
        Err(_) => {
            prune_refuses(&bf16, "Intel AMX");
            prune_refuses(&train_bf16, "Intel AMX");
            refuses(&fine, "Intel AMX");
            assert!(!out.exists(), "a refused run writes nothing");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
