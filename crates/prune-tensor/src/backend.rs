//! The `Backend` trait, split by op family. Every op has a `*_fwd` and, where it has
//! inputs to differentiate, a `*_bwd` that returns fresh input gradients.
//!
//! Conventions: B batch, T tokens, C hidden, H heads, D head dim, F intermediate, V vocab,
//! N rows (any leading dims flattened), K classes. Scalars cross the trait as `f64` so that
//! an `f64` backend can be gradient-checked without rounding. Integer inputs (token ids,
//! labels) stay on the host as slices. The backward maths is derived in `docs/backward.md`
//! at the workspace root.

use crate::error::Result;
use crate::{Shape, Tensor};
use std::fmt::Debug;

mod attention;

pub use attention::{AttentionOps, AttentionSpec};

/// Which operands of a matmul are transposed: `NT` computes `A · Bᵀ` (a linear layer with a
/// PyTorch `[out, in]` weight), `TN` computes `Aᵀ · B` (a weight gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// `A · B`
    NN,
    /// `A · Bᵀ`
    NT,
    /// `Aᵀ · B`
    TN,
    /// `Aᵀ · Bᵀ`
    TT,
}

impl Transpose {
    /// Whether the left operand is transposed.
    pub fn a(self) -> bool {
        matches!(self, Transpose::TN | Transpose::TT)
    }

    /// Whether the right operand is transposed.
    pub fn b(self) -> bool {
        matches!(self, Transpose::NT | Transpose::TT)
    }
}

/// Statistics LayerNorm's forward keeps for its backward: per row mean and 1/σ, shape `[N]`.
#[derive(Clone, Debug)]
pub struct LayerNormStats<T> {
    /// Mean of each row, `[N]`.
    pub mean: T,
    /// Reciprocal standard deviation `1/sqrt(var + eps)` of each row, `[N]`.
    pub rstd: T,
}

/// Hyper-parameters of one AdamW step (decoupled weight decay, bias-corrected moments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to `sqrt(v̂)`.
    pub eps: f64,
    /// Decoupled weight decay: `w -= lr · weight_decay · w` before the Adam update.
    pub weight_decay: f64,
    /// 1-based step count, for bias correction.
    pub step: u64,
}

/// Storage of a backend: its tensor type, moving data to and from the host, and metadata.
pub trait Storage {
    /// The backend's tensor (host memory, device memory, or a symbolic trace node).
    type Tensor: Clone + Debug + Send + Sync;

    /// The shape of `t`.
    fn shape<'a>(&self, t: &'a Self::Tensor) -> &'a Shape;
    /// Copies a host f32 tensor into the backend.
    fn upload(&self, t: &Tensor<f32>) -> Result<Self::Tensor>;
    /// Copies a backend tensor to a host f32 tensor.
    fn download(&self, t: &Self::Tensor) -> Result<Tensor<f32>>;
    /// A tensor of zeros.
    fn zeros(&self, shape: &Shape) -> Result<Self::Tensor>;
    /// The same elements under another shape with the same element count (no copy where the
    /// backend can avoid one).
    fn reshape(&self, t: Self::Tensor, shape: Shape) -> Result<Self::Tensor>;
}

/// Matrix products, batched over leading dims.
pub trait MatmulOps: Storage {
    /// `C = op(A) · op(B)`. `a` is `[.., M, K]` (`[.., K, M]` when transposed); `b` is either
    /// 2-D, shared by every batch entry, or has `a`'s leading dims. Output `[.., M, N]`.
    fn matmul_fwd(&self, a: &Self::Tensor, b: &Self::Tensor, t: Transpose) -> Result<Self::Tensor>;
    /// Gradients `(dA, dB)` of [`MatmulOps::matmul_fwd`] given `dc`; a shared 2-D `b` gets
    /// the sum over the batch.
    fn matmul_bwd(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        t: Transpose,
        dc: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
}

/// A linear layer in one op, so that a backend can start the product from the bias instead
/// of adding it in a pass of its own.
pub trait LinearOps: MatmulOps + ElementwiseOps {
    /// `x · wᵀ + bias` for `x` `[N, I]`, `w` `[O, I]` (PyTorch's layout) and `bias` `[O]`.
    fn linear_fwd(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        let mut y = self.matmul_fwd(x, w, Transpose::NT)?;
        self.add_bias_assign(&mut y, bias)?;
        Ok(y)
    }
}

/// Elementwise arithmetic, broadcasting a bias over rows, reductions, dropout.
pub trait ElementwiseOps: Storage {
    /// `a + b`, same shapes. Its backward passes `dy` to both inputs unchanged.
    fn add_fwd(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a ⊙ b`, same shapes.
    fn mul_fwd(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// Gradients `(da, db) = (dy ⊙ b, dy ⊙ a)` of [`ElementwiseOps::mul_fwd`].
    fn mul_bwd(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        dy: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `s · x`; its backward is `s · dy` (the same op).
    fn scale_fwd(&self, x: &Self::Tensor, s: f64) -> Result<Self::Tensor>;
    /// `x + bias`, `x` `[.., C]`, `bias` `[C]` broadcast over rows.
    fn add_bias_fwd(&self, x: &Self::Tensor, bias: &Self::Tensor) -> Result<Self::Tensor>;
    /// In place: `x += bias` broadcast over rows, what [`ElementwiseOps::add_bias_fwd`]
    /// returns but without a copy where the backend can avoid one.
    fn add_bias_assign(&self, x: &mut Self::Tensor, bias: &Self::Tensor) -> Result<()> {
        *x = self.add_bias_fwd(x, bias)?;
        Ok(())
    }
    /// Gradient of the bias of [`ElementwiseOps::add_bias_fwd`]: `dy` summed over rows, `[C]`
    /// (`dx` is `dy`).
    fn add_bias_bwd(&self, dy: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x ⊙ s[row / rows_per_group]`: scales each contiguous group of rows of `x` (viewed
    /// `[N, last]`) by one factor of `s` (`[N / rows_per_group]`). A head mask over
    /// `[B, H, T, D]` is `s` of shape `[B·H]` with `rows_per_group = T`.
    fn scale_rows_fwd(
        &self,
        x: &Self::Tensor,
        s: &Self::Tensor,
        rows_per_group: usize,
    ) -> Result<Self::Tensor>;
    /// Gradients `(dx, ds)` of [`ElementwiseOps::scale_rows_fwd`].
    fn scale_rows_bwd(
        &self,
        x: &Self::Tensor,
        s: &Self::Tensor,
        rows_per_group: usize,
        dy: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `acc += x` in place (gradient accumulation), same shapes.
    fn add_assign(&self, acc: &mut Self::Tensor, x: &Self::Tensor) -> Result<()>;
    /// `x *= s` in place (gradient clipping).
    fn scale_assign(&self, x: &mut Self::Tensor, s: f64) -> Result<()>;
    /// Sum of all elements.
    fn sum_fwd(&self, x: &Self::Tensor) -> Result<f64>;
    /// Mean of all elements.
    fn mean_fwd(&self, x: &Self::Tensor) -> Result<f64>;
    /// Gradient of `dl · sum(x)` for `x` of shape `shape`: `dl` everywhere.
    fn sum_bwd(&self, shape: &Shape, dl: f64) -> Result<Self::Tensor>;
    /// Gradient of `dl · mean(x)` for `x` of shape `shape`: `dl / numel` everywhere.
    fn mean_bwd(&self, shape: &Shape, dl: f64) -> Result<Self::Tensor>;
    /// Sum of squares of all elements (for global gradient norms).
    fn sum_squares(&self, x: &Self::Tensor) -> Result<f64>;
    /// Inverted dropout: zeroes each element with probability `p`, scales survivors by
    /// `1/(1-p)`. Returns `(y, keep)` where `keep` holds the factor applied (0 or `1/(1-p)`);
    /// the backward is `dy ⊙ keep` ([`ElementwiseOps::mul_fwd`]). The draw depends only on
    /// `(seed, flat index)`, so it is the same on every backend and thread count.
    fn dropout_fwd(
        &self,
        x: &Self::Tensor,
        p: f64,
        seed: u64,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `dropout(x) + residual` in one pass where the backend can fuse them: `(y, keep)` with
    /// the draw of [`ElementwiseOps::dropout_fwd`] (same `keep`, same `y`). `residual` has
    /// the shape of `x`; its gradient is `dy`, and that of `x` is `dy ⊙ keep`.
    fn dropout_add_fwd(
        &self,
        x: &Self::Tensor,
        residual: &Self::Tensor,
        p: f64,
        seed: u64,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let (dropped, keep) = self.dropout_fwd(x, p, seed)?;
        Ok((self.add_fwd(&dropped, residual)?, keep))
    }
}

/// The pointwise non-linearities of a feed-forward block, as transformers names them in
/// `hidden_act`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the erf form.
    #[default]
    Gelu,
    /// `gelu_new` (also `gelu_pytorch_tanh`): the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The activation transformers calls `name`, if it is one of these.
    pub fn from_name(name: &str) -> Option<Activation> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    /// transformers' name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
            Activation::Relu => "relu",
        }
    }
}

/// Pointwise non-linearities.
pub trait ActivationOps: ElementwiseOps {
    /// GELU in BERT's erf form: `x · Φ(x)`.
    fn gelu_fwd(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `dx` of GELU given its input `x`.
    fn gelu_bwd(&self, x: &Self::Tensor, dy: &Self::Tensor) -> Result<Self::Tensor>;
    /// A bias add fused with GELU where the backend can: `x += bias` in place (`x` `[.., C]`,
    /// `bias` `[C]`; `x` then holds GELU's input, which its backward needs) and returns
    /// `gelu(x)`.
    fn bias_gelu_fwd(&self, x: &mut Self::Tensor, bias: &Self::Tensor) -> Result<Self::Tensor> {
        self.add_bias_assign(x, bias)?;
        self.gelu_fwd(x)
    }
    /// GELU in its tanh approximation (transformers' `gelu_new`):
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    fn gelu_tanh_fwd(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `dx` of [`ActivationOps::gelu_tanh_fwd`] given its input `x`.
    fn gelu_tanh_bwd(&self, x: &Self::Tensor, dy: &Self::Tensor) -> Result<Self::Tensor>;
    /// `max(x, 0)`.
    fn relu_fwd(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `dx = dy` where the input `x` is positive, 0 elsewhere.
    fn relu_bwd(&self, x: &Self::Tensor, dy: &Self::Tensor) -> Result<Self::Tensor>;
    /// `act(x)`.
    fn activation_fwd(&self, act: Activation, x: &Self::Tensor) -> Result<Self::Tensor> {
        match act {
            Activation::Gelu => self.gelu_fwd(x),
            Activation::GeluTanh => self.gelu_tanh_fwd(x),
            Activation::Relu => self.relu_fwd(x),
        }
    }
    /// `dx` of `act` given its input `x`.
    fn activation_bwd(
        &self,
        act: Activation,
        x: &Self::Tensor,
        dy: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        match act {
            Activation::Gelu => self.gelu_bwd(x, dy),
            Activation::GeluTanh => self.gelu_tanh_bwd(x, dy),
            Activation::Relu => self.relu_bwd(x, dy),
        }
    }
    /// [`ActivationOps::bias_gelu_fwd`] for any activation (fused for GELU).
    fn bias_activation_fwd(
        &self,
        act: Activation,
        x: &mut Self::Tensor,
        bias: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        match act {
            Activation::Gelu => self.bias_gelu_fwd(x, bias),
            _ => {
                self.add_bias_assign(x, bias)?;
                self.activation_fwd(act, x)
            }
        }
    }
    /// `tanh(x)`.
    fn tanh_fwd(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `dx = dy ⊙ (1 − y²)` of tanh given its output `y`.
    fn tanh_bwd(&self, y: &Self::Tensor, dy: &Self::Tensor) -> Result<Self::Tensor>;
}

/// Softmax over the last axis, fused with a scale and an additive mask.
pub trait SoftmaxOps: Storage {
    /// `softmax(scale · x + mask)` over the last axis. `x` is `[B, .., Tk]`; `mask`, if any, is
    /// `[B, Tk]`, added to every row of batch entry `b` (0 for keep, a large negative for pad).
    fn softmax_fwd(
        &self,
        x: &Self::Tensor,
        scale: f64,
        mask: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// `dx = scale · y ⊙ (dy − Σ dy ⊙ y)` given the forward output `y`.
    fn softmax_bwd(&self, y: &Self::Tensor, dy: &Self::Tensor, scale: f64) -> Result<Self::Tensor>;
    /// In place: `x = softmax(scale · x + mask)`, what [`SoftmaxOps::softmax_fwd`] returns but
    /// without a copy where the backend can avoid one (attention scores are large).
    fn softmax_assign(
        &self,
        x: &mut Self::Tensor,
        scale: f64,
        mask: Option<&Self::Tensor>,
    ) -> Result<()> {
        *x = self.softmax_fwd(x, scale, mask)?;
        Ok(())
    }
}

/// Layer normalisation over the last axis (alone, or after a residual sum).
pub trait NormOps: ElementwiseOps {
    /// `γ ⊙ (x − μ)/sqrt(σ² + eps) + β` per row; `x` `[.., C]`, `gamma`, `beta` `[C]`.
    fn layer_norm_fwd(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f64,
    ) -> Result<(Self::Tensor, LayerNormStats<Self::Tensor>)>;
    /// Gradients `(dx, dγ, dβ)` of [`NormOps::layer_norm_fwd`].
    fn layer_norm_bwd(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        stats: &LayerNormStats<Self::Tensor>,
        dy: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// LayerNorm over the kept channels only: `keep` is `[C]` of 0/1; mean and variance run
    /// over the channels where it is 1 and the output is 0 elsewhere. A model whose hidden
    /// channels are masked this way computes exactly what the model with those channels cut
    /// out computes.
    fn masked_layer_norm_fwd(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        keep: &Self::Tensor,
        eps: f64,
    ) -> Result<(Self::Tensor, LayerNormStats<Self::Tensor>)>;
    /// Gradients `(dx, dγ, dβ)` of [`NormOps::masked_layer_norm_fwd`] (0 at dropped channels).
    fn masked_layer_norm_bwd(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        keep: &Self::Tensor,
        stats: &LayerNormStats<Self::Tensor>,
        dy: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// Inference's residual connection and LayerNorm: the LayerNorm (masked by `keep` when
    /// given) of `x + residual`, keeping neither the sum nor the statistics. Backends may
    /// fuse the two passes.
    fn add_layer_norm_fwd(
        &self,
        x: &Self::Tensor,
        residual: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        keep: Option<&Self::Tensor>,
        eps: f64,
    ) -> Result<Self::Tensor> {
        let sum = self.add_fwd(x, residual)?;
        Ok(match keep {
            Some(k) => self.masked_layer_norm_fwd(&sum, gamma, beta, k, eps)?.0,
            None => self.layer_norm_fwd(&sum, gamma, beta, eps)?.0,
        })
    }
}

/// Row gathers (embeddings, picking the [CLS] token) and axis permutations (heads).
pub trait IndexOps: Storage {
    /// `y[i] = table[ids[i]]`: `table` `[V, C]`, output `[ids.len(), C]`.
    fn gather_rows_fwd(&self, table: &Self::Tensor, ids: &[usize]) -> Result<Self::Tensor>;
    /// Scatter-add of `dy` `[ids.len(), C]` into a fresh `[rows, C]` gradient.
    fn gather_rows_bwd(
        &self,
        dy: &Self::Tensor,
        ids: &[usize],
        rows: usize,
    ) -> Result<Self::Tensor>;
    /// Axis permutation: output dim `i` is input dim `perm[i]` (e.g. `[B, T, H, D]` →
    /// `[B, H, T, D]` with `perm = [0, 2, 1, 3]`), materialised contiguously. The backward
    /// is the same op with the inverse permutation.
    fn permute(&self, x: &Self::Tensor, perm: &[usize]) -> Result<Self::Tensor>;
}

/// Training losses. Each `*_fwd` returns the loss as a host scalar; each `*_bwd` takes the
/// upstream gradient `dl` of that scalar and returns a fresh input gradient.
pub trait LossOps: Storage {
    /// Mean cross-entropy of `logits` `[N, K]` against `labels` (`[N]`), over the rows whose
    /// label is not `ignore_index`. Returns `(loss, probs)`; `probs` feeds the backward.
    fn cross_entropy_fwd(
        &self,
        logits: &Self::Tensor,
        labels: &[i64],
        ignore_index: i64,
    ) -> Result<(f64, Self::Tensor)>;
    /// `dlogits = dl · (probs − onehot) / n_counted`, zero on ignored rows.
    fn cross_entropy_bwd(
        &self,
        probs: &Self::Tensor,
        labels: &[i64],
        ignore_index: i64,
        dl: f64,
    ) -> Result<Self::Tensor>;
    /// Mean squared error `mean((pred − target)²)`, same shapes.
    fn mse_fwd(&self, pred: &Self::Tensor, target: &Self::Tensor) -> Result<f64>;
    /// `dpred = dl · 2 (pred − target) / numel`.
    fn mse_bwd(&self, pred: &Self::Tensor, target: &Self::Tensor, dl: f64) -> Result<Self::Tensor>;
    /// Distillation loss `T² · KL(softmax(t/T) ‖ softmax(s/T))`, summed over classes and
    /// averaged over the `N` rows (PyTorch's `batchmean`); `student`, `teacher` `[N, K]`.
    fn kl_div_fwd(
        &self,
        student: &Self::Tensor,
        teacher: &Self::Tensor,
        temperature: f64,
    ) -> Result<f64>;
    /// `dstudent = dl · T · (softmax(s/T) − softmax(t/T)) / N`.
    fn kl_div_bwd(
        &self,
        student: &Self::Tensor,
        teacher: &Self::Tensor,
        temperature: f64,
        dl: f64,
    ) -> Result<Self::Tensor>;
}

/// Optimizer updates, in place.
pub trait OptimOps: Storage {
    /// One AdamW step on `param` with gradient `grad` and moments `m`, `v` (all one shape).
    /// With a `mask` (the weight acts as `param ⊙ mask`), the gradient of the raw weight is
    /// `grad ⊙ mask`: masked entries keep their raw values (decayed only), so a mask that is
    /// regenerated later (movement pruning) can bring them back.
    fn adamw_step(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
        hp: &AdamW,
        mask: Option<&Self::Tensor>,
    ) -> Result<()>;
}

/// A complete backend: every op family. Models are generic over `B: Backend`. A backend is
/// a cheap handle (cloning shares the device), so models and trainers can hold their own.
pub trait Backend:
    Clone
    + Storage
    + MatmulOps
    + LinearOps
    + AttentionOps
    + ElementwiseOps
    + ActivationOps
    + SoftmaxOps
    + NormOps
    + IndexOps
    + LossOps
    + OptimOps
    + Send
    + Sync
{
}

impl<B> Backend for B where
    B: Clone
        + Storage
        + MatmulOps
        + LinearOps
        + AttentionOps
        + ElementwiseOps
        + ActivationOps
        + SoftmaxOps
        + NormOps
        + IndexOps
        + LossOps
        + OptimOps
        + Send
        + Sync
{
}
