//! `cargo xtask bench`: runs the criterion benchmarks of the CPU ops, then reads criterion's
//! results under `target/criterion` and prints a table (median time, GFLOP/s or GB/s, and for
//! matmuls the share of the measured FMA peak), also written to `target/bench-table.md`.
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

/// The reference benchmarks of the CPU table: the FMA units' register-only peak (no
/// bandwidth reference).
const CPU_PEAKS: Peaks = Peaks {
    flops: Some("cpu/fma_peak/"),
    bytes: None,
};

/// The reference benchmarks of the GPU table: cuBLAS's large SGEMM and the driver's copy.
pub const GPU_PEAKS: Peaks = Peaks {
    flops: Some("cuda/sgemm_peak/"),
    bytes: Some("cuda/copy_peak/"),
};

/// Id prefixes of the benchmarks that a table's "% of peak" column divides by: one for the
/// FLOP rates of GEMMs, one for the byte rates of memory-bound ops.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    /// The reference for rows that count FLOPs.
    pub flops: Option<&'static str>,
    /// The reference for rows that count bytes.
    pub bytes: Option<&'static str>,
}

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
    report(started, CPU_PEAKS, "bench-table.md")
}

/// Prints the table of the criterion results written since `started`, each rate also as a
/// share of its reference in `peaks` (the latest result of that reference, from this run or
/// an earlier one), and writes it to `target/<file>`.
pub fn report(started: SystemTime, peaks: Peaks, file: &str) -> Result<()> {
    report_from(&target_dir()?.join("criterion"), started, peaks, file)
}

/// [`report`] for the criterion results under `root` (criterion's folder, wherever it is).
pub fn report_from(root: &Path, started: SystemTime, peaks: Peaks, file: &str) -> Result<()> {
    let mut all = Vec::new();
    collect(root, &mut all)?;
    all.sort_by_key(|r| r.written);
    let reference = |prefix: Option<&str>| {
        let prefix = prefix?;
        let r = all.iter().rev().find(|r| r.id.starts_with(prefix))?;
        Some(Reference {
            rate: r.rate()?,
            id: r.id.clone(),
            this_run: r.written >= started,
        })
    };
    let refs = [reference(peaks.flops), reference(peaks.bytes)];
    let this_run: Vec<&Measurement> = all.iter().filter(|r| r.written >= started).collect();
    if this_run.is_empty() {
        bail!(
            "no benchmark results from this run under {}",
            root.display()
        );
    }
    let table = render(&this_run, peaks, &refs);
    print!("\n{table}");
    let out = target_dir()?.join(file);
    fs::write(&out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("table written to {}", out.display());
    Ok(())
}

/// A reference rate for the "% of peak" column.
#[derive(Debug)]
struct Reference {
    /// GFLOP/s or GB/s.
    rate: f64,
    /// The benchmark that measured it.
    id: String,
    /// Whether it was measured in this run.
    this_run: bool,
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

/// The markdown table of `results`, with a "% of peak" column when `peaks` names any
/// reference; `refs` are the measured references for FLOPs and for bytes, in that order.
fn render(results: &[&Measurement], peaks: Peaks, refs: &[Option<Reference>; 2]) -> String {
    let mut s = String::new();
    let with_peak = peaks.flops.is_some() || peaks.bytes.is_some();
    if with_peak {
        s.push_str("| benchmark | median | throughput | % of peak |\n");
        s.push_str("|---|---:|---:|---:|\n");
    } else {
        s.push_str("| benchmark | median | throughput |\n");
        s.push_str("|---|---:|---:|\n");
    }
    let share = |reference: &Option<Reference>, rate: f64| {
        reference
            .as_ref()
            .map_or(String::new(), |p| format!("{:.0} %", 100.0 * rate / p.rate))
    };
    for r in results {
        let (rate, share) = match (r.work, r.rate()) {
            (Some(Work::Flops(_)), Some(g)) => (format!("{g:.1} GFLOP/s"), share(&refs[0], g)),
            (Some(Work::Bytes(_)), Some(g)) => (format!("{g:.2} GB/s"), share(&refs[1], g)),
            _ => (String::new(), String::new()),
        };
        let time = format_ns(r.median_ns);
        if with_peak {
            let _ = writeln!(s, "| `{}` | {time} | {rate} | {share} |", r.id);
        } else {
            let _ = writeln!(s, "| `{}` | {time} | {rate} |", r.id);
        }
    }
    let kinds = [
        (peaks.flops, "FLOP/s", "GFLOP/s"),
        (peaks.bytes, "bytes/s", "GB/s"),
    ];
    for ((prefix, what, unit), reference) in kinds.into_iter().zip(refs) {
        let Some(prefix) = prefix else { continue };
        let _ = match reference {
            Some(p) => writeln!(
                s,
                "\n% of peak for {what}: of {:.1} {unit} (`{}`, {}).",
                p.rate,
                p.id,
                if p.this_run {
                    "this run"
                } else {
                    "an earlier run"
                }
            ),
            None => writeln!(
                s,
                "\n% of peak for {what}: not measured (no `{prefix}` result)."
            ),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(id: &str, median_ns: f64, work: Work) -> Measurement {
        Measurement {
            id: id.into(),
            median_ns,
            work: Some(work),
            written: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn each_rate_is_a_share_of_its_own_reference() {
        let gemm = measured("cuda/matmul/x", 1e6, Work::Flops(5_000_000_000));
        let norm = measured("cuda/layer_norm/x", 1e6, Work::Bytes(1_500_000_000));
        let peaks = Peaks {
            flops: Some("cuda/sgemm_peak/"),
            bytes: Some("cuda/copy_peak/"),
        };
        let reference = |rate: f64, id: &str| {
            Some(Reference {
                rate,
                id: id.into(),
                this_run: true,
            })
        };
        let refs = [
            reference(10_000.0, "cuda/sgemm_peak/4096"),
            reference(3_000.0, "cuda/copy_peak/64Mi"),
        ];
        let table = render(&[&gemm, &norm], peaks, &refs);
        assert!(table.contains("| 5000.0 GFLOP/s | 50 % |"), "{table}");
        assert!(table.contains("| 1500.00 GB/s | 50 % |"), "{table}");
        assert!(
            table.contains("of 3000.0 GB/s (`cuda/copy_peak/64Mi`, this run)"),
            "{table}"
        );
        let none = [None, None];
        let table = render(&[&norm], peaks, &none);
        assert!(table.contains("for bytes/s: not measured"), "{table}");
    }
}
