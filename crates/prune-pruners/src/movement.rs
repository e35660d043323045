//! `MovementPruner`: movement pruning with NNI's semantics, run inside the `Trainer` as a
//! step callback.
//!
//! Each selected weight W gets a score S per metric block, initialised to 0 and trained by
//! its own Adam (lr 1e-2, no decay) from the straight-through gradient
//! `dS_b = Σ_{e ∈ b} dW_eff[e] · W[e]` (the stored gradient is w.r.t. the effective weight
//! W ⊙ M, so masked blocks keep receiving gradient and can come back). The goals ramp with
//! the cubic schedule between `warmup_step` and `cooldown_begin_step`; after every
//! optimizer step past warm-up the masks are regenerated and set on the model:
//!
//! - soft (entries with `sparse_threshold` τ): keep blocks with `σ(S) ≥ τ · ratio(t)`; the
//!   regulariser `regular_scale · ratio(t) · mean_k mean(σ(S_k))` over these weights pushes
//!   scores down, and its gradient goes to S only (computed here, not through the loss);
//! - hard (entries with `sparse_ratio` r): prune the `⌊r · ratio(t) · n⌋` blocks of
//!   smallest score.

use crate::adam::ScoreAdam;
use crate::allocate::generate;
use crate::config::ConfigList;
use crate::error::{PrunerError, Result};
use crate::granularity::Blocking;
use crate::host::download;
use crate::masks::{Masks, ParamMask};
use crate::modules::modules_of;
use crate::schedule::Cubic;
use crate::select::{Selection, Target};
use prune_tensor::Backend;
use prune_train::ByRef;
use prune_train::state::{StateDir, read_json, write_json};
use prune_train::{Callback, Optimizer, StepInfo, TrainSummary, Trainer};
use prune_transformer::{BertForSequenceClassification, BertModel, BertParams};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Settings of movement pruning (NNI's `MovementPruner` arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MovementSettings {
    /// Optimizer steps before any pruning (masks stay all-ones up to here).
    pub warmup_step: u64,
    /// Step from which the goals are at their final value.
    pub cooldown_begin_step: u64,
    /// Weight of the score regulariser (soft mode).
    pub regular_scale: f64,
    /// Learning rate of the scores' Adam.
    pub score_lr: f64,
}

impl MovementSettings {
    /// Settings with NNI's score learning rate 1e-2.
    pub fn new(warmup_step: u64, cooldown_begin_step: u64, regular_scale: f64) -> Self {
        MovementSettings {
            warmup_step,
            cooldown_begin_step,
            regular_scale,
            score_lr: 1e-2,
        }
    }

    /// Checks the settings can work: warm-up before cool-down, a finite regulariser
    /// weight >= 0 and a score learning rate > 0.
    pub fn validate(&self) -> Result<()> {
        Cubic::new(self.warmup_step, self.cooldown_begin_step)?;
        if !(self.regular_scale.is_finite() && self.regular_scale >= 0.0) {
            return Err(PrunerError::Settings(format!(
                "regular_scale must be a finite number >= 0, got {}",
                self.regular_scale
            )));
        }
        if !(self.score_lr.is_finite() && self.score_lr > 0.0) {
            return Err(PrunerError::Settings(format!(
                "the score learning rate must be a finite number > 0, got {}",
                self.score_lr
            )));
        }
        Ok(())
    }
}

/// `dS_b = Σ_{e ∈ b} dW_eff[e] · W[e]`: the straight-through gradient of the block scores
/// given the raw weight and the gradient with respect to the effective weight.
pub fn score_gradient(blocking: &Blocking, weight: &[f32], grad: &[f32]) -> Vec<f64> {
    blocking.reduce(|i| f64::from(grad[i]) * f64::from(weight[i]))
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Movement pruning of the selected weights.
#[derive(Clone, Debug)]
pub struct MovementPruner {
    targets: Vec<Target>,
    scores: Vec<Vec<f64>>,
    adam: ScoreAdam,
    schedule: Cubic,
    regular_scale: f64,
    masks: Masks,
    /// Whether `masks` is what the model carries (re-uploading unchanged masks is skipped).
    applied: bool,
    regularisation: f64,
    /// Where scores are saved at the trainer's checkpoint steps, when resumable.
    state: Option<StateDir>,
}

/// The file of a state directory holding the scores and their optimizer.
const STATE: &str = "movement.json";

/// What a resumed run needs to go on scoring exactly where it stopped.
#[derive(Serialize, Deserialize)]
struct Saved {
    scores: Vec<Vec<f64>>,
    adam: ScoreAdam,
}

impl MovementPruner {
    /// A pruner of `selection`'s targets: soft where the entry sets `sparse_threshold`,
    /// hard where it sets `sparse_ratio`.
    pub fn new(selection: &Selection, settings: MovementSettings) -> Result<Self> {
        settings.validate()?;
        let schedule = Cubic::new(settings.warmup_step, settings.cooldown_begin_step)?;
        let targets = selection.targets.clone();
        if targets.is_empty() {
            return Err(PrunerError::Settings(
                "nothing is selected for pruning".into(),
            ));
        }
        let lens: Vec<usize> = targets.iter().map(|t| t.blocking.metric_numel()).collect();
        let mut masks = Masks::new();
        for t in &targets {
            masks.insert(&t.param, ParamMask::ones(t.blocking.clone()));
        }
        Ok(MovementPruner {
            scores: lens.iter().map(|&n| vec![0.0; n]).collect(),
            adam: ScoreAdam::new(settings.score_lr, &lens),
            targets,
            schedule,
            regular_scale: settings.regular_scale,
            masks,
            applied: false,
            regularisation: 0.0,
            state: None,
        })
    }

    /// Saves the scores and their optimizer into `<out_dir>/movement/` at the steps the
    /// trainer checkpoints: pass the trainer's output directory and its `checkpoint_every`.
    pub fn with_checkpoints(mut self, out_dir: &Path, every: Option<u64>) -> Result<Self> {
        self.state = Some(StateDir::new(out_dir, "movement", every)?);
        Ok(self)
    }

    /// Restores the scores saved for the trainer checkpoint a resumed run starts from
    /// (before `compress(.., true)`); returns that step, or `None` for a fresh start.
    /// Needs [`MovementPruner::with_checkpoints`].
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let state = self.state.as_ref().ok_or_else(|| {
            PrunerError::Settings("resume needs with_checkpoints(out_dir, every)".into())
        })?;
        let Some(step) = state.trainer_step()? else {
            return Ok(None);
        };
        let saved: Saved = read_json(&state.step_dir(step).join(STATE))?;
        self.set_scores(saved.scores)?;
        self.adam = saved.adam;
        Ok(Some(step))
    }

    /// A pruner of the weights `config` selects in `model`.
    pub fn from_config<B: Backend>(
        config: &ConfigList,
        model: &BertModel<B>,
        settings: MovementSettings,
    ) -> Result<Self> {
        Self::new(&config.select(&modules_of(model))?, settings)
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The scores, one vector per target at metric shape.
    pub fn scores(&self) -> &[Vec<f64>] {
        &self.scores
    }

    /// Replaces the scores (e.g. saved from an earlier run); each vector must have its
    /// target's number of blocks.
    pub fn set_scores(&mut self, scores: Vec<Vec<f64>>) -> Result<()> {
        if scores.len() != self.targets.len() {
            return Err(PrunerError::Settings(format!(
                "{} score vectors for {} targets",
                scores.len(),
                self.targets.len()
            )));
        }
        for (t, s) in self.targets.iter().zip(&scores) {
            if s.len() != t.blocking.metric_numel() {
                return Err(PrunerError::Mask {
                    name: t.param.clone(),
                    why: format!(
                        "{} scores for {} blocks",
                        s.len(),
                        t.blocking.metric_numel()
                    ),
                });
            }
        }
        self.scores = scores;
        Ok(())
    }

    /// The masks last generated (all-ones until warm-up ends).
    pub fn masks(&self) -> &Masks {
        &self.masks
    }

    /// The regulariser's value at the last step.
    pub fn regularisation(&self) -> f64 {
        self.regularisation
    }

    /// The fraction of the goals in force after `step` optimizer steps.
    pub fn ratio(&self, step: u64) -> f64 {
        self.schedule.ratio(step)
    }

    /// The regulariser `regular_scale · ratio · (1/K) Σ_k mean(σ(S_k))` over the K soft
    /// targets, and its gradient with respect to every score (zero for hard targets).
    pub fn regulariser(&self, ratio: f64) -> (f64, Vec<Vec<f64>>) {
        let soft = self
            .targets
            .iter()
            .filter(|t| t.sparse_threshold.is_some())
            .count();
        let mut grads: Vec<Vec<f64>> = self.scores.iter().map(|s| vec![0.0; s.len()]).collect();
        if soft == 0 || self.regular_scale == 0.0 || ratio == 0.0 {
            return (0.0, grads);
        }
        let factor = self.regular_scale * ratio / soft as f64;
        let mut value = 0.0;
        for ((t, s), g) in self.targets.iter().zip(&self.scores).zip(&mut grads) {
            if t.sparse_threshold.is_none() {
                continue;
            }
            let n = s.len() as f64;
            for (x, gi) in s.iter().zip(g.iter_mut()) {
                let p = sigmoid(*x);
                value += factor * p / n;
                *gi = factor * p * (1.0 - p) / n;
            }
        }
        (value, grads)
    }

    /// The masks the scores give after `step` optimizer steps (all-ones up to warm-up).
    pub fn masks_at(&self, step: u64) -> Result<Masks> {
        let metrics: Vec<Vec<f64>> = self
            .scores
            .iter()
            .map(|s| s.iter().map(|&x| sigmoid(x)).collect())
            .collect();
        generate(&self.targets, &metrics, self.ratio(step))
    }

    /// Trains `model` with `trainer` (continuing its newest checkpoint with `resume`, after
    /// [`MovementPruner::resume`]), this pruner riding along as a step callback, and
    /// returns the final masks (also left set on the model) with the run's summary.
    pub fn compress<B: Backend>(
        &mut self,
        trainer: Trainer<'_, B>,
        model: &mut BertForSequenceClassification<B>,
        resume: bool,
    ) -> Result<(Masks, TrainSummary)> {
        self.applied = false;
        let summary = trainer.with_callback(ByRef(self)).run(model, resume)?;
        Ok((self.masks.clone(), summary))
    }

    /// Regenerates the masks of step `step` and sets them on `model` (past warm-up).
    fn refresh<B: Backend>(&mut self, step: u64, model: &mut BertModel<B>) -> Result<()> {
        if step > self.schedule.warmup {
            let masks = self.masks_at(step)?;
            if !(self.applied && masks == self.masks) {
                masks.apply(model)?;
                self.masks = masks;
                self.applied = true;
            }
        }
        Ok(())
    }

    /// Score gradients of one step: straight-through from the model's gradients, plus the
    /// regulariser at `ratio`.
    fn score_grads<B: Backend>(
        &mut self,
        model: &BertModel<B>,
        grads: &BertParams<B::Tensor>,
        ratio: f64,
    ) -> Result<Vec<Vec<f64>>> {
        let names: Vec<String> = self.targets.iter().map(|t| t.param.clone()).collect();
        let b = model.backend();
        let weights = download(b, &model.params, &names)?;
        let dw = download(b, grads, &names)?;
        let (value, mut ds) = self.regulariser(ratio);
        self.regularisation = value;
        for (((t, w), g), d) in self.targets.iter().zip(&weights).zip(&dw).zip(&mut ds) {
            t.blocking.check_len(&t.param, w.len())?;
            t.blocking.check_len(&t.param, g.len())?;
            for (di, si) in d.iter_mut().zip(score_gradient(&t.blocking, w, g)) {
                *di += si;
            }
        }
        Ok(ds)
    }
}

impl<B: Backend> Callback<B> for MovementPruner {
    /// Steps the scores (before the main optimizer, as NNI v3 does) with the gradient of
    /// this step's loss, the regulariser taken at the ratio in force during the step.
    fn after_backward(
        &mut self,
        info: &StepInfo,
        model: &BertForSequenceClassification<B>,
        grads: &BertParams<B::Tensor>,
    ) -> prune_train::Result<()> {
        let ratio = self.ratio(info.step.saturating_sub(1));
        let ds = self.score_grads(&model.bert, grads, ratio)?;
        self.adam.step(&mut self.scores, &ds)?;
        Ok(())
    }

    /// Past warm-up, regenerates the masks from the scores and sets them on the model
    /// (skipping the upload when they did not change).
    fn after_step(
        &mut self,
        info: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        _optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        self.refresh(info.step, &mut model.bert)?;
        if let Some(state) = self
            .state
            .as_ref()
            .filter(|s| s.due(info.step, info.total_steps))
        {
            let dir = state.create(info.step)?;
            let saved = Saved {
                scores: self.scores.clone(),
                adam: self.adam.clone(),
            };
            write_json(&dir.join(STATE), &saved)?;
        }
        Ok(())
    }

    /// Puts back the masks of the checkpoint's step (the checkpoint holds the raw weights).
    fn resumed(
        &mut self,
        step: u64,
        model: &mut BertForSequenceClassification<B>,
    ) -> prune_train::Result<()> {
        self.applied = false;
        Ok(self.refresh(step, &mut model.bert)?)
    }
}
