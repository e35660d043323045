//! `prune inspect` (what a checkpoint is: sizes, per-layer widths, parameters, FLOPs,
//! dependency groups) and `prune speedup` (masks saved by a pruning stage → a smaller
//! checkpoint).

use crate::command::Command;
use crate::error::{Context, Result};
use crate::exports::copy_tokenizer;
use crate::refuse;
use crate::report::REPORT_SEQ;
use crate::stage_output::finish;
use prune_pruners::Masks;
use prune_speedup::{ModelStats, PruningReport, apply, masked_but_kept, plan_from_masks};
use prune_tensor::Backend;
use prune_train::{RunDir, RunIdentity};
use prune_transformer::groups::model_groups;
use prune_transformer::{BertModel, paths};
use std::path::PathBuf;

/// `prune inspect` options.
#[derive(clap::Args, Debug, Clone)]
pub struct InspectOptions {
    /// Checkpoint directory; default: the fetched all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Sequence length for the FLOPs count.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Also list every member of every dependency group found by tracing the model.
    #[arg(long)]
    pub groups: bool,
}

/// `prune speedup` options.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeedupOptions {
    /// The dense (masked) checkpoint the masks belong to.
    #[arg(long)]
    pub model: PathBuf,
    /// Masks written by a pruning stage (`masks.safetensors`).
    #[arg(long)]
    pub masks: PathBuf,
    /// Output directory: model/ (the shrunk checkpoint), plan.json and run.json (written
    /// as <out>.partial and renamed when complete).
    #[arg(long)]
    pub out: PathBuf,
}

/// The checkpoint in `model` (the default one when none) on backend `b`.
fn load<B: Backend>(b: B, model: Option<&PathBuf>) -> Result<(PathBuf, BertModel<B>)> {
    let dir = match model {
        Some(d) => paths::require_given_checkpoint(d.clone(), false)?,
        None => paths::require_model_dir()?,
    };
    let bert = BertModel::load(b, &dir).context_with(|| format!("loading {}", dir.display()))?;
    Ok((dir, bert))
}

impl Command for InspectOptions {
    fn check(&self) -> Result<()> {
        if self.seq == 0 {
            refuse!("--seq must be at least 1");
        }
        Ok(())
    }

    /// Describes the checkpoint.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        let (dir, bert) = load(b, self.model.as_ref())?;
        let groups = model_groups(&bert)?;
        let c = &bert.config;
        let (pooler, classifier) = (
            bert.params.pooler.is_some(),
            bert.params.classifier.is_some(),
        );
        let stats = ModelStats::of(c, pooler, classifier, self.seq);
        let mut lines = vec![
            dir.display().to_string(),
            format!(
                "layers {}, hidden {} (of {}), head dim {}, vocab {}, labels {}",
                c.num_hidden_layers,
                c.hidden(),
                c.hidden_size,
                c.head_dim(),
                c.vocab_size,
                c.labels()
            ),
        ];
        if c.projects_embeddings() {
            lines.push(format!(
                "embeddings {} wide (of {}), projected to the hidden width",
                c.embedding_width(),
                c.embedding_size
            ));
        }
        lines.extend([
            format!("heads per layer: {:?}", stats.heads),
            format!("FFN width per layer: {:?}", stats.intermediate),
            format!(
                "parameters: {} total, {} in the encoder layers",
                stats.parameters, stats.encoder_parameters
            ),
            format!(
                "matmul FLOPs per sequence of {} tokens: {} ({:.1} MFLOP/token)",
                self.seq,
                stats.flops_per_sequence,
                stats.flops_per_sequence as f64 / self.seq as f64 / 1e6
            ),
            format!(
                "dependency groups (from a trace of the forward pass): {}",
                groups.len()
            ),
        ]);
        for g in &groups {
            lines.push(format!(
                "  {:?}: {} channels of {} element(s), {} members",
                g.kind,
                g.channels,
                g.unit,
                g.members.len()
            ));
            if self.groups {
                for m in &g.members {
                    lines.push(format!("    {} axis {} ({:?})", m.param, m.axis, m.role));
                }
            }
        }
        Ok(lines.join("\n"))
    }
}

impl Command for SpeedupOptions {
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Applies the masks, cuts what they remove whole, saves `<out>/model`.
    fn run<B: Backend>(&self, b: B) -> Result<String> {
        let (dir, mut bert) = load(b, Some(&self.model))?;
        let masks = Masks::load(&self.masks).context("--masks")?;
        masks.apply(&mut bert)?;
        let weight_masks = bert.masks().cloned().unwrap_or_else(|| bert.empty_masks());
        let plan = plan_from_masks(&bert, &weight_masks)?;
        let left = masked_but_kept(&bert, &weight_masks, &plan)?;
        if plan.is_identity() {
            refuse!(
                "{}: the masks zero {left} weights but no whole head, FFN neuron or hidden channel, \
             so surgery has nothing to remove (it only cuts whole structures)",
                self.masks.display()
            );
        }
        if left > 0 {
            eprintln!(
                "warning: {left} masked weights are not part of a removed head, neuron or channel; \
             they stay in the model with their trained values"
            );
        }
        let identity = RunIdentity::new("speedup")
            .with_checkpoint("model", &dir)?
            .with_file("masks", &self.masks)?;
        let inputs = [("--model", dir.as_path()), ("--masks", &self.masks)];
        let out = RunDir::claim(&self.out, &inputs, &identity, false)?;
        let (pooler, classifier) = (
            bert.params.pooler.is_some(),
            bert.params.classifier.is_some(),
        );
        let report = PruningReport::new(&bert.config, pooler, classifier, &plan, REPORT_SEQ)?;
        apply(&mut bert, &plan, &mut [])?;
        bert.set_masks(None)?;
        let model_dir = out.path().join("model");
        bert.save(&model_dir)?;
        copy_tokenizer(&dir, &model_dir)?;
        plan.save(&out.path().join("plan.json"))?;
        let saved = finish(out)?.join("model");
        Ok(format!(
            "heads {:?}, FFN {:?}, hidden {}; parameters {:.1}% of the original, FLOPs {:.2}x fewer; saved to {}",
            report.after.heads,
            report.after.intermediate,
            report.after.hidden,
            100.0 * report.parameter_ratio(),
            1.0 / report.flops_ratio().max(1e-12),
            saved.display()
        ))
    }
}
