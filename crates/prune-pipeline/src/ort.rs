//! ONNX Runtime beside prune in the report: exported models timed in ONNX Runtime through
//! Python (`$PRUNE_ORT_PYTHON`, else `python3`, which must import onnxruntime; `cargo xtask
//! prune` provides one), alternately, on the same random batches as prune's own latency.

use serde::Deserialize;
use std::path::Path;
use std::process::Command;

/// The timing script, run with `python -c`.
const SCRIPT: &str = include_str!("ort_latency.py");

/// What ONNX Runtime measured.
#[derive(Clone, Debug, Deserialize)]
pub struct OrtLatency {
    /// ONNX Runtime's version.
    pub version: String,
    /// Median milliseconds, per model, per batch size (in the order asked).
    pub median_ms: Vec<Vec<f64>>,
}

/// Times `models` (ONNX files of a model with `vocab` tokens) at `batches` × `seq`, for
/// about `seconds` per batch size; `Err` says why ONNX Runtime could not be used.
pub fn latency(
    models: &[&Path],
    vocab: usize,
    batches: &[usize],
    seq: usize,
    seconds: f64,
) -> Result<OrtLatency, String> {
    let python = std::env::var_os("PRUNE_ORT_PYTHON").unwrap_or_else(|| "python3".into());
    let batches: Vec<String> = batches.iter().map(usize::to_string).collect();
    let run = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .args([
            seconds.to_string(),
            seq.to_string(),
            vocab.to_string(),
            batches.join(","),
        ])
        .args(models)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.to_string_lossy()))?;
    if !run.status.success() {
        let err = String::from_utf8_lossy(&run.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(format!("onnxruntime failed or is missing: {last}"));
    }
    serde_json::from_slice(&run.stdout).map_err(|e| format!("unreadable timing: {e}"))
}
