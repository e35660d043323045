//! `ByRef`: lends a callback (a pruner) or an objective (a distiller) to a `Trainer` without
//! giving it away, so the caller reads its state once training is done.

use crate::Result;
use crate::optimizer::Optimizer;
use crate::trainer::{Callback, Objective, StepInfo};
use prune_data::LabelledBatch;
use prune_tensor::Backend;
use prune_transformer::{BertForSequenceClassification, BertParams};

/// A mutable borrow of a callback or objective that is itself one.
pub struct ByRef<'a, C>(pub &'a mut C);

impl<B: Backend, C: Callback<B>> Callback<B> for ByRef<'_, C> {
    fn after_backward(
        &mut self,
        info: &StepInfo,
        model: &BertForSequenceClassification<B>,
        grads: &BertParams<B::Tensor>,
    ) -> Result<()> {
        self.0.after_backward(info, model, grads)
    }

    fn after_step(
        &mut self,
        info: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        optimizer: &mut Optimizer<B::Tensor>,
    ) -> Result<()> {
        self.0.after_step(info, model, optimizer)
    }

    fn resumed(&mut self, step: u64, model: &mut BertForSequenceClassification<B>) -> Result<()> {
        self.0.resumed(step, model)
    }
}

impl<B: Backend, O: Objective<B>> Objective<B> for ByRef<'_, O> {
    fn accumulate(
        &mut self,
        model: &BertForSequenceClassification<B>,
        batch: &LabelledBatch,
        seed: u64,
        scale: f64,
        grads: &mut BertParams<B::Tensor>,
    ) -> Result<f64> {
        self.0.accumulate(model, batch, seed, scale, grads)
    }
}
