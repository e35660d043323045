//! `Distiller`: the distillation objective the `Trainer` minimises; its step hooks update
//! its projections, log its statistics and save its state.
//!
//! One micro-batch: the teacher (a separate `BertForSequenceClassification`, inference
//! mode, so no dropout and no caches) runs once on the batch; the student runs its training
//! forward with every hidden state; the loss is
//! `α_ce · CE(z_S, y) + α_layer · Σ_pairs MSE(P_s(h_S[s]), h_T[t]) + α_kd · KD(z_S, z_T)`
//! with the pairs chosen by the [`crate::mapping::LayerMapping`]; one backward through the student takes
//! the logits' gradient (task loss and KD) and the hidden states' gradients (through the
//! projections `P_s`, which collect their own gradients).
//!
//! The caller keeps the distiller and lends it to the trainer ([`Distiller::attach`]), so
//! it reads the statistics once training is done.

use crate::config::DistillConfig;
use crate::error::{DistillError, Result};
use crate::hidden::TokenRows;
use crate::logits::LogitLoss;
use crate::mapping::{LayerPair, LossTable};
use crate::projection_set::ProjectionSet;
use crate::stats::{DistillStats, MappingHistogram, StatsLog};
use prune_data::LabelledBatch;
use prune_tensor::{Backend, Shape, Tensor};
use prune_train::state::{StateDir, read_json, write_json};
use prune_train::{ByRef, Callback, Objective, Optimizer, StepInfo, Trainer};
use prune_transformer::{
    BertForSequenceClassification, BertParams, ForwardOptions, IGNORE_INDEX, OutputGrads, Targets,
};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the distiller's own state inside a state directory.
const STATE: &str = "distiller.json";

/// A distillation objective with a teacher: lend it to a trainer as its objective
/// ([`Distiller::attach`]); its step hooks update the projections.
pub struct Distiller<B: Backend> {
    teacher: BertForSequenceClassification<B>,
    config: DistillConfig,
    projections: ProjectionSet<B::Tensor>,
    /// Micro-batches accumulated since the projections' last update.
    pending: u64,
    /// The last optimizer step whose projection update ran.
    updated: u64,
    /// The last optimizer step whose log line was written.
    logged: u64,
    /// The last optimizer step whose state was written (or found not due).
    saved: u64,
    last: Option<DistillStats>,
    histogram: MappingHistogram,
    log: Option<StatsLog>,
    state: Option<StateDir>,
}

/// The task loss on the gold labels and its gradient with respect to the logits.
fn task_loss<B: Backend>(
    b: &B,
    logits: &B::Tensor,
    targets: Targets<'_>,
    dl: f64,
) -> Result<(f64, B::Tensor)> {
    match targets {
        Targets::Classes(labels) => {
            let (loss, probs) = b.cross_entropy_fwd(logits, labels, IGNORE_INDEX)?;
            Ok((loss, b.cross_entropy_bwd(&probs, labels, IGNORE_INDEX, dl)?))
        }
        Targets::Values(values) => {
            let target = b.upload(&Tensor::new([values.len(), 1], values.to_vec())?)?;
            if b.shape(logits) != b.shape(&target) {
                return Err(DistillError::mismatch(
                    "task loss",
                    format!(
                        "regression logits {} for {} targets",
                        b.shape(logits),
                        values.len()
                    ),
                ));
            }
            Ok((b.mse_fwd(logits, &target)?, b.mse_bwd(logits, &target, dl)?))
        }
    }
}

/// `a += x`, or `a = x` when `a` is empty.
fn add_into<B: Backend>(b: &B, a: &mut Option<B::Tensor>, x: B::Tensor) -> Result<()> {
    match a {
        Some(acc) => b.add_assign(acc, &x)?,
        None => *a = Some(x),
    }
    Ok(())
}

impl<B: Backend> Distiller<B> {
    /// A distiller of `teacher` into whatever student the trainer trains, under `config`.
    pub fn new(teacher: BertForSequenceClassification<B>, config: DistillConfig) -> Result<Self> {
        config.validate()?;
        let projections = ProjectionSet::new(config.projection.clone());
        Ok(Distiller {
            teacher,
            config,
            projections,
            pending: 0,
            updated: 0,
            logged: 0,
            saved: 0,
            last: None,
            histogram: MappingHistogram::default(),
            log: None,
            state: None,
        })
    }

    /// Appends a `{"kind": "distill"}` line (last statistics, pair counts) to `path` every
    /// `every` steps; the trainer's `metrics.jsonl` may be that file.
    pub fn with_log(mut self, path: &Path, every: u64) -> Result<Self> {
        self.log = Some(StatsLog::new(path, every)?);
        Ok(self)
    }

    /// Saves the distiller's state (projections and their moments) into `<out_dir>/distill/`
    /// at the steps the trainer checkpoints: pass the trainer's output directory and its
    /// `checkpoint_every`.
    pub fn with_checkpoints(mut self, out_dir: &Path, every: Option<u64>) -> Result<Self> {
        self.state = Some(StateDir::new(out_dir, "distill", every)?);
        Ok(self)
    }

    /// Lends this distiller to `trainer` as its objective (the trainer also runs its step
    /// hooks, which update the projections after each optimizer step).
    pub fn attach<'a>(&'a mut self, trainer: Trainer<'a, B>) -> Trainer<'a, B>
    where
        B: 'a,
    {
        trainer.with_objective(ByRef(self))
    }

    /// Restores the state saved for the trainer checkpoint a resumed run starts from
    /// (call before `Trainer::run(.., true)`); returns that step, or `None` for a fresh
    /// start. Needs [`Distiller::with_checkpoints`].
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let state = self.state.clone().ok_or_else(|| {
            DistillError::Config("resume needs with_checkpoints(out_dir, every)".into())
        })?;
        let Some(step) = state.trainer_step()? else {
            return Ok(None);
        };
        let dir = state.step_dir(step);
        if !dir.join(STATE).exists() {
            return Err(DistillError::file(
                &dir,
                "no distiller state for the trainer's latest checkpoint",
            ));
        }
        let b = self.teacher.bert.backend().clone();
        self.projections.load(&b, &dir)?;
        let saved: BTreeMap<String, u64> = read_json(&dir.join(STATE))?;
        self.updated = saved.get("step").copied().unwrap_or(step);
        self.logged = self.updated;
        self.saved = self.updated;
        self.pending = 0;
        Ok(Some(step))
    }

    /// The settings.
    pub fn config(&self) -> DistillConfig {
        self.config.clone()
    }

    /// Statistics of the last micro-batch.
    pub fn last_stats(&self) -> Option<DistillStats> {
        self.last.clone()
    }

    /// How often each `(student, teacher)` hidden-state pair was chosen so far.
    pub fn mapping_histogram(&self) -> MappingHistogram {
        self.histogram.clone()
    }

    /// A copy of the projections.
    pub fn projections(&self) -> ProjectionSet<B::Tensor> {
        self.projections.clone()
    }

    /// Runs `f` on the projections (to replace or inspect them in place); `f` must not call
    /// back into this distiller.
    pub fn update_projections<R>(
        &mut self,
        f: impl FnOnce(&mut ProjectionSet<B::Tensor>) -> R,
    ) -> R {
        f(&mut self.projections)
    }

    /// The student's hidden width was cut to the channels `keep` (ascending): cuts every
    /// projection's input alike, so the projections keep what they learnt.
    pub fn keep_student_hidden(&mut self, keep: &[usize]) -> Result<()> {
        let b = self.teacher.bert.backend().clone();
        self.projections.keep_inputs(&b, keep)?;
        // A state saved earlier in this step predates the cut.
        self.saved = self.saved.min(self.updated.saturating_sub(1));
        Ok(())
    }
}

impl<B: Backend> Distiller<B> {
    /// Forward and backward of one micro-batch; accumulates the gradients of
    /// `scale · loss` into `grads` (and the projections' accumulators).
    fn accumulate_batch(
        &mut self,
        student: &BertForSequenceClassification<B>,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> Result<DistillStats> {
        let b = student.bert.backend().clone();
        let cfg = self.config.clone();
        let layers = cfg.alpha_layer > 0.0;
        let inputs = &batch.inputs;
        let t_out = self.teacher.bert.forward(
            inputs,
            &ForwardOptions {
                output_hidden_states: layers,
                seed: 0,
            },
        )?;
        let (s_out, cache) = student.bert.forward_t(
            inputs,
            &ForwardOptions {
                output_hidden_states: layers,
                seed,
            },
        )?;
        let logits = if cfg.alpha_ce > 0.0 || cfg.alpha_kd > 0.0 {
            match (&s_out.logits, &t_out.logits) {
                (Some(s), Some(t)) => Some((s, t)),
                _ => {
                    return Err(DistillError::mismatch(
                        "distillation",
                        "the logit losses need a classifier on both student and teacher",
                    ));
                }
            }
        } else {
            None
        };
        let mut dlogits: Option<B::Tensor> = None;
        let mut total = 0.0;
        let ce = match logits.filter(|_| cfg.alpha_ce > 0.0) {
            Some((zs, _)) => {
                let (l, d) = task_loss(&b, zs, batch.labels.as_targets(), cfg.alpha_ce * scale)?;
                add_into(&b, &mut dlogits, d)?;
                total += cfg.alpha_ce * l;
                Some(l)
            }
            None => None,
        };
        let kd = match logits.filter(|_| cfg.alpha_kd > 0.0) {
            Some((zs, zt)) => {
                let loss = LogitLoss {
                    temperature: cfg.temperature,
                };
                let l = loss.forward(&b, zs, zt)?;
                add_into(
                    &b,
                    &mut dlogits,
                    loss.backward(&b, zs, zt, cfg.alpha_kd * scale)?,
                )?;
                total += cfg.alpha_kd * l;
                Some(l)
            }
            None => None,
        };
        let mut d = OutputGrads {
            logits: dlogits,
            ..OutputGrads::default()
        };
        let (layer, pairs) = if layers {
            let (l, pairs, dh) = self.layer_loss(
                &b,
                student,
                &s_out.hidden_states,
                &t_out.hidden_states,
                inputs,
                cfg.alpha_layer * scale,
            )?;
            d.hidden_states = dh;
            total += cfg.alpha_layer * l;
            (Some(l), pairs)
        } else {
            (None, Vec::new())
        };
        student.bert.backward(cache, d, grads)?;
        if layers && !self.projections.is_empty() {
            self.pending += 1;
        }
        let stats = DistillStats {
            loss: total,
            ce,
            kd,
            layer,
            pairs,
        };
        Ok(stats)
    }

    /// The hidden-state loss of the chosen pairs, the pairs, and the gradient of
    /// `dl · loss` with respect to each student hidden state (index 0: embeddings).
    #[allow(clippy::type_complexity)]
    fn layer_loss(
        &mut self,
        b: &B,
        student: &BertForSequenceClassification<B>,
        hs: &[B::Tensor],
        ht: &[B::Tensor],
        inputs: &prune_transformer::Batch,
        dl: f64,
    ) -> Result<(f64, Vec<LayerPair>, Vec<Option<B::Tensor>>)> {
        let scfg = &student.bert.config;
        let (ls, lt) = (hs.len().saturating_sub(1), ht.len().saturating_sub(1));
        let heads: Vec<usize> = (0..scfg.num_hidden_layers).map(|l| scfg.heads(l)).collect();
        let candidates = self.config.mapping.candidates(ls, lt, &heads)?;
        self.projections.ensure(
            b,
            &candidates,
            hs,
            ht,
            &inputs.attention_mask,
            self.config.tokens,
        )?;
        let rows = TokenRows::new(b, self.config.tokens, &inputs.attention_mask)?;
        // Teacher states once, selected; student states projected, then selected.
        let mut teacher: BTreeMap<usize, B::Tensor> = BTreeMap::new();
        for (_, cands) in &candidates {
            for &t in cands {
                if let std::collections::btree_map::Entry::Vacant(e) = teacher.entry(t) {
                    e.insert(rows.select(b, ht[t].clone())?);
                }
            }
        }
        let mut flat: BTreeMap<usize, B::Tensor> = BTreeMap::new();
        let mut projected: BTreeMap<usize, B::Tensor> = BTreeMap::new();
        let n = inputs.tokens();
        for (s, _) in &candidates {
            let c = b.shape(&hs[*s]).last();
            let x = b.reshape(hs[*s].clone(), Shape::from([n, c]))?;
            let y = match self.projections.get(*s) {
                Some(p) => p.forward(b, &x)?,
                None => x.clone(),
            };
            projected.insert(*s, rows.select(b, y)?);
            flat.insert(*s, x);
        }
        let mut table = LossTable::new();
        for (s, cands) in &candidates {
            for &t in cands {
                let (y, target) = (&projected[s], &teacher[&t]);
                if b.shape(y) != b.shape(target) {
                    return Err(DistillError::mismatch(
                        "hidden-state loss",
                        format!(
                            "student state {s} ({}) against teacher state {t} ({})",
                            b.shape(y),
                            b.shape(target)
                        ),
                    ));
                }
                table.insert((*s, t), rows.mse_fwd(b, y, target)?);
            }
        }
        let pairs = self.config.mapping.choose(&table);
        let mut dy: BTreeMap<usize, Option<B::Tensor>> = BTreeMap::new();
        for p in &pairs {
            let g = rows.mse_bwd(b, &projected[&p.student], &teacher[&p.teacher], dl)?;
            add_into(b, dy.entry(p.student).or_default(), g)?;
        }
        let mut dh: Vec<Option<B::Tensor>> = vec![None; hs.len()];
        for (s, g) in dy {
            let Some(g) = g else { continue };
            let dx = match self.projections.get_mut(s) {
                Some(p) => p.backward(b, &flat[&s], &g)?,
                None => g,
            };
            dh[s] = Some(b.reshape(dx, b.shape(&hs[s]).clone())?);
        }
        self.histogram.add(&pairs);
        if let Some(log) = &mut self.log {
            log.add(&pairs);
        }
        Ok((pairs.iter().map(|p| p.loss).sum(), pairs, dh))
    }

    /// The distiller's duties after optimizer step `info.step` (each runs once per step):
    /// updates the projections with the gradients accumulated since the last update, writes
    /// the log line and, at checkpoint steps, the state.
    pub fn finish_step(&mut self, info: &StepInfo) -> Result<()> {
        let b = self.teacher.bert.backend().clone();
        if info.step > self.updated {
            if self.pending > 0 {
                self.projections.step(&b, info.lr)?;
                self.pending = 0;
            }
            self.updated = info.step;
        }
        if info.step > self.logged {
            if let Some(log) = &mut self.log {
                log.step(info.step, self.last.as_ref())?;
            }
            self.logged = info.step;
        }
        if info.step > self.saved {
            if let Some(state) = self
                .state
                .as_ref()
                .filter(|s| s.due(info.step, info.total_steps))
            {
                let dir = state.create(info.step)?;
                self.projections.save(&b, &dir)?;
                let saved = BTreeMap::from([("step".to_string(), info.step)]);
                write_json(&dir.join(STATE), &saved)?;
            }
            self.saved = info.step;
        }
        Ok(())
    }
}

impl<B: Backend> Objective<B> for Distiller<B> {
    fn accumulate(
        &mut self,
        model: &BertForSequenceClassification<B>,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> prune_train::Result<f64> {
        let stats = self.accumulate_batch(model, batch, seed, scale, grads)?;
        let loss = stats.loss;
        self.last = Some(stats);
        Ok(loss)
    }
}

impl<B: Backend> Callback<B> for Distiller<B> {
    /// Updates the projections, logs and saves the state (see [`Distiller::finish_step`]).
    fn after_step(
        &mut self,
        info: &StepInfo,
        _model: &mut BertForSequenceClassification<B>,
        _optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        Ok(self.finish_step(info)?)
    }
}
