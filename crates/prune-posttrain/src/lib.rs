//! Retraining-free structured pruning (Kwon et al., "A Fast Post-Training Pruning Framework
//! for Transformers", NeurIPS 2022): from a fine-tuned model and a couple of thousand
//! training examples, without any training step,
//! 1. the diagonal Fisher information of every head and FFN neuron ([`fisher`]);
//! 2. the heads and neurons to keep under a budget of FLOPs or of measured latency
//!    ([`search`], [`latency`]);
//! 3. per layer, the pruned set rearranged for interactions between units ([`rearrange`]);
//! 4. surgery, then the kept units' output scales fitted layer by layer so that every
//!    sub-layer reproduces the unpruned one ([`tune`]), folded into the weights;
//! 5. when asked (beyond the paper; the CLI's default), the classifier refitted to the
//!    unpruned logits ([`head`]).

pub mod error;
pub mod fisher;
pub mod head;
pub mod latency;
pub mod layers;
pub mod rearrange;
pub mod search;
pub mod tune;

pub use error::{PostTrainError, Result};
pub use fisher::{MaskGradients, mask_gradients};
pub use head::{HeadFit, refit_head};
pub use latency::{LatencyConfig, LatencyTable};
pub use search::{CostModel, Costs, Selection, search};
pub use tune::{TuneConfig, TuneReport, tune};

use prune_data::LabelledBatch;
use prune_graph::{GroupKind, PruningPlan};
use prune_tensor::Backend;
use prune_transformer::{BertConfig, BertForSequenceClassification};
use serde::Serialize;
use std::time::Instant;

/// What the budget counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Multiply-accumulates of the heads and FFN neurons at the sample's mean length.
    Flops,
    /// Milliseconds of the attention and FFN sub-layers, as measured in the table.
    Latency(LatencyTable),
}

impl Budget {
    /// The cost models of `config`'s sub-layers: FLOPs at mean sequence length `seq`, or the
    /// fit of the timings.
    pub fn costs(&self, config: &BertConfig, seq: f64) -> Costs {
        match self {
            Budget::Flops => Costs::flops(config, seq),
            Budget::Latency(table) => table.costs(),
        }
    }

    /// The smallest ratio this budget can reach on `config`'s model ([`Costs::least`] over
    /// the whole cost): 0 for FLOPs; for latency, what every layer's fixed cost adds up to.
    pub fn smallest_ratio(&self, config: &BertConfig) -> f64 {
        let costs = self.costs(config, 1.0);
        let (heads, neurons) = (&config.layer_heads, &config.layer_intermediate);
        let all = costs.of_layers(heads, neurons);
        match all > 0.0 {
            true => costs.least(heads, neurons) / all,
            false => 0.0,
        }
    }

    /// Checks that `ratio` is reachable on `config`'s model.
    pub fn check_ratio(&self, config: &BertConfig, ratio: f64) -> Result<()> {
        let smallest = self.smallest_ratio(config);
        if ratio < smallest {
            let free = self.costs(config, 1.0);
            let (h, n) = (free.head.free, free.neuron.free);
            return Err(PostTrainError::Input(format!(
                "a latency ratio of {ratio} cannot be met: the timings give each sub-layer a \
                 fixed cost up to {h} heads and {n} FFN neurons, and with every layer keeping \
                 those the model keeps {smallest:.3} of its latency (ask for at least that)"
            )));
        }
        Ok(())
    }
}

/// Settings of a retraining-free pruning.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostTrainConfig {
    /// Fraction of the encoder's attention and FFN cost to keep, in (0, 1].
    pub ratio: f64,
    /// What the cost counts.
    pub budget: Budget,
    /// Rearrange each layer's pruned set (step 3).
    pub rearrange: bool,
    /// Tune the kept units' scales (step 4); `None` skips it.
    pub tune: Option<TuneConfig>,
    /// Refit the classifier to the unpruned logits, with this damping ([`head`]); `None`
    /// skips it.
    pub refit_head: Option<f64>,
}

impl PostTrainConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(PostTrainError::Input(format!(
                "the budget ratio must be in (0, 1], got {}",
                self.ratio
            )));
        }
        self.refit_head.map_or(Ok(()), head::check_damping)
    }
}

/// What the pruning chose and did.
#[derive(Clone, Debug, Serialize)]
pub struct PostTrainReport {
    /// Mean sequence length of the sample, at which costs are counted.
    pub mean_seq_len: f64,
    /// The cost models of the budget.
    pub costs: Costs,
    /// The budget's cost of the model before and after (multiply-accumulates or
    /// milliseconds).
    pub cost: [f64; 2],
    /// Head and neuron multiply-accumulates of the model before and after.
    pub macs: [f64; 2],
    /// Kept heads and neurons per layer.
    pub selection: Selection,
    /// What mask tuning did, when it ran.
    pub tune: Option<TuneReport>,
    /// What the head refit did, when it ran.
    pub head: Option<HeadFit>,
    /// Wall seconds of the steps.
    pub seconds: StepSeconds,
}

/// Wall seconds of each step.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StepSeconds {
    /// Mask gradients on the sample.
    pub importance: f64,
    /// Search and rearrangement.
    pub selection: f64,
    /// Surgery and mask tuning.
    pub tuning: f64,
}

impl PostTrainReport {
    /// Kept fraction of the head and neuron multiply-accumulates.
    pub fn flops_ratio(&self) -> f64 {
        self.macs[1] / self.macs[0]
    }

    /// Kept fraction of the budget's cost.
    pub fn budget_ratio(&self) -> f64 {
        self.cost[1] / self.cost[0]
    }
}

/// The plan that keeps `selection` of a model with `heads` and `neurons` units per layer.
pub fn plan_of(selection: &Selection, heads: &[usize], neurons: &[usize]) -> Result<PruningPlan> {
    let mut plan = PruningPlan::new();
    for (layer, keep) in selection.heads.iter().enumerate() {
        plan.keep(GroupKind::Heads { layer }, heads[layer], keep)?;
    }
    for (layer, keep) in selection.neurons.iter().enumerate() {
        plan.keep(GroupKind::Ffn { layer }, neurons[layer], keep)?;
    }
    Ok(plan)
}

/// Step 1 on a sample, reusable for any budget: the mask gradients and the sample's mean
/// sequence length (real tokens per example).
#[derive(Clone, Debug)]
pub struct Importance {
    /// Per-batch mask gradients.
    pub grads: MaskGradients,
    /// Mean sequence length of the sample.
    pub mean_seq_len: f64,
    /// Wall seconds taken.
    pub seconds: f64,
}

/// The importance of `model`'s heads and neurons on the sample `batches` (with labels).
pub fn importance<B: Backend>(
    model: &BertForSequenceClassification<B>,
    batches: &[LabelledBatch],
) -> Result<Importance> {
    if batches.is_empty() {
        return Err(PostTrainError::Input("no sample batches".into()));
    }
    let started = Instant::now();
    let tokens: usize = batches
        .iter()
        .map(|b| b.inputs.attention_mask.iter().filter(|&&m| m == 1).count())
        .sum();
    let examples: usize = batches.iter().map(|b| b.inputs.batch).sum();
    let grads = mask_gradients(model, batches)?;
    Ok(Importance {
        grads,
        mean_seq_len: tokens as f64 / examples.max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The units kept under `config` (steps 2 and 3).
fn select(imp: &Importance, costs: Costs, budget: f64, rearranged: bool) -> Selection {
    let g = &imp.grads;
    let mut selection = search(&g.head_fisher(), &g.neuron_fisher(), costs, budget);
    if rearranged {
        let kept = |g: &ndarray::Array2<f64>, kept: &Vec<usize>| {
            let pruned = rearrange::rearrange(g, g.nrows() - kept.len());
            (0..g.nrows()).filter(|u| !pruned.contains(u)).collect()
        };
        selection.heads = g
            .heads
            .iter()
            .zip(&selection.heads)
            .map(|(g, k)| kept(g, k))
            .collect();
        selection.neurons = (g.neurons.iter().zip(&selection.neurons))
            .map(|(g, k)| kept(g, k))
            .collect();
    }
    selection
}

/// The pruned model (surgery done, scales folded in), its plan on the input model, and the
/// report.
pub type Pruned<B> = (
    BertForSequenceClassification<B>,
    PruningPlan,
    PostTrainReport,
);

/// Prunes `model` under `config` from its importance `imp` on the sample `batches` (steps 2
/// to 4).
pub fn prune_to<B: Backend>(
    model: &BertForSequenceClassification<B>,
    batches: &[LabelledBatch],
    imp: &Importance,
    config: &PostTrainConfig,
) -> Result<Pruned<B>> {
    config.check()?;
    let started = Instant::now();
    let c = &model.bert.config;
    let (heads, neurons) = (&c.layer_heads, &c.layer_intermediate);
    config.budget.check_ratio(c, config.ratio)?;
    let flops = Costs::flops(c, imp.mean_seq_len);
    let costs = config.budget.costs(c, imp.mean_seq_len);
    let all = costs.of_layers(heads, neurons);
    let selection = select(imp, costs, config.ratio * all, config.rearrange);
    let cost = [all, costs.of_selection(&selection)];
    let macs = [
        flops.of_layers(heads, neurons),
        flops.of_selection(&selection),
    ];
    let selected = started.elapsed().as_secs_f64();
    let plan = plan_of(&selection, heads, neurons)?;
    let dense = fisher::without_dropout(model);
    let mut student = dense.clone();
    prune_speedup::apply(&mut student.bert, &plan, &mut [])?;
    let inputs: Vec<_> = batches.iter().map(|b| b.inputs.clone()).collect();
    let tuned = match &config.tune {
        Some(t) => Some(tune(&dense.bert, &mut student.bert, &inputs, t)?),
        None => None,
    };
    let head = match config.refit_head {
        Some(damping) => Some(refit_head(
            &dense.bert,
            &mut student.bert,
            &inputs,
            damping,
        )?),
        None => None,
    };
    // The saved model keeps the input's dropout settings.
    student.bert.config.hidden_dropout_prob = c.hidden_dropout_prob;
    student.bert.config.attention_probs_dropout_prob = c.attention_probs_dropout_prob;
    student.bert.config.classifier_dropout = c.classifier_dropout;
    let report = PostTrainReport {
        mean_seq_len: imp.mean_seq_len,
        costs,
        cost,
        macs,
        selection,
        tune: tuned,
        head,
        seconds: StepSeconds {
            importance: imp.seconds,
            selection: selected,
            tuning: started.elapsed().as_secs_f64() - selected,
        },
    };
    Ok((student, plan, report))
}

/// [`importance`] then [`prune_to`].
pub fn post_train<B: Backend>(
    model: &BertForSequenceClassification<B>,
    batches: &[LabelledBatch],
    config: &PostTrainConfig,
) -> Result<Pruned<B>> {
    config.check()?;
    prune_to(model, batches, &importance(model, batches)?, config)
}
