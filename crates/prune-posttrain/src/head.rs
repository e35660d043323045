//! Head refit (beyond the paper): after mask tuning, the classifier (`[K, C]` weight and
//! bias on the pooled output) is fitted by linear least squares so that the pruned model's
//! logits reproduce the unpruned model's on the sample, damped towards the classifier it
//! had. Mask tuning matches each sub-layer's output; what error is left reaches the logits
//! through the pooler, and this last linear map can take some of it back.
//!
//! With `H` the pruned model's pooled outputs and a column of ones, `Z` the unpruned
//! logits, each class's row `w` of `[W | b]` minimises `‖H·w − z‖² + λ‖w − w₀‖²` over the
//! weight part (the bias is free), `λ = damping · mean(diag HᵀH)` over the weight part.

use crate::error::{PostTrainError, Result};
use ndarray::{Array1, Array2, Axis, s};
use ndarray_linalg::SolveH;
use prune_tensor::{Backend, Tensor};
use prune_transformer::{Batch, BertModel, ForwardOptions};
use serde::Serialize;

/// What the head refit did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeadFit {
    /// Squared logit error summed over the sample, before and after.
    pub error: [f64; 2],
}

/// Checks the head refit's damping (a number ≥ 0).
pub fn check_damping(damping: f64) -> Result<()> {
    if !(damping.is_finite() && damping >= 0.0) {
        return Err(PostTrainError::Input(format!(
            "the head refit's damping must be ≥ 0, got {damping}"
        )));
    }
    Ok(())
}

/// A host tensor `[R, C]` as an f64 matrix.
fn matrix(t: &Tensor<f32>) -> Result<Array2<f64>> {
    let (rows, cols) = match t.dims() {
        [r, c] => (*r, *c),
        d => {
            return Err(PostTrainError::Input(format!(
                "the head refit expected a matrix, got shape {d:?}"
            )));
        }
    };
    let data = t.data().iter().map(|v| f64::from(*v)).collect();
    Array2::from_shape_vec((rows, cols), data).map_err(|e| PostTrainError::Input(e.to_string()))
}

/// The pooled outputs (with a column of ones) and the logits of `model` on `batches`,
/// stacked over the batches.
fn pooled_and_logits<B: Backend>(
    model: &BertModel<B>,
    batches: &[Batch],
) -> Result<(Array2<f64>, Array2<f64>)> {
    let b = model.backend();
    let (mut pooled, mut logits) = (Vec::new(), Vec::new());
    for batch in batches {
        let out = model.forward(batch, &ForwardOptions::default())?;
        let missing =
            || PostTrainError::Input("the head refit needs a pooler and a classifier".into());
        pooled.push(matrix(&b.download(&out.pooled.ok_or_else(missing)?)?)?);
        logits.push(matrix(&b.download(&out.logits.ok_or_else(missing)?)?)?);
    }
    let stack = |parts: Vec<Array2<f64>>| {
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| PostTrainError::Input(e.to_string()))
    };
    let pooled = stack(pooled)?;
    let ones = Array2::ones((pooled.nrows(), 1));
    let with_ones = ndarray::concatenate(Axis(1), &[pooled.view(), ones.view()])
        .map_err(|e| PostTrainError::Input(e.to_string()))?;
    Ok((with_ones, stack(logits)?))
}

/// Refits `student`'s classifier to `teacher`'s logits on `batches` (`student`: the same
/// classes, any pruning of the encoder).
pub fn refit_head<B: Backend>(
    teacher: &BertModel<B>,
    student: &mut BertModel<B>,
    batches: &[Batch],
    damping: f64,
) -> Result<HeadFit> {
    check_damping(damping)?;
    let b = student.backend().clone();
    let classifier = student
        .params
        .classifier
        .as_ref()
        .ok_or_else(|| PostTrainError::Input("the head refit needs a classifier".into()))?;
    let w0 = matrix(&b.download(&classifier.weight)?)?;
    let (k, c) = w0.dim();
    let (_, z) = pooled_and_logits(teacher, batches)?;
    let (h, current) = pooled_and_logits(student, batches)?;
    if h.ncols() != c + 1 || z.ncols() != k || current.ncols() != k || z.nrows() != h.nrows() {
        return Err(PostTrainError::Input(format!(
            "the head refit needs the same {k} classes over {c} pooled channels in both models"
        )));
    }
    let gram = h.t().dot(&h);
    let rhs = h.t().dot(&z);
    let lambda = damping * gram.diag().slice(s![..c]).sum() / c.max(1) as f64;
    let mut a = gram.clone();
    a.diag_mut().slice_mut(s![..c]).mapv_inplace(|v| v + lambda);
    let mut fitted = Array2::<f64>::zeros((k, c + 1));
    for class in 0..k {
        let mut r: Array1<f64> = rhs.column(class).to_owned();
        r.slice_mut(s![..c]).scaled_add(lambda, &w0.row(class));
        let x = a
            .solveh(&r)
            .map_err(|e| PostTrainError::Input(format!("the head refit's solve failed ({e})")))?;
        if x.iter().any(|v| !v.is_finite()) {
            return Err(PostTrainError::Input(
                "the head refit gave a non-finite classifier".into(),
            ));
        }
        fitted.row_mut(class).assign(&x);
    }
    let error = |pred: &Array2<f64>| (pred - &z).mapv(|v| v * v).sum();
    let before = error(&current);
    let after = error(&h.dot(&fitted.t()));
    let weight: Vec<f32> = fitted
        .slice(s![.., ..c])
        .iter()
        .map(|v| *v as f32)
        .collect();
    let bias: Vec<f32> = fitted.column(c).iter().map(|v| *v as f32).collect();
    let classifier = student.params.classifier.as_mut().expect("checked above");
    classifier.weight = b.upload(&Tensor::new([k, c], weight)?)?;
    classifier.bias = b.upload(&Tensor::new([k], bias)?)?;
    Ok(HeadFit {
        error: [before, after],
    })
}
