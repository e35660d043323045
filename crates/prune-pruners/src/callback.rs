//! `ByRef`: lends a pruner to a `Trainer` as a step callback without giving it away, so
//! the caller reads the pruner's masks and scores once training is done.

use prune_tensor::Backend;
use prune_train::{Callback, Optimizer, StepInfo};
use prune_transformer::{BertForSequenceClassification, BertParams};

/// A mutable borrow of a callback that is itself a callback.
pub struct ByRef<'a, C>(pub &'a mut C);

impl<B: Backend, C: Callback<B>> Callback<B> for ByRef<'_, C> {
    fn after_backward(
        &mut self,
        info: &StepInfo,
        model: &BertForSequenceClassification<B>,
        grads: &BertParams<B::Tensor>,
    ) -> prune_train::Result<()> {
        self.0.after_backward(info, model, grads)
    }

    fn after_step(
        &mut self,
        info: &StepInfo,
        model: &mut BertForSequenceClassification<B>,
        optimizer: &mut Optimizer<B::Tensor>,
    ) -> prune_train::Result<()> {
        self.0.after_step(info, model, optimizer)
    }

    fn resumed(
        &mut self,
        step: u64,
        model: &mut BertForSequenceClassification<B>,
    ) -> prune_train::Result<()> {
        self.0.resumed(step, model)
    }
}
