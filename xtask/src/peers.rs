//! `cargo xtask bench-peers`: prune beside the tools its users would otherwise run, on the
//! same checkpoints, in one run: inference latency against ONNX Runtime (on prune's own ONNX
//! exports) for a dense and a pruned model at B = 1 and 32, T = 128 and 64; and, when a Python
//! with PyTorch and transformers is given, the training step against PyTorch. Every tool runs
//! on the same number of threads, and the tools take turns within each round, so that load
//! from elsewhere on a shared machine affects them alike; a cell is the median over rounds.

use crate::{bench::target_dir, cargo, onnx, run_status, workspace_root};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// ONNX Runtime's timing script (shared with the pipeline's report).
const ORT_SCRIPT: &str = include_str!("../../crates/prune-pipeline/src/ort_latency.py");
/// PyTorch's training step.
const TORCH_SCRIPT: &str = include_str!("train_step.py");
/// Batch sizes and sequence lengths of the inference table.
const BATCHES: [usize; 2] = [1, 32];
const SEQS: [usize; 2] = [128, 64];
/// Batch size of the training step.
const TRAIN_BATCH: usize = 32;
/// Threads of every tool (ONNX Runtime's script uses this many).
const THREADS: usize = 2;

/// `cargo xtask bench-peers` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run folder of `cargo xtask prune`: its teacher (finetune/model) and pruned model
    /// (ffn/model); default: the newest run under runs/ that has both.
    #[arg(long, conflicts_with_all = ["teacher", "pruned"])]
    run: Option<PathBuf>,
    /// The dense model (a fine-tuned classifier checkpoint).
    #[arg(long, requires = "pruned")]
    teacher: Option<PathBuf>,
    /// The pruned model.
    #[arg(long, requires = "teacher")]
    pruned: Option<PathBuf>,
    /// Rounds; each cell is the median of its rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds each tool spends timing one cell per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// A Python with torch and transformers for the training step (default:
    /// `$PRUNE_TORCH_PYTHON`); without one the training table is left out.
    #[arg(long)]
    torch_python: Option<PathBuf>,
    /// Also time prune with `--bf16` (bf16 products on Intel AMX) in columns of its own, and
    /// the training step beside PyTorch under bf16 autocast.
    #[arg(long)]
    bf16: bool,
}

/// Medians of one tool, per model, per sequence length, per batch size, per round.
type Cells = Vec<Vec<Vec<Vec<f64>>>>;

/// The training step's medians at one sequence length, per round (the bf16 ones with
/// `--bf16`: prune's bf16 products, PyTorch's bf16 autocast).
#[derive(Clone, Default)]
struct TrainCells {
    prune: Vec<f64>,
    torch: Vec<f64>,
    prune_bf16: Vec<f64>,
    torch_bf16: Vec<f64>,
}

/// Runs the side-by-side benchmark and prints (and writes to target/bench-peers.md) its
/// tables.
pub fn run(args: &Args) -> Result<()> {
    if args.rounds == 0 || !(args.seconds > 0.0 && args.seconds <= 600.0) {
        bail!("--rounds must be at least 1 and --seconds in (0, 600]");
    }
    let (teacher, pruned) = models(args)?;
    let torch = args
        .torch_python
        .clone()
        .or_else(|| std::env::var_os("PRUNE_TORCH_PYTHON").map(PathBuf::from));
    let prune = build_prune()?;
    let work = target_dir()?.join("bench-peers");
    std::fs::create_dir_all(&work)?;
    let onnx: Vec<PathBuf> = [("teacher", &teacher), ("pruned", &pruned)]
        .iter()
        .map(|(name, dir)| export_onnx(&prune, dir, &work.join(format!("{name}.onnx"))))
        .collect::<Result<_>>()?;
    // Installs ONNX Runtime into the cache first when needed.
    onnx::with_onnxruntime(&mut Command::new("python3"))?;
    let vocab = vocab_size(&teacher)?;
    let dirs = [&teacher, &pruned];
    let mut ours: Cells = vec![vec![vec![Vec::new(); BATCHES.len()]; SEQS.len()]; 2];
    let mut ort = ours.clone();
    let mut ours_bf16 = ours.clone();
    let mut train = vec![TrainCells::default(); SEQS.len()];
    let mut versions = (String::new(), String::new());
    for round in 1..=args.rounds {
        eprintln!("round {round} of {}", args.rounds);
        for (s, &seq) in SEQS.iter().enumerate() {
            for (m, dir) in dirs.iter().enumerate() {
                let ms = prune_bench(&prune, dir, &BATCHES, seq, args.seconds, Work::F32)?;
                push_round(&mut ours[m][s], ms);
                if args.bf16 {
                    let ms = prune_bench(&prune, dir, &BATCHES, seq, args.seconds, Work::Bf16)?;
                    push_round(&mut ours_bf16[m][s], ms);
                }
            }
            let timed = ort_latency(&onnx, vocab, seq, args.seconds)?;
            versions.0 = timed.version;
            for (m, per_batch) in timed.median_ms.into_iter().enumerate() {
                push_round(&mut ort[m][s], per_batch);
            }
            if let Some(python) = &torch {
                let precisions: &[bool] = if args.bf16 { &[false, true] } else { &[false] };
                for &bf16 in precisions {
                    let work = Work::Train { bf16 };
                    let ms =
                        prune_bench(&prune, &teacher, &[TRAIN_BATCH], seq, args.seconds, work)?;
                    let (version, step) = torch_step(python, &teacher, seq, args.seconds, bf16)?;
                    versions.1 = version;
                    let cells = &mut train[s];
                    let (ours, theirs) = match bf16 {
                        false => (&mut cells.prune, &mut cells.torch),
                        true => (&mut cells.prune_bf16, &mut cells.torch_bf16),
                    };
                    ours.push(ms[0]);
                    theirs.push(step);
                }
            }
        }
    }
    let table = render(&ours, &ours_bf16, &ort, &train, &versions, args.rounds);
    println!("{table}");
    let out = target_dir()?.join("bench-peers.md");
    std::fs::write(&out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// The teacher and pruned checkpoints the options name.
fn models(args: &Args) -> Result<(PathBuf, PathBuf)> {
    if let (Some(t), Some(p)) = (&args.teacher, &args.pruned) {
        return Ok((t.clone(), p.clone()));
    }
    let pair = |run: &Path| (run.join("finetune/model"), run.join("ffn/model"));
    let complete = |run: &Path| {
        let (t, p) = pair(run);
        t.join("config.json").is_file() && p.join("config.json").is_file()
    };
    let run = match &args.run {
        Some(run) if complete(run) => run.clone(),
        Some(run) => bail!(
            "{} has no finetune/model and ffn/model; pass --teacher and --pruned",
            run.display()
        ),
        None => newest_run(&workspace_root().join("runs"), complete).context(
            "no run under runs/ has finetune/model and ffn/model: run `cargo xtask prune` \
             first, or pass --run, or --teacher and --pruned",
        )?,
    };
    Ok(pair(&run))
}

/// The most recently modified folder under `runs` that `complete` accepts.
fn newest_run(runs: &Path, complete: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let entries = std::fs::read_dir(runs).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| complete(p))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

/// Builds `prune` in release mode and returns the binary.
fn build_prune() -> Result<PathBuf> {
    run_status(
        cargo().args(["build", "--release", "-p", "prune-cli", "--bin", "prune"]),
        "cargo build --release -p prune-cli",
    )?;
    Ok(target_dir()?
        .join("release")
        .join(format!("prune{}", std::env::consts::EXE_SUFFIX)))
}

/// `dir` exported to ONNX at `out` (written again each run: the checkpoint may have changed).
fn export_onnx(prune: &Path, dir: &Path, out: &Path) -> Result<PathBuf> {
    if out.exists() {
        std::fs::remove_file(out)?;
    }
    let mut cmd = Command::new(prune);
    cmd.args(["export", "--format", "onnx", "--model"])
        .arg(dir)
        .arg("--out")
        .arg(out);
    run_status(&mut cmd, "prune export --format onnx")?;
    Ok(out.to_path_buf())
}

/// Output of `cmd`, which must succeed.
fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds one round's medians, one per batch size, to the cells of those batch sizes.
fn push_round(cells: &mut [Vec<f64>], per_batch: Vec<f64>) {
    cells.iter_mut().zip(per_batch).for_each(|(c, v)| c.push(v));
}

/// What `prune bench` times.
#[derive(Clone, Copy)]
enum Work {
    /// Inference in f32.
    F32,
    /// Inference with bf16 products (`--bf16`).
    Bf16,
    /// A training step (`--train`, with `--bf16` when `bf16`).
    Train { bf16: bool },
}

/// `prune bench` medians (ms) of `dir` at each batch size.
fn prune_bench(
    prune: &Path,
    dir: &Path,
    batches: &[usize],
    seq: usize,
    seconds: f64,
    work: Work,
) -> Result<Vec<f64>> {
    let mut cmd = Command::new(prune);
    cmd.env("RAYON_NUM_THREADS", THREADS.to_string())
        .arg("bench")
        .arg("--model")
        .arg(dir)
        .args(["--seq", &seq.to_string(), "--seconds", &seconds.to_string()]);
    for b in batches {
        cmd.args(["--batch", &b.to_string()]);
    }
    match work {
        Work::F32 => {}
        Work::Bf16 => {
            cmd.arg("--bf16");
        }
        Work::Train { bf16 } => {
            cmd.arg("--train");
            if bf16 {
                cmd.arg("--bf16");
            }
        }
    }
    let text = output(&mut cmd, "prune bench")?;
    // Lines like `B=32  T=128:   974.54 ms median of 3 runs, …`.
    let ms: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("B="))
        .filter_map(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    if ms.len() != batches.len() {
        bail!("unexpected `prune bench` output:\n{text}");
    }
    Ok(ms)
}

/// What ONNX Runtime's script prints.
#[derive(Deserialize)]
struct OrtTimes {
    version: String,
    median_ms: Vec<Vec<f64>>,
}

/// The vocabulary size in `dir`'s config.json.
fn vocab_size(dir: &Path) -> Result<u64> {
    let config = std::fs::read_to_string(dir.join("config.json"))?;
    serde_json::from_str::<serde_json::Value>(&config)?["vocab_size"]
        .as_u64()
        .with_context(|| format!("{}/config.json has no vocab_size", dir.display()))
}

/// ONNX Runtime's medians (ms) per model and batch size, on ids below `vocab`.
fn ort_latency(models: &[PathBuf], vocab: u64, seq: usize, seconds: f64) -> Result<OrtTimes> {
    let batches: Vec<String> = BATCHES.iter().map(usize::to_string).collect();
    let mut cmd = Command::new("python3");
    onnx::with_onnxruntime(&mut cmd)?
        .args(["-c", ORT_SCRIPT])
        .args([
            seconds.to_string(),
            seq.to_string(),
            vocab.to_string(),
            batches.join(","),
        ])
        .args(models);
    let text = output(&mut cmd, "ONNX Runtime's timing")?;
    serde_json::from_str(&text).context("unreadable ONNX Runtime timing")
}

/// PyTorch's version and training-step median (ms) at `TRAIN_BATCH` × `seq` (under bf16
/// autocast when `bf16`).
fn torch_step(
    python: &Path,
    teacher: &Path,
    seq: usize,
    seconds: f64,
    bf16: bool,
) -> Result<(String, f64)> {
    #[derive(Deserialize)]
    struct Step {
        version: String,
        median_ms: f64,
    }
    let mut cmd = Command::new(python);
    cmd.args(["-c", TORCH_SCRIPT])
        .arg(teacher)
        .args([TRAIN_BATCH, seq, THREADS].map(|v| v.to_string()))
        .arg(seconds.to_string())
        .arg(if bf16 { "bf16" } else { "f32" });
    let text = output(&mut cmd, "PyTorch's training step")?;
    let step: Step = serde_json::from_str(&text).context("unreadable PyTorch timing")?;
    Ok((step.version, step.median_ms))
}

/// The median of `v` (upper median for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The tables, as Markdown.
fn render(
    ours: &Cells,
    ours_bf16: &Cells,
    ort: &Cells,
    train: &[TrainCells],
    versions: &(String, String),
    rounds: usize,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Inference, {THREADS} threads, median of {rounds} rounds (ms; ratio < 1: prune is faster)\n"
    );
    let bf16 = !ours_bf16[0][0][0].is_empty();
    let (head, rule) = match bf16 {
        true => (" prune bf16 | bf16 / ORT |", "---:|---:|"),
        false => ("", ""),
    };
    let _ = writeln!(
        t,
        "| model | B | T | ONNX Runtime {} | prune | prune / ORT |{head}\n\
         |---|---:|---:|---:|---:|---:|{rule}",
        versions.0
    );
    for (m, name) in ["dense", "pruned"].iter().enumerate() {
        for (s, seq) in SEQS.iter().enumerate() {
            for (b, batch) in BATCHES.iter().enumerate() {
                let (o, p) = (median(&ort[m][s][b]), median(&ours[m][s][b]));
                let _ = write!(
                    t,
                    "| {name} | {batch} | {seq} | {o:.1} | {p:.1} | {:.2} |",
                    p / o
                );
                if bf16 {
                    let h = median(&ours_bf16[m][s][b]);
                    let _ = write!(t, " {h:.1} | {:.2} |", h / o);
                }
                let _ = writeln!(t);
            }
        }
    }
    if train.iter().any(|c| !c.prune.is_empty()) {
        let bf16 = train.iter().any(|c| !c.prune_bf16.is_empty());
        let (head, rule) = match bf16 {
            true => (
                " PyTorch bf16 autocast | prune bf16 | speed-up (bf16) | prune bf16 vs PyTorch |",
                "---:|---:|---:|---:|",
            ),
            false => ("", ""),
        };
        let _ = writeln!(
            t,
            "\nTraining step (forward + backward, no optimizer), dense, B={TRAIN_BATCH} \
             (ms; speed-up > 1: prune is faster)\n\n\
             | T | PyTorch {} | prune | speed-up |{head}\n|---:|---:|---:|---:|{rule}",
            versions.1
        );
        for (c, seq) in train.iter().zip(SEQS) {
            let (p, torch) = (median(&c.prune), median(&c.torch));
            let _ = write!(t, "| {seq} | {torch:.0} | {p:.0} | {:.2}× |", torch / p);
            if bf16 {
                let (p16, torch16) = (median(&c.prune_bf16), median(&c.torch_bf16));
                let _ = write!(
                    t,
                    " {torch16:.0} | {p16:.0} | {:.2}× | {:.2}× |",
                    torch16 / p16,
                    torch / p16
                );
            }
            let _ = writeln!(t);
        }
    } else {
        let _ = writeln!(
            t,
            "\n(no training table: pass --torch-python or set PRUNE_TORCH_PYTHON to a Python \
             with torch and transformers)"
        );
    }
    t
}
