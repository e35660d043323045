//! `TraceBackend`: a backend whose tensors are symbolic (an id and a shape, no data). Running
//! any model code on it records every op with its inputs, outputs and attributes, giving
//! the [`Trace`] the dependency analysis reads. Shapes are checked as a real backend checks
//! them, so a trace is also a cheap dry run of the model code.
//!
//! Host scalars (losses, sums) come back as 0 and `download` returns zeros: model code must
//! not branch on data for its trace to be the graph of every input.

use prune_tensor::{Shape, Transpose};
use std::sync::{Arc, Mutex, MutexGuard};

mod ops;

/// Index of a tensor in a [`Trace`].
pub type TensorId = usize;

/// A symbolic tensor: the id of its record in the trace, and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymTensor {
    id: TensorId,
    shape: Shape,
}

impl SymTensor {
    /// The id of the tensor's record in the trace.
    pub fn id(&self) -> TensorId {
        self.id
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

/// Where a traced tensor comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// A named parameter ([`TraceBackend::param`]).
    Param(String),
    /// Data uploaded by the code being traced (inputs, masks), or fresh zeros.
    Input,
    /// Output of the op at this index of [`Trace::ops`].
    Op(usize),
}

/// A traced tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Its shape.
    pub shape: Shape,
    /// Where it comes from.
    pub origin: Origin,
}

/// What an op computes, with the attributes that matter for its channel dependencies.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// `op(a) · op(b)` (inputs `a`, `b`).
    Matmul(Transpose),
    /// Gradients of a matmul (inputs `a`, `b`, `dc`; outputs `da`, `db`).
    MatmulBwd(Transpose),
    /// `a + b`.
    Add,
    /// `a ⊙ b`.
    Mul,
    /// Gradients of `a ⊙ b` (inputs `a`, `b`, `dy`; outputs `da`, `db`).
    MulBwd,
    /// `s · x`.
    Scale(f64),
    /// `x + bias` (inputs `x`, `bias`).
    AddBias,
    /// Bias gradient (input `dy`).
    AddBiasBwd,
    /// Rows of `x` scaled per group of rows (inputs `x`, `s`).
    ScaleRows {
        /// Consecutive rows sharing one factor.
        rows_per_group: usize,
    },
    /// Gradients of [`OpKind::ScaleRows`] (inputs `x`, `s`, `dy`; outputs `dx`, `ds`).
    ScaleRowsBwd {
        /// Consecutive rows sharing one factor.
        rows_per_group: usize,
    },
    /// `acc += x` (inputs `acc`, `x`; output the new `acc`).
    AddAssign,
    /// `x *= s` (input `x`; output the new `x`).
    ScaleAssign(f64),
    /// Sum, mean or sum of squares to a host scalar (no output tensor).
    Reduce,
    /// A constant gradient of a reduction (no inputs).
    ReduceBwd,
    /// Dropout (input `x`; outputs `y`, `keep`).
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// GELU.
    Gelu,
    /// GELU gradient (inputs `x`, `dy`).
    GeluBwd,
    /// GELU's tanh form.
    GeluTanh,
    /// Its gradient (inputs `x`, `dy`).
    GeluTanhBwd,
    /// ReLU.
    Relu,
    /// ReLU gradient (inputs `x`, `dy`).
    ReluBwd,
    /// tanh.
    Tanh,
    /// tanh gradient (inputs `y`, `dy`).
    TanhBwd,
    /// Scaled, masked softmax over the last axis (inputs `x` and the mask if any).
    Softmax {
        /// Scale applied before the softmax.
        scale: f64,
    },
    /// Softmax gradient (inputs `y`, `dy`).
    SoftmaxBwd,
    /// LayerNorm (inputs `x`, `γ`, `β`; outputs `y`, mean, rstd).
    LayerNorm,
    /// LayerNorm gradient (inputs `x`, `γ`, mean, rstd, `dy`; outputs `dx`, `dγ`, `dβ`).
    LayerNormBwd,
    /// LayerNorm over kept channels (inputs `x`, `γ`, `β`, keep; outputs `y`, mean, rstd).
    MaskedLayerNorm,
    /// Its gradient (inputs `x`, `γ`, keep, mean, rstd, `dy`; outputs `dx`, `dγ`, `dβ`).
    MaskedLayerNormBwd,
    /// Rows of a table gathered by host indices (input the table).
    GatherRows {
        /// Number of rows gathered.
        count: usize,
    },
    /// Scatter-add of row gradients into a table gradient (input `dy`).
    GatherRowsBwd {
        /// Rows of the table.
        rows: usize,
    },
    /// Axis permutation.
    Permute(Vec<usize>),
    /// Same elements under another shape.
    Reshape,
    /// Copy to the host (no output tensor).
    Download,
    /// Cross-entropy (input logits; output probabilities).
    CrossEntropy,
    /// Its gradient (input probabilities; output logit gradients).
    CrossEntropyBwd,
    /// Mean squared error (inputs `pred`, `target`).
    Mse,
    /// Its gradient (inputs `pred`, `target`; output `dpred`).
    MseBwd,
    /// Distillation KL divergence (inputs `student`, `teacher`).
    KlDiv,
    /// Its gradient (inputs `student`, `teacher`; output `dstudent`).
    KlDivBwd,
    /// AdamW update (inputs param, grad, m, v and the mask if any; outputs new param, m, v).
    AdamW,
}

/// One recorded op.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// What it computes.
    pub kind: OpKind,
    /// Input tensors, in argument order.
    pub inputs: Vec<TensorId>,
    /// Output tensors, in return order.
    pub outputs: Vec<TensorId>,
}

/// Every tensor and op of a traced computation, in execution order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// Tensors by id.
    pub tensors: Vec<TensorInfo>,
    /// Ops in the order they ran.
    pub ops: Vec<Op>,
}

impl Trace {
    /// The parameters: `(id, name)` in creation order.
    pub fn params(&self) -> impl Iterator<Item = (TensorId, &str)> {
        self.tensors
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.origin {
                Origin::Param(n) => Some((i, n.as_str())),
                _ => None,
            })
    }

    /// The shape of tensor `id`.
    pub fn shape(&self, id: TensorId) -> &Shape {
        &self.tensors[id].shape
    }
}

/// A backend that records instead of computing. Cloning shares the recording.
#[derive(Clone, Debug, Default)]
pub struct TraceBackend {
    trace: Arc<Mutex<Trace>>,
}

impl TraceBackend {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    /// A named parameter leaf of shape `shape`.
    pub fn param(&self, name: &str, shape: Shape) -> SymTensor {
        self.leaf(shape, Origin::Param(name.to_string()))
    }

    /// A copy of what has been recorded so far.
    pub fn trace(&self) -> Trace {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Trace> {
        // A panic while holding the lock cannot leave a half-written record: every push is
        // a single statement. Recover the data rather than propagate the poison.
        self.trace.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leaf(&self, shape: Shape, origin: Origin) -> SymTensor {
        let mut t = self.lock();
        t.tensors.push(TensorInfo {
            shape: shape.clone(),
            origin,
        });
        SymTensor {
            id: t.tensors.len() - 1,
            shape,
        }
    }

    /// Records `kind` on `inputs`, creating one output per shape in `outputs`.
    fn record(&self, kind: OpKind, inputs: &[&SymTensor], outputs: Vec<Shape>) -> Vec<SymTensor> {
        let mut t = self.lock();
        let op = t.ops.len();
        let mut ids = Vec::with_capacity(outputs.len());
        let mut out = Vec::with_capacity(outputs.len());
        for shape in outputs {
            t.tensors.push(TensorInfo {
                shape: shape.clone(),
                origin: Origin::Op(op),
            });
            let id = t.tensors.len() - 1;
            ids.push(id);
            out.push(SymTensor { id, shape });
        }
        t.ops.push(Op {
            kind,
            inputs: inputs.iter().map(|x| x.id).collect(),
            outputs: ids,
        });
        out
    }

    fn one(&self, kind: OpKind, inputs: &[&SymTensor], shape: Shape) -> SymTensor {
        self.record(kind, inputs, vec![shape]).remove(0)
    }

    fn two(
        &self,
        kind: OpKind,
        inputs: &[&SymTensor],
        a: Shape,
        b: Shape,
    ) -> (SymTensor, SymTensor) {
        let mut v = self.record(kind, inputs, vec![a, b]).into_iter();
        match (v.next(), v.next()) {
            (Some(x), Some(y)) => (x, y),
            _ => unreachable!("record returns one tensor per requested shape"),
        }
    }

    fn three(
        &self,
        kind: OpKind,
        inputs: &[&SymTensor],
        shapes: [Shape; 3],
    ) -> (SymTensor, SymTensor, SymTensor) {
        let mut v = self.record(kind, inputs, shapes.to_vec()).into_iter();
        match (v.next(), v.next(), v.next()) {
            (Some(x), Some(y), Some(z)) => (x, y, z),
            _ => unreachable!("record returns one tensor per requested shape"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_tensor::{ElementwiseOps, MatmulOps, Storage, Tensor};

    #[test]
    fn records_ops_shapes_and_parameters() {
        let tb = TraceBackend::new();
        let w = tb.param("dense.weight", Shape::from([4, 3]));
        let bias = tb.param("dense.bias", Shape::from([4]));
        let x = tb.upload(&Tensor::zeros([2, 3])).unwrap();
        let y = tb.matmul_fwd(&x, &w, Transpose::NT).unwrap();
        let y = tb.add_bias_fwd(&y, &bias).unwrap();
        assert_eq!(y.shape().dims(), &[2, 4]);
        let e = tb.matmul_fwd(&x, &w, Transpose::NN).unwrap_err();
        assert!(e.to_string().contains("inner dimensions differ"), "{e}");
        let trace = tb.trace();
        assert_eq!(trace.ops.len(), 2);
        assert_eq!(trace.ops[0].kind, OpKind::Matmul(Transpose::NT));
        assert_eq!(trace.ops[0].inputs, vec![x.id(), w.id()]);
        assert_eq!(trace.ops[1].outputs, vec![y.id()]);
        let names: Vec<&str> = trace.params().map(|(_, n)| n).collect();
        assert_eq!(names, ["dense.weight", "dense.bias"]);
        assert_eq!(trace.shape(y.id()).dims(), &[2, 4]);
    }
}
