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
use prune_pruners::{ByRef, ConfigEntry, ConfigList, Growth, Iterative, TaylorPruner};
use prune_speedup::{GroupKind, PruningPlan};
use prune_tensor::Backend;
use prune_train::state::{StateDir, read_json, write_json};
use prune_train::{Callback, Optimizer, StepInfo, Trainer};
use prune_transformer::{BertConfig, BertForSequenceClassification, BertParams};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the round history inside a state directory.
const PLANS: &str = "plans.json";

/// The three embedding tables whose hidden columns carry the hidden width's statistics.
const EMBEDDINGS: [&str; 3] = [
    "bert.embeddings.word_embeddings",
    "bert.embeddings.position_embeddings",
    "bert.embeddings.token_type_embeddings",
];

/// How the goals grow from round to round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundGrowth {
    /// `goal · (1 − (1 − k/K)³)` (NNI v3's `AGPPruner`).
    #[default]
    Agp,
    /// `goal · k/K`.
    Linear,
    /// `1 − (1 − goal)^(k/K)`: the same fraction of what remains, every round (NNI v2).
    Geometric,
}

/// What becomes of the optimizer's moments when the student is cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentPolicy {
    /// Cut them like the parameters: the surviving entries keep their history.
    #[default]
    Slice,
    /// Start from zero moments and step count (NNI creates a fresh Adam every round).
    Reset,
}

/// Settings of the iterative loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IterativeConfig {
    /// Optimizer steps between rounds.
    pub interval: u64,
    /// Number of rounds K; the goals are reached at the last.
    pub rounds: u64,
    /// Growth of the goals.
    pub growth: RoundGrowth,
    /// Fraction of each layer's FFN neurons to remove by the last round: one value for
    /// every layer, or one per layer (NNI: `1 − kept_heads / heads / 2`, e.g. from
    /// `prune_pruners::ffn_sparse_ratios`); 1 leaves `min_ffn` neurons.
    pub ffn: Vec<f64>,
    /// Fraction of the hidden channels to remove by the last round (none when unset); 1
    /// leaves `min_hidden` channels.
    pub hidden: Option<f64>,
    /// Steps before each round whose statistics rank it (unset: every step since the
    /// previous round).
    pub taylor_steps: Option<u64>,
    /// What happens to the optimizer's moments at a cut.
    pub moments: MomentPolicy,
    /// Fewest FFN neurons a layer keeps.
    pub min_ffn: usize,
    /// Fewest hidden channels the student keeps.
    pub min_hidden: usize,
}

impl Default for IterativeConfig {
    fn default() -> Self {
        IterativeConfig {
            interval: 2000,
            rounds: 12,
            growth: RoundGrowth::Agp,
            ffn: vec![0.5],
            hidden: None,
            taylor_steps: None,
            moments: MomentPolicy::Slice,
            min_ffn: 1,
            min_hidden: 1,
        }
    }
}

impl IterativeConfig {
    /// Checks the settings against a student of `layers` layers.
    pub fn validate(&self, layers: usize) -> Result<()> {
        let bad = |why: String| Err(DistillError::Config(why));
        if self.interval == 0 || self.rounds == 0 {
            return bad(format!(
                "interval ({}) and rounds ({}) must be at least 1",
                self.interval, self.rounds
            ));
        }
        if self.ffn.len() != 1 && self.ffn.len() != layers {
            return bad(format!(
                "ffn has {} goals; give one, or one per layer ({layers})",
                self.ffn.len()
            ));
        }
        let goals = self.ffn.iter().chain(self.hidden.iter());
        if let Some(g) = goals.into_iter().find(|g| !(0.0..=1.0).contains(*g)) {
            return bad(format!("goal {g} is not a fraction in [0, 1]"));
        }
        if self.taylor_steps == Some(0) {
            return bad("taylor_steps must be at least 1".into());
        }
        if self.min_ffn == 0 || self.min_hidden == 0 {
            return bad("min_ffn and min_hidden must be at least 1".into());
        }
        Ok(())
    }

    /// The FFN goal of layer `l`.
    fn ffn_goal(&self, l: usize) -> f64 {
        self.ffn.get(l).or(self.ffn.first()).copied().unwrap_or(0.0)
    }

    /// The fraction of `goal` removed after round `k`.
    fn fraction(&self, goal: f64, k: u64) -> f64 {
        let growth = match self.growth {
            RoundGrowth::Agp => Growth::Agp,
            RoundGrowth::Linear => Growth::Linear,
            RoundGrowth::Geometric => {
                let x = k.min(self.rounds) as f64 / self.rounds as f64;
                return 1.0 - (1.0 - goal).powf(x);
            }
        };
        let schedule = Iterative {
            growth,
            interval: self.interval,
            total_times: self.rounds,
        };
        goal * schedule.ratio(k)
    }

    /// Channels left of `original` after round `k` at `goal`, at least `min`.
    fn keep(&self, original: usize, goal: f64, k: u64, min: usize) -> usize {
        let removed = (original as f64 * self.fraction(goal, k)).floor() as usize;
        original.saturating_sub(removed).max(min).min(original)
    }
}

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

/// FFN widths of every layer.
fn ffn_widths(config: &BertConfig) -> Vec<usize> {
    (0..config.num_hidden_layers)
        .map(|l| config.intermediate(l))
        .collect()
}

/// `(n − keep + ½) / n`: the ratio whose `⌊n · r⌋` removes exactly `n − keep` of `n`.
fn exact_ratio(n: usize, keep: usize) -> f64 {
    (n - keep) as f64 / n as f64 + 0.5 / n as f64
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

    /// Sets the distiller as `trainer`'s objective and lends this loop to it as a step
    /// callback (it also runs the distiller's per-step duties, so the distiller need not
    /// be a callback itself).
    pub fn attach<'a>(&'a mut self, trainer: Trainer<'a, B>) -> Trainer<'a, B>
    where
        B: 'a,
    {
        trainer
            .with_objective(self.distiller.clone())
            .with_callback(ByRef(self))
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
                entries.push(ConfigEntry {
                    op_names: EMBEDDINGS.iter().map(|s| s.to_string()).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_grow_to_their_target_by_the_last_round() {
        let c = IterativeConfig {
            rounds: 4,
            interval: 10,
            ..IterativeConfig::default()
        };
        let keeps: Vec<usize> = (1..=4).map(|k| c.keep(64, 0.5, k, 1)).collect();
        // AGP: 0.5 · (1 − (1 − k/4)³) of 64 removed, floored.
        assert_eq!(keeps, [46, 36, 33, 32]);
        let geo = IterativeConfig {
            growth: RoundGrowth::Geometric,
            ..c.clone()
        };
        let keeps: Vec<usize> = (1..=4).map(|k| geo.keep(64, 0.75, k, 1)).collect();
        assert_eq!(keeps, [46, 32, 23, 16]);
        assert_eq!(c.keep(64, 0.99, 4, 8), 8);
        assert_eq!(c.keep(64, 1.0, 4, 1), 1);
        assert_eq!(geo.keep(64, 1.0, 1, 1), 1);
        for (n, keep) in [(64, 46), (3072, 1536), (7, 1), (5, 4)] {
            let r = exact_ratio(n, keep);
            assert!(r < 1.0);
            assert_eq!((n as f64 * r).floor() as usize, n - keep);
        }
    }

    #[test]
    fn rejects_settings_that_cannot_work() {
        let ok = IterativeConfig::default();
        ok.validate(12).unwrap();
        let e = IterativeConfig {
            ffn: vec![0.5, 0.5],
            ..ok.clone()
        }
        .validate(12)
        .unwrap_err();
        assert!(e.to_string().contains("one per layer (12)"), "{e}");
        let e = IterativeConfig {
            hidden: Some(1.5),
            ..ok.clone()
        }
        .validate(12)
        .unwrap_err();
        assert!(e.to_string().contains("goal 1.5"), "{e}");
        assert!(
            IterativeConfig {
                interval: 0,
                ..ok.clone()
            }
            .validate(12)
            .is_err()
        );
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<IterativeConfig>(&json).unwrap(), ok);
    }
}
