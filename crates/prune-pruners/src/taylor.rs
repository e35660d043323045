//! `TaylorPruner`: first-order Taylor importance (Molchanov et al. 2019) with NNI's
//! semantics, run inside the `Trainer` as a step callback.
//!
//! After each backward pass it accumulates `Σ_{e ∈ b} (w_e · g_e)²` per metric block
//! (per output row of a Linear with the default granularity, per hidden column of an
//! Embedding), where `g = dW_eff ⊙ M` is the gradient of the raw weight (already masked
//! weights score 0). On the steps of its [`Iterative`] schedule (AGP: every `interval`
//! steps the goals become `goal · (1 − (1 − k/K)³)`) it turns the statistics, averaged
//! over the passes since the last update, into masks (per weight, global or
//! dependency-aware, see [`crate::allocate`]), sets them on the model and starts afresh.
//! A one-shot pruner over `training_steps` passes is `Iterative::once(training_steps)`.

use crate::allocate::generate;
use crate::config::ConfigList;
use crate::error::{PrunerError, Result};
use crate::granularity::Blocking;
use crate::host::{download, download_masks};
use crate::masks::{Masks, ParamMask};
use crate::modules::modules_of;
use crate::schedule::Iterative;
use crate::select::{Selection, Target};
use prune_tensor::Backend;
use prune_train::ByRef;
use prune_train::{Callback, Optimizer, StepInfo, TrainSummary, Trainer};
use prune_transformer::{BertForSequenceClassification, BertModel, BertParams};

/// `Σ_{e ∈ b} (w_e · dW_eff_e · m_e)²` per block: the Taylor importance of one backward
/// pass, given the raw weight, the gradient with respect to the effective weight and the
/// weight's current per-element mask (if any).
pub fn taylor_importance(
    blocking: &Blocking,
    weight: &[f32],
    grad: &[f32],
    mask: Option<&[f32]>,
) -> Vec<f64> {
    blocking.reduce(|i| {
        let m = mask.map_or(1.0, |m| f64::from(m[i]));
        (f64::from(weight[i]) * f64::from(grad[i]) * m).powi(2)
    })
}

/// Taylor pruning of the selected weights on an iterative schedule.
#[derive(Clone, Debug)]
pub struct TaylorPruner {
    targets: Vec<Target>,
    schedule: Iterative,
    sums: Vec<Vec<f64>>,
    passes: u64,
    updates: u64,
    masks: Masks,
    last_metrics: Vec<Vec<f64>>,
}

impl TaylorPruner {
    /// A pruner of `selection`'s targets, updating its masks on `schedule`.
    pub fn new(selection: &Selection, schedule: Iterative) -> Result<Self> {
        let targets = selection.targets.clone();
        if targets.is_empty() {
            return Err(PrunerError::Settings(
                "nothing is selected for pruning".into(),
            ));
        }
        let mut masks = Masks::new();
        for t in &targets {
            masks.insert(&t.param, ParamMask::ones(t.blocking.clone()));
        }
        Ok(TaylorPruner {
            sums: targets
                .iter()
                .map(|t| vec![0.0; t.blocking.metric_numel()])
                .collect(),
            targets,
            schedule,
            passes: 0,
            updates: 0,
            masks,
            last_metrics: Vec::new(),
        })
    }

    /// A pruner of the weights `config` selects in `model`.
    pub fn from_config<B: Backend>(
        config: &ConfigList,
        model: &BertModel<B>,
        schedule: Iterative,
    ) -> Result<Self> {
        Self::new(&config.select(&modules_of(model))?, schedule)
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The schedule.
    pub fn schedule(&self) -> &Iterative {
        &self.schedule
    }

    /// The masks last generated (all-ones before the first update).
    pub fn masks(&self) -> &Masks {
        &self.masks
    }

    /// Updates done so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Backward passes accumulated since the last update.
    pub fn passes(&self) -> u64 {
        self.passes
    }

    /// The importance of every block: the accumulated statistics averaged over the passes
    /// since the last update (NNI v3 divides by the number of steps).
    pub fn metrics(&self) -> Vec<Vec<f64>> {
        let n = self.passes.max(1) as f64;
        self.sums
            .iter()
            .map(|s| s.iter().map(|x| x / n).collect())
            .collect()
    }

    /// The metrics the last update used (empty before the first).
    pub fn last_metrics(&self) -> &[Vec<f64>] {
        &self.last_metrics
    }

    /// Adds one backward pass of `model` with gradients `grads` to the statistics.
    pub fn accumulate<B: Backend>(
        &mut self,
        model: &BertModel<B>,
        grads: &BertParams<B::Tensor>,
    ) -> Result<()> {
        let names: Vec<String> = self.targets.iter().map(|t| t.param.clone()).collect();
        let b = model.backend();
        let weights = download(b, &model.params, &names)?;
        let dw = download(b, grads, &names)?;
        let masks = download_masks(b, model.masks(), &names)?;
        for (i, t) in self.targets.iter().enumerate() {
            t.blocking.check_len(&t.param, weights[i].len())?;
            t.blocking.check_len(&t.param, dw[i].len())?;
            let imp = taylor_importance(&t.blocking, &weights[i], &dw[i], masks[i].as_deref());
            for (s, x) in self.sums[i].iter_mut().zip(imp) {
                *s += x;
            }
        }
        self.passes += 1;
        Ok(())
    }

    /// Masks from the current statistics at update `k` of the schedule.
    pub fn masks_for_update(&self, k: u64) -> Result<Masks> {
        generate(&self.targets, &self.metrics(), self.schedule.ratio(k))
    }

    /// Trains `model` with `trainer`, this pruner riding along as a step callback, and
    /// returns the final masks (also left set on the model) with the run's summary. Give
    /// the trainer at least `schedule.total_steps()` steps for the full goals.
    pub fn compress<B: Backend>(
        &mut self,
        trainer: Trainer<'_, B>,
        model: &mut BertForSequenceClassification<B>,
    ) -> Result<(Masks, TrainSummary)> {
        let summary = trainer.with_callback(ByRef(self)).run(model, false)?;
        Ok((self.masks.clone(), summary))
    }
}

impl<B: Backend> Callback<B> for TaylorPruner {
    /// Accumulates the step's importance while the schedule has updates left.
    fn after_backward(
        &mut self,
        _info: &StepInfo,
        model: &BertForSequenceClassification<B>,
        grads: &BertParams<B::Tensor>,
    ) -> prune_train::Result<()> {
        if self.updates < self.schedule.total_times {
            self.accumulate(&model.bert, grads)?;
        }
        Ok(())
    }

    /// On an update step, generates masks at the scheduled goals, sets them on the model
    /// and clears the statistics.
    fn after_step(
        &mut self,
        info: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        _optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        if let Some(k) = self.schedule.update_at(info.step) {
            let masks = self.masks_for_update(k)?;
            masks.apply(&mut model.bert)?;
            self.masks = masks;
            self.updates = k;
            self.last_metrics = self.metrics();
            self.sums.iter_mut().for_each(|s| s.fill(0.0));
            self.passes = 0;
        }
        Ok(())
    }
}
