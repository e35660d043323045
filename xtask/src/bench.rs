//! `cargo xtask bench`: runs the criterion benchmarks of the CPU ops, then reads criterion's
//! results under `target/criterion` and prints a table (median time, GFLOP/s or GB/s, and for
//! matmuls the share of the measured sgemm peak), also written to `target/bench-table.md`.
//!
//! Convention of `benches/cpu_ops.rs`: `Throughput::Elements` counts FLOPs (matmuls),
//! `Throughput::Bytes` counts bytes read plus written (memory-bound ops).

use crate::{cargo, run_status};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Id prefix of the benchmark that measures the machine's sgemm peak.
const PEAK_PREFIX: &str = "cpu/sgemm_peak/";

/// What one iteration of a benchmark processes.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// Floating-point operations.
    Flops(u64),
    /// Bytes read plus written.
    Bytes(u64),
}

/// One benchmark's saved result.
#[derive(Debug)]
struct Measurement {
    /// Full criterion id, e.g. `cpu/matmul_nt/minilm_up_1024x384x1536`.
    id: String,
    /// Median time of one iteration, in nanoseconds.
    median_ns: f64,
    /// Work per iteration, if the benchmark declared a throughput.
    work: Option<Work>,
    /// When criterion wrote the result.
    written: SystemTime,
}

impl Measurement {
    /// GFLOP/s or GB/s (units per nanosecond are giga-units per second).
    fn rate(&self) -> Option<f64> {
        self.work.map(|w| match w {
            Work::Flops(n) | Work::Bytes(n) => n as f64 / self.median_ns,
        })
    }
}

/// Runs `cargo bench --bench cpu_ops -- <args>` and prints the table of this run's results.
pub fn run(args: &[String]) -> Result<()> {
    let started = SystemTime::now();
    run_status(
        cargo()
            .args(["bench", "-p", "prune", "--bench", "cpu_ops", "--"])
            .args(args),
        "cargo bench",
    )?;
    report(started, Some(PEAK_PREFIX), "bench-table.md")
}

/// Prints the table of the criterion results written since `started` (with the share of the
/// peak measured by the benchmarks whose id starts with `peak_prefix`, if given) and writes it
/// to `target/<file>`.
pub fn report(started: SystemTime, peak_prefix: Option<&str>, file: &str) -> Result<()> {
    let target = target_dir()?;
    let root = target.join("criterion");
    let mut all = Vec::new();
    collect(&root, &mut all)?;
    all.sort_by_key(|r| r.written);
    let peak = peak_prefix.map(|prefix| {
        all.iter()
            .rev()
            .find(|r| r.id.starts_with(prefix))
            .and_then(|r| Some((r.rate()?, r.id.clone(), r.written >= started)))
    });
    let this_run: Vec<&Measurement> = all.iter().filter(|r| r.written >= started).collect();
    if this_run.is_empty() {
        bail!(
            "no benchmark results from this run under {}",
            root.display()
        );
    }
    let table = render(&this_run, peak.as_ref().map(Option::as_ref));
    print!("\n{table}");
    let out = target.join(file);
    fs::write(&out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("table written to {}", out.display());
    Ok(())
}

/// Cargo's target directory, as `cargo metadata` reports it.
pub fn target_dir() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    match meta["target_directory"].as_str() {
        Some(dir) => Ok(dir.into()),
        None => bail!("cargo metadata gave no target_directory"),
    }
}

/// Collects every result saved under `dir` (criterion keeps the latest in `<bench>/new/`).
fn collect(dir: &Path, out: &mut Vec<Measurement>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(r) = read_result(&path)? {
                out.push(r);
            }
        } else {
            collect(&path, out)?;
        }
    }
    Ok(())
}

/// Reads `benchmark.json` and `estimates.json` of one `new/` folder, if both exist.
fn read_result(dir: &Path) -> Result<Option<Measurement>> {
    let (bench, estimates) = (dir.join("benchmark.json"), dir.join("estimates.json"));
    if !bench.is_file() || !estimates.is_file() {
        return Ok(None);
    }
    let read = |p: &Path| -> Result<Value> {
        let text = fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("cannot parse {}", p.display()))
    };
    let (b, e) = (read(&bench)?, read(&estimates)?);
    let id = b["full_id"].as_str().unwrap_or_default().to_string();
    let Some(median_ns) = e["median"]["point_estimate"].as_f64() else {
        bail!("{} has no median", estimates.display());
    };
    let tp = &b["throughput"];
    let flops = tp["Elements"]
        .as_u64()
        .or(tp["ElementsAndBytes"]["elements"].as_u64());
    let bytes = tp["Bytes"].as_u64().or(tp["BytesDecimal"].as_u64());
    let work = flops.map(Work::Flops).or(bytes.map(Work::Bytes));
    let written = fs::metadata(&estimates)?.modified()?;
    Ok(Some(Measurement {
        id,
        median_ns,
        work,
        written,
    }))
}

/// The markdown table of `results`. `peak` is `None` for a table without a peak column, and
/// `Some(p)` for one, `p` being `(GFLOP/s, id, measured in this run)` when known.
fn render(results: &[&Measurement], peak: Option<Option<&(f64, String, bool)>>) -> String {
    let mut s = String::new();
    let with_peak = peak.is_some();
    let peak = peak.flatten();
    if with_peak {
        s.push_str("| benchmark | median | throughput | % of sgemm peak |\n");
        s.push_str("|---|---:|---:|---:|\n");
    } else {
        s.push_str("| benchmark | median | throughput |\n");
        s.push_str("|---|---:|---:|\n");
    }
    for r in results {
        let (rate, share) = match (r.work, r.rate()) {
            (Some(Work::Flops(_)), Some(g)) => {
                let share = peak.map_or(String::new(), |(p, ..)| format!("{:.0} %", 100.0 * g / p));
                (format!("{g:.1} GFLOP/s"), share)
            }
            (Some(Work::Bytes(_)), Some(g)) => (format!("{g:.2} GB/s"), String::new()),
            _ => (String::new(), String::new()),
        };
        let time = format_ns(r.median_ns);
        if with_peak {
            let _ = writeln!(s, "| `{}` | {time} | {rate} | {share} |", r.id);
        } else {
            let _ = writeln!(s, "| `{}` | {time} | {rate} |", r.id);
        }
    }
    if !with_peak {
        return s;
    }
    match peak {
        Some((p, id, true)) => {
            let _ = writeln!(s, "\nsgemm peak: {p:.1} GFLOP/s (`{id}`, this run).");
        }
        Some((p, id, false)) => {
            let _ = writeln!(
                s,
                "\nsgemm peak: {p:.1} GFLOP/s (`{id}`, from an earlier run)."
            );
        }
        None => s.push_str("\nsgemm peak: not measured (run the `sgemm_peak` benchmark).\n"),
    }
    s
}

/// A duration in nanoseconds with a readable unit.
fn format_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
