//! Importance of every head and FFN neuron from gradients (Kwon et al. 2022, §4.1): a mask
//! `m` multiplies each head's context (before the attention output projection) and each
//! neuron's GELU output (before the FFN output projection); the gradient of the task loss
//! with respect to `m`, at `m = 1`, is taken once per mini-batch, and the diagonal Fisher
//! information of a unit is the sum of its squared per-batch gradients.
//!
//! No mask is inserted into the model: for an input column `i` of a projection `W`
//! (`[out, in]`) that a mask scales, `∂L/∂mᵢ = Σⱼ Wⱼᵢ · ∂L/∂Wⱼᵢ` at `m = 1`, so the ordinary
//! weight gradients of one backward pass give every mask gradient.

use crate::error::{PostTrainError, Result};
use ndarray::Array2;
use prune_data::LabelledBatch;
use prune_pruners::granularity::Blocking;
use prune_tensor::{Backend, Tensor};
use prune_transformer::{BertForSequenceClassification, ForwardOptions};

/// Per-batch mask gradients, per layer `[units, batches]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskGradients {
    /// Heads of each layer.
    pub heads: Vec<Array2<f64>>,
    /// FFN neurons of each layer.
    pub neurons: Vec<Array2<f64>>,
}

impl MaskGradients {
    /// Diagonal Fisher information of each layer's heads.
    pub fn head_fisher(&self) -> Vec<Vec<f64>> {
        self.heads.iter().map(fisher).collect()
    }

    /// Diagonal Fisher information of each layer's FFN neurons.
    pub fn neuron_fisher(&self) -> Vec<Vec<f64>> {
        self.neurons.iter().map(fisher).collect()
    }
}

/// Row sums of squares.
fn fisher(g: &Array2<f64>) -> Vec<f64> {
    g.rows().into_iter().map(|r| r.dot(&r)).collect()
}

/// The groups of `group` consecutive input columns of a `[out, in]` weight (each head's
/// columns, or each neuron's one) as blocks.
pub(crate) fn column_groups(w: &Tensor<f32>, group: usize) -> Result<Blocking> {
    let dims = w.dims();
    Blocking::new(dims.to_vec(), vec![dims[0], group]).map_err(PostTrainError::Input)
}

/// `∂L/∂m` of each group of `group` consecutive input columns of `w`, from its gradient
/// `dw`.
fn mask_gradient(w: &Tensor<f32>, dw: &Tensor<f32>, group: usize) -> Result<Vec<f64>> {
    let (wd, dd) = (w.data(), dw.data());
    Ok(column_groups(w, group)?.reduce(|i| f64::from(wd[i]) * f64::from(dd[i])))
}

/// The model as evaluated: without dropout.
pub fn without_dropout<B: Backend>(
    model: &BertForSequenceClassification<B>,
) -> BertForSequenceClassification<B> {
    let mut m = model.clone();
    m.bert.config.hidden_dropout_prob = 0.0;
    m.bert.config.attention_probs_dropout_prob = 0.0;
    m.bert.config.classifier_dropout = Some(0.0);
    m
}

/// The mask gradients of `model` (no dropout) on each of `batches`, with the task's loss.
pub fn mask_gradients<B: Backend>(
    model: &BertForSequenceClassification<B>,
    batches: &[LabelledBatch],
) -> Result<MaskGradients> {
    let m = without_dropout(model);
    let b = m.bert.backend();
    let d = m.bert.config.head_dim();
    let layers = &m.bert.params.layers;
    let host = |t: &B::Tensor| b.download(t);
    let weights: Vec<(Tensor<f32>, Tensor<f32>)> = layers
        .iter()
        .map(|l| Ok((host(&l.attention_output.weight)?, host(&l.output.weight)?)))
        .collect::<Result<_>>()?;
    let n = batches.len();
    let mut heads: Vec<Array2<f64>> = (0..layers.len())
        .map(|l| Array2::zeros((m.bert.config.heads(l), n)))
        .collect();
    let mut neurons: Vec<Array2<f64>> = (0..layers.len())
        .map(|l| Array2::zeros((m.bert.config.intermediate(l), n)))
        .collect();
    for (i, batch) in batches.iter().enumerate() {
        let mut grads = m.bert.zero_grads()?;
        let (loss, _, cache) = m.forward_t(
            &batch.inputs,
            batch.labels.as_targets(),
            &ForwardOptions::default(),
        )?;
        if !loss.is_finite() {
            return Err(PostTrainError::Input(format!(
                "the loss of sample batch {i} is {loss}"
            )));
        }
        m.backward(cache, 1.0, &mut grads)?;
        for (l, (wo, w2)) in weights.iter().enumerate() {
            let g = &grads.layers[l];
            let gh = mask_gradient(wo, &host(&g.attention_output.weight)?, d)?;
            let gn = mask_gradient(w2, &host(&g.output.weight)?, 1)?;
            heads[l].column_mut(i).assign(&ndarray::Array1::from(gh));
            neurons[l].column_mut(i).assign(&ndarray::Array1::from(gn));
        }
    }
    Ok(MaskGradients { heads, neurons })
}
