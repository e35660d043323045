//! Run logging: a progress bar (loss, lr, examples/s) and a JSON-lines log `metrics.jsonl`.

use crate::error::{Result, TrainError};
use crate::evaluator::Evaluation;
use crate::trainer::StepInfo;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lines of a `metrics.jsonl` text whose `step` is at most `step` (and complete lines
/// without one).
fn lines_up_to(text: &str, step: u64) -> String {
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            v["step"]
                .as_u64()
                .is_none_or(|s| s <= step)
                .then(|| format!("{line}\n"))
        })
        .collect()
}

/// The progress bar and `metrics.jsonl` of one run.
pub struct RunLog {
    bar: Option<ProgressBar>,
    file: Option<(PathBuf, File)>,
    log_every: u64,
}

impl RunLog {
    /// A log of `total` steps resuming at `step`, a line every `log_every` steps;
    /// `metrics.jsonl` is written under `dir`: started afresh at step 0, and when resuming,
    /// cut back to the lines of steps up to `step` (a killed run may have logged beyond its
    /// last checkpoint) and continued.
    pub fn new(
        dir: Option<&Path>,
        total: u64,
        bar: bool,
        step: u64,
        log_every: u64,
    ) -> Result<Self> {
        let file = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| TrainError::file(d, e))?;
                let path = d.join("metrics.jsonl");
                let kept = match std::fs::read_to_string(&path) {
                    Ok(text) if step > 0 => lines_up_to(&text, step),
                    _ => String::new(),
                };
                std::fs::write(&path, kept).map_err(|e| TrainError::file(&path, e))?;
                // Appending, as the distiller's statistics share the file.
                let f = File::options()
                    .append(true)
                    .open(&path)
                    .map_err(|e| TrainError::file(&path, e))?;
                Some((path, f))
            }
            None => None,
        };
        let bar = bar.then(|| {
            let pb = ProgressBar::new(total).with_position(step);
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            pb.set_style(style);
            pb
        });
        Ok(RunLog {
            bar,
            file,
            log_every: log_every.max(1),
        })
    }

    fn write(&mut self, value: serde_json::Value) -> Result<()> {
        if let Some((path, f)) = &mut self.file {
            writeln!(f, "{value}").map_err(|e| TrainError::file(path, e))?;
        }
        Ok(())
    }

    /// Records a finished step.
    pub fn step(&mut self, info: &StepInfo, examples_per_second: f64) -> Result<()> {
        if let Some(pb) = &self.bar {
            pb.set_position(info.step);
            pb.set_message(format!(
                "loss {:.4} lr {:.2e} {:.1} ex/s",
                info.loss, info.lr, examples_per_second
            ));
        }
        if info.step % self.log_every == 0 || info.step == info.total_steps {
            self.write(serde_json::json!({ "kind": "train", "step": info.step, "epoch": info.epoch, "loss": info.loss,
                "lr": info.lr, "grad_norm": info.grad_norm, "examples_per_second": examples_per_second }))?;
        }
        Ok(())
    }

    /// Records an evaluation.
    pub fn evaluation(&mut self, step: u64, e: &Evaluation) -> Result<()> {
        let metrics: serde_json::Map<String, serde_json::Value> = e
            .metrics
            .iter()
            .map(|(m, v)| (m.name().to_string(), (*v).into()))
            .collect();
        if let Some(pb) = &self.bar {
            pb.println(format!("step {step}: eval {metrics:?} loss {:.4}", e.loss));
        }
        self.write(serde_json::json!({ "kind": "eval", "step": step, "loss": e.loss, "metrics": metrics, "seconds": e.seconds }))
    }

    /// Closes the progress bar.
    pub fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish();
        }
    }
}
