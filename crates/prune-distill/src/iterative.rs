//! `IterativePruning`: NNI's stage 4 made physical. Every `interval` steps (a round) the
//! FFN neurons of each layer, and optionally the hidden channels, are ranked by their
//! first-order Taylor importance accumulated over the steps before the round (the
//! `TaylorPruner` of `prune-pruners`), the least important are cut out of the live student
//! (masks → `PruningPlan` → surgery, `prune-speedup`), the optimizer moments are cut alike
//! (or reset), the distiller's projections follow a hidden cut, and distillation goes on.
//!
//! Goals are fractions of the widths the student had when the loop began. After round `k`
//! of `K` a layer of `F₀` neurons keeps `F₀ − ⌊F₀ · f_k⌋`, with `f_k` the goal times
//! `1 − (1 − k/K)³` (AGP), times `k/K` (linear), or `1 − (1 − goal)^(k/K)` (geometric: the
//! same fraction of the remaining neurons every round, as NNI's v2 tutorial does). Rounds
//! fall after steps `interval · k`, `k = 1..=K`; the student's statistics start afresh
//! after each round, so the steps of a round's window count with the shapes they had.
//!
//! With state checkpoints the plan of every round is written at the trainer's checkpoint
//! steps; a resumed run reads back the history that matches the restored model.

use crate::distiller::Distiller;
use crate::error::{DistillError, Result};
pub use crate::rounds::{IterativeConfig, MomentPolicy, RoundGrowth};
use crate::rounds::{exact_ratio, ffn_widths};
use prune_data::LabelledBatch;
use prune_pruners::{ConfigEntry, ConfigList, Growth, Iterative, TaylorPruner};
use prune_speedup::{GroupKind, PruningPlan};
use prune_tensor::Backend;
use prune_train::state::{StateDir, read_json, write_json};
use prune_train::{ByRef, Callback, Objective, Optimizer, StepInfo, Trainer};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertParams, canonical_name};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the round history inside a state directory.
const PLANS: &str = "plans.json";

/// The embedding tables whose hidden columns carry the hidden width's statistics (those the
/// model's family stores), when the tables have the hidden width.
const EMBEDDINGS: [&str; 3] = [
    "bert.embeddings.word_embeddings",
    "bert.embeddings.position_embeddings",
    "bert.embeddings.token_type_embeddings",
];

/// The layer whose output rows carry them when a projection maps the embeddings to the
/// hidden width (ELECTRA).
const PROJECTION: &str = "bert.embeddings_project";

/// One round: when, and what it cut.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// Optimizer step after which it ran.
    pub step: u64,
    /// Its number k (1-based).
    pub round: u64,
    /// What it removed, numbered as in the student before the round.
    pub plan: PruningPlan,
    /// FFN width of each layer after it.
    pub ffn: Vec<usize>,
    /// Hidden width after it.
    pub hidden: usize,
    /// Student parameters after it.
    pub parameters: usize,
}

/// What the state directory holds for the loop.
#[derive(Serialize, Deserialize)]
struct Saved {
    original_ffn: Vec<usize>,
    original_hidden: usize,
    rounds: Vec<Round>,
}

/// The Taylor statistics of the coming round.
struct Pending {
    round: u64,
    /// `None` when the round has nothing to cut.
    pruner: Option<TaylorPruner>,
}

/// The iterative prune-while-distilling loop, a trainer callback.
pub struct IterativePruning<B: Backend> {
    distiller: Distiller<B>,
    config: IterativeConfig,
    original_ffn: Vec<usize>,
    original_hidden: usize,
    pending: Option<Pending>,
    rounds: Vec<Round>,
    state: Option<StateDir>,
    /// Whether the student's shapes were checked against the history.
    checked: bool,
}

impl<B: Backend> IterativePruning<B> {
    /// A loop pruning `student` (as it is now: the goals are fractions of its widths) while
    /// `distiller` distils into it.
    pub fn new(
        distiller: Distiller<B>,
        config: IterativeConfig,
        student: &BertForSequenceClassification<B>,
    ) -> Result<Self> {
        let c = &student.bert.config;
        config.validate(c.num_hidden_layers)?;
        Ok(IterativePruning {
            distiller,
            config,
            original_ffn: ffn_widths(c),
            original_hidden: c.hidden(),
            pending: None,
            rounds: Vec::new(),
            state: None,
            checked: false,
        })
    }

    /// Saves the round history into `<out_dir>/distill/` at the trainer's checkpoint steps
    /// (pass its output directory and `checkpoint_every`). The distiller's own state needs
    /// `Distiller::with_checkpoints` with the same arguments.
    pub fn with_checkpoints(mut self, out_dir: &Path, every: Option<u64>) -> Result<Self> {
        self.state = Some(StateDir::new(out_dir, "distill", every)?);
        Ok(self)
    }

    /// Restores the history and the distiller's state saved for the trainer checkpoint a
    /// resumed run starts from (call before `Trainer::run(.., true)`); returns its step,
    /// or `None` for a fresh start.
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let state = self.state.clone().ok_or_else(|| {
            DistillError::Config("resume needs with_checkpoints(out_dir, every)".into())
        })?;
        let Some(step) = self.distiller.resume()? else {
            return Ok(None);
        };
        let saved: Saved = read_json(&state.step_dir(step).join(PLANS))?;
        self.original_ffn = saved.original_ffn;
        self.original_hidden = saved.original_hidden;
        self.rounds = saved.rounds;
        self.pending = None;
        self.checked = false;
        Ok(Some(step))
    }

    /// Lends this loop to `trainer` as its objective: the distiller's loss, and step hooks
    /// that run the distiller's per-step duties and the pruning rounds.
    pub fn attach<'a>(&'a mut self, trainer: Trainer<'a, B>) -> Trainer<'a, B>
    where
        B: 'a,
    {
        trainer.with_objective(ByRef(self))
    }

    /// The distiller.
    pub fn distiller(&self) -> &Distiller<B> {
        &self.distiller
    }

    /// The rounds done so far.
    pub fn rounds(&self) -> &[Round] {
        &self.rounds
    }

    /// The settings.
    pub fn config(&self) -> &IterativeConfig {
        &self.config
    }

    /// Every round's plan composed into one plan on the student the loop began with.
    pub fn plan(&self) -> Result<PruningPlan> {
        let mut plan = PruningPlan::new();
        for r in &self.rounds {
            plan = plan.then(&r.plan)?;
        }
        Ok(plan)
    }

    /// Checks once that the student's widths are those the history leaves.
    fn check_student(&mut self, config: &BertConfig) -> Result<()> {
        if self.checked {
            return Ok(());
        }
        let (ffn, hidden) = match self.rounds.last() {
            Some(r) => (r.ffn.clone(), r.hidden),
            None => (self.original_ffn.clone(), self.original_hidden),
        };
        if ffn_widths(config) != ffn || config.hidden() != hidden {
            return Err(DistillError::mismatch(
                "iterative pruning",
                format!(
                    "the student has FFN widths {:?} and hidden width {}, the round history \
                     leaves {ffn:?} and {hidden}",
                    ffn_widths(config),
                    config.hidden()
                ),
            ));
        }
        self.checked = true;
        Ok(())
    }

    /// The round whose statistics step `step` feeds, if any.
    fn window(&self, step: u64) -> Option<u64> {
        let k = step.div_ceil(self.config.interval);
        let round_step = k * self.config.interval;
        let inside = self
            .config
            .taylor_steps
            .is_none_or(|w| step + w > round_step);
        (k >= 1 && k <= self.config.rounds && inside).then_some(k)
    }

    /// The config list of round `k` for the student as it is now: each layer to its
    /// round-`k` FFN width, and the hidden width when it has a goal; `None` when nothing
    /// is to be cut.
    fn round_config(&self, config: &BertConfig, k: u64) -> Result<Option<ConfigList>> {
        let mut entries = Vec::new();
        for (l, &f0) in self.original_ffn.iter().enumerate() {
            let n = config.intermediate(l);
            let keep = self
                .config
                .keep(f0, self.config.ffn_goal(l), k, self.config.min_ffn);
            if n > keep {
                entries.push(ConfigEntry {
                    op_names: vec![format!("bert.encoder.layer.{l}.intermediate.dense")],
                    sparse_ratio: Some(exact_ratio(n, keep)),
                    ..ConfigEntry::default()
                });
            }
        }
        if let Some(goal) = self.config.hidden {
            let n = config.hidden();
            let keep = self
                .config
                .keep(self.original_hidden, goal, k, self.config.min_hidden);
            if n > keep {
                // A table the family does not store (DistilBERT's token types) is empty.
                let stored =
                    |s: &str| (config.family).stores(&format!("{}.weight", canonical_name(s)));
                let op_names = match config.projects_embeddings() {
                    true => vec![PROJECTION.to_string()],
                    false => (EMBEDDINGS.into_iter())
                        .filter(|s| stored(s))
                        .map(String::from)
                        .collect(),
                };
                entries.push(ConfigEntry {
                    op_names,
                    sparse_ratio: Some(exact_ratio(n, keep)),
                    dependency_group_id: Some("hidden".into()),
                    ..ConfigEntry::default()
                });
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(ConfigList::new(entries)?))
    }

    /// Adds one backward pass to the statistics of the round it belongs to.
    fn collect(
        &mut self,
        step: u64,
        model: &BertForSequenceClassification<B>,
        grads: &BertParams<B::Tensor>,
    ) -> Result<()> {
        self.check_student(&model.bert.config)?;
        let Some(k) = self.window(step) else {
            return Ok(());
        };
        if self.pending.as_ref().is_none_or(|p| p.round != k) {
            let pruner = match self.round_config(&model.bert.config, k)? {
                Some(list) => Some(TaylorPruner::from_config(
                    &list,
                    &model.bert,
                    Iterative::once(1)?,
                )?),
                None => None,
            };
            self.pending = Some(Pending { round: k, pruner });
        }
        if let Some(p) = self.pending.as_mut().and_then(|p| p.pruner.as_mut()) {
            p.accumulate(&model.bert, grads)?;
        }
        Ok(())
    }

    /// Runs round `k` after step `step`: ranks, plans, cuts the student and the moments.
    fn round(
        &mut self,
        step: u64,
        k: u64,
        model: &mut BertForSequenceClassification<B>,
        optimizer: &mut Optimizer<B::Tensor>,
    ) -> Result<()> {
        let pending = self.pending.take().filter(|p| p.round == k);
        let pruner = match pending {
            Some(Pending { pruner, .. }) => pruner,
            // No statistics were collected for this round: there is nothing to cut only if
            // the goals say so.
            None => match self.round_config(&model.bert.config, k)? {
                Some(_) => {
                    return Err(DistillError::mismatch(
                        "iterative pruning",
                        format!("round {k} after step {step} has no Taylor statistics"),
                    ));
                }
                None => None,
            },
        };
        let plan = match pruner {
            Some(p) if p.passes() == 0 => {
                return Err(DistillError::mismatch(
                    "iterative pruning",
                    format!("round {k} after step {step} has no Taylor statistics"),
                ));
            }
            Some(p) => {
                let masks = p.masks_for_update(1)?;
                let weight_masks = masks.to_model(&model.bert)?;
                prune_speedup::plan_from_masks(&model.bert, &weight_masks)?
            }
            None => PruningPlan::new(),
        };
        if !plan.is_identity() {
            let b = model.bert.backend().clone();
            match self.config.moments {
                MomentPolicy::Slice => prune_speedup::apply(
                    &mut model.bert,
                    &plan,
                    &mut [&mut optimizer.m, &mut optimizer.v],
                )?,
                MomentPolicy::Reset => {
                    prune_speedup::apply(&mut model.bert, &plan, &mut [])?;
                    *optimizer = Optimizer::new(&b, &model.bert.params, optimizer.config)?;
                }
            }
            if let Some(hidden) = plan.get(GroupKind::Hidden) {
                self.distiller.keep_student_hidden(&hidden.keep)?;
            }
        }
        let c = &model.bert.config;
        self.rounds.push(Round {
            step,
            round: k,
            plan,
            ffn: ffn_widths(c),
            hidden: c.hidden(),
            parameters: model.bert.num_parameters(),
        });
        Ok(())
    }

    /// Writes the history at the trainer's checkpoint steps.
    fn save(&self, info: &StepInfo) -> Result<()> {
        let Some(state) = self
            .state
            .as_ref()
            .filter(|s| s.due(info.step, info.total_steps))
        else {
            return Ok(());
        };
        let dir = state.create(info.step)?;
        let saved = Saved {
            original_ffn: self.original_ffn.clone(),
            original_hidden: self.original_hidden,
            rounds: self.rounds.clone(),
        };
        Ok(write_json(&dir.join(PLANS), &saved)?)
    }
}

impl<B: Backend> Callback<B> for IterativePruning<B> {
    /// Accumulates the Taylor statistics of the coming round inside its window.
    fn after_backward(
        &mut self,
        info: &StepInfo,
        model: &BertForSequenceClassification<B>,
        grads: &BertParams<B::Tensor>,
    ) -> prune_train::Result<()> {
        Ok(self.collect(info.step, model, grads)?)
    }

    /// Updates the distiller's projections, runs a round when one is due, and saves the
    /// state of both at checkpoint steps.
    fn after_step(
        &mut self,
        info: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        self.distiller.finish_step(info)?;
        let schedule = Iterative {
            growth: Growth::Agp,
            interval: self.config.interval,
            total_times: self.config.rounds,
        };
        if let Some(k) = schedule.update_at(info.step) {
            self.round(info.step, k, model, optimizer)?;
        }
        self.save(info)?;
        // Saves the projections again if a hidden cut changed them after their state was
        // written for this step.
        self.distiller.finish_step(info)?;
        Ok(())
    }
}

impl<B: Backend> Objective<B> for IterativePruning<B> {
    /// The distiller's loss.
    fn accumulate(
        &mut self,
        model: &BertForSequenceClassification<B>,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> prune_train::Result<f64> {
        self.distiller.accumulate(model, batch, seed, scale, grads)
    }
}
