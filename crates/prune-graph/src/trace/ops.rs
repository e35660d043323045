//! The backend traits on `TraceBackend`: every op checks its inputs' shapes as the CPU
//! backend does and records itself with its output shapes.

use super::{OpKind, Origin, SymTensor, TraceBackend};
use prune_tensor::{
    ActivationOps, AdamW, AttentionOps, ElementwiseOps, IndexOps, LayerNormStats, LinearOps,
    LossOps, MatmulOps, NormOps, OptimOps, Result, Shape, SoftmaxOps, Storage, Tensor, Transpose,
    shape_error,
};

fn same(op: &'static str, a: &SymTensor, b: &SymTensor) -> Result<()> {
    if a.shape == b.shape {
        Ok(())
    } else {
        Err(shape_error(
            op,
            &[&a.shape, &b.shape],
            "shapes must be equal",
        ))
    }
}

fn row_vector(op: &'static str, x: &SymTensor, v: &SymTensor) -> Result<()> {
    prune_tensor::checks::row_vector(op, &x.shape, &v.shape)
}

/// Rows of `x` viewed `[N, C]`, as a shape `[N]`.
fn rows_of(x: &Shape) -> Shape {
    Shape::from([x.rows()])
}

impl Storage for TraceBackend {
    type Tensor = SymTensor;

    fn shape<'a>(&self, t: &'a SymTensor) -> &'a Shape {
        &t.shape
    }

    fn upload(&self, t: &Tensor<f32>) -> Result<SymTensor> {
        Ok(self.leaf(t.shape().clone(), Origin::Input))
    }

    fn download(&self, t: &SymTensor) -> Result<Tensor<f32>> {
        self.record(OpKind::Download, &[t], vec![]);
        Ok(Tensor::zeros(t.shape.clone()))
    }

    fn zeros(&self, shape: &Shape) -> Result<SymTensor> {
        Ok(self.leaf(shape.clone(), Origin::Input))
    }

    fn reshape(&self, t: SymTensor, shape: Shape) -> Result<SymTensor> {
        if shape.numel() != t.shape.numel() {
            return Err(shape_error(
                "reshape",
                &[&t.shape, &shape],
                "element counts differ",
            ));
        }
        Ok(self.one(OpKind::Reshape, &[&t], shape))
    }
}

/// Per-head attention products are recorded as what the defaults compose them of (reshapes,
/// permutations and matmuls), which the dependency analysis already knows.
impl AttentionOps for TraceBackend {}

/// A linear layer is recorded as its matmul and bias add.
impl LinearOps for TraceBackend {}

impl MatmulOps for TraceBackend {
    fn matmul_fwd(&self, a: &SymTensor, b: &SymTensor, t: Transpose) -> Result<SymTensor> {
        let out = prune_tensor::checks::matmul_output_shape(&a.shape, &b.shape, t)?;
        Ok(self.one(OpKind::Matmul(t), &[a, b], out))
    }

    fn matmul_bwd(
        &self,
        a: &SymTensor,
        b: &SymTensor,
        t: Transpose,
        dc: &SymTensor,
    ) -> Result<(SymTensor, SymTensor)> {
        let out = prune_tensor::checks::matmul_output_shape(&a.shape, &b.shape, t)?;
        if out != dc.shape {
            return Err(shape_error(
                "matmul_bwd",
                &[&a.shape, &b.shape, &dc.shape],
                "dc must have the product's shape",
            ));
        }
        Ok(self.two(
            OpKind::MatmulBwd(t),
            &[a, b, dc],
            a.shape.clone(),
            b.shape.clone(),
        ))
    }
}

impl ElementwiseOps for TraceBackend {
    fn add_fwd(&self, a: &SymTensor, b: &SymTensor) -> Result<SymTensor> {
        same("add_fwd", a, b)?;
        Ok(self.one(OpKind::Add, &[a, b], a.shape.clone()))
    }

    fn mul_fwd(&self, a: &SymTensor, b: &SymTensor) -> Result<SymTensor> {
        same("mul_fwd", a, b)?;
        Ok(self.one(OpKind::Mul, &[a, b], a.shape.clone()))
    }

    fn mul_bwd(
        &self,
        a: &SymTensor,
        b: &SymTensor,
        dy: &SymTensor,
    ) -> Result<(SymTensor, SymTensor)> {
        same("mul_bwd", a, b)?;
        same("mul_bwd", a, dy)?;
        Ok(self.two(
            OpKind::MulBwd,
            &[a, b, dy],
            a.shape.clone(),
            b.shape.clone(),
        ))
    }

    fn scale_fwd(&self, x: &SymTensor, s: f64) -> Result<SymTensor> {
        Ok(self.one(OpKind::Scale(s), &[x], x.shape.clone()))
    }

    fn add_bias_fwd(&self, x: &SymTensor, bias: &SymTensor) -> Result<SymTensor> {
        row_vector("add_bias_fwd", x, bias)?;
        Ok(self.one(OpKind::AddBias, &[x, bias], x.shape.clone()))
    }

    fn add_bias_bwd(&self, dy: &SymTensor) -> Result<SymTensor> {
        Ok(self.one(OpKind::AddBiasBwd, &[dy], Shape::from([dy.shape.last()])))
    }

    fn scale_rows_fwd(
        &self,
        x: &SymTensor,
        s: &SymTensor,
        rows_per_group: usize,
    ) -> Result<SymTensor> {
        check_row_groups("scale_rows_fwd", x, s, rows_per_group)?;
        Ok(self.one(
            OpKind::ScaleRows { rows_per_group },
            &[x, s],
            x.shape.clone(),
        ))
    }

    fn scale_rows_bwd(
        &self,
        x: &SymTensor,
        s: &SymTensor,
        rows_per_group: usize,
        dy: &SymTensor,
    ) -> Result<(SymTensor, SymTensor)> {
        check_row_groups("scale_rows_bwd", x, s, rows_per_group)?;
        same("scale_rows_bwd", x, dy)?;
        Ok(self.two(
            OpKind::ScaleRowsBwd { rows_per_group },
            &[x, s, dy],
            x.shape.clone(),
            s.shape.clone(),
        ))
    }

    fn add_assign(&self, acc: &mut SymTensor, x: &SymTensor) -> Result<()> {
        same("add_assign", acc, x)?;
        *acc = self.one(OpKind::AddAssign, &[acc, x], acc.shape.clone());
        Ok(())
    }

    fn scale_assign(&self, x: &mut SymTensor, s: f64) -> Result<()> {
        *x = self.one(OpKind::ScaleAssign(s), &[x], x.shape.clone());
        Ok(())
    }

    fn sum_fwd(&self, x: &SymTensor) -> Result<f64> {
        self.record(OpKind::Reduce, &[x], vec![]);
        Ok(0.0)
    }

    fn mean_fwd(&self, x: &SymTensor) -> Result<f64> {
        self.record(OpKind::Reduce, &[x], vec![]);
        Ok(0.0)
    }

    fn sum_bwd(&self, shape: &Shape, _dl: f64) -> Result<SymTensor> {
        Ok(self.one(OpKind::ReduceBwd, &[], shape.clone()))
    }

    fn mean_bwd(&self, shape: &Shape, _dl: f64) -> Result<SymTensor> {
        Ok(self.one(OpKind::ReduceBwd, &[], shape.clone()))
    }

    fn sum_squares(&self, x: &SymTensor) -> Result<f64> {
        self.record(OpKind::Reduce, &[x], vec![]);
        Ok(0.0)
    }

    fn dropout_fwd(&self, x: &SymTensor, p: f64, _seed: u64) -> Result<(SymTensor, SymTensor)> {
        Ok(self.two(
            OpKind::Dropout { p },
            &[x],
            x.shape.clone(),
            x.shape.clone(),
        ))
    }
}

fn check_row_groups(
    op: &'static str,
    x: &SymTensor,
    s: &SymTensor,
    rows_per_group: usize,
) -> Result<()> {
    let rows = x.shape.rows();
    if rows_per_group == 0
        || rows % rows_per_group != 0
        || s.shape.dims() != [rows / rows_per_group]
    {
        return Err(shape_error(
            op,
            &[&x.shape, &s.shape],
            format!("expected s [rows / {rows_per_group}]"),
        ));
    }
    Ok(())
}

impl ActivationOps for TraceBackend {
    fn gelu_fwd(&self, x: &SymTensor) -> Result<SymTensor> {
        Ok(self.one(OpKind::Gelu, &[x], x.shape.clone()))
    }

    fn gelu_bwd(&self, x: &SymTensor, dy: &SymTensor) -> Result<SymTensor> {
        same("gelu_bwd", x, dy)?;
        Ok(self.one(OpKind::GeluBwd, &[x, dy], x.shape.clone()))
    }

    fn gelu_tanh_fwd(&self, x: &SymTensor) -> Result<SymTensor> {
        Ok(self.one(OpKind::GeluTanh, &[x], x.shape.clone()))
    }

    fn gelu_tanh_bwd(&self, x: &SymTensor, dy: &SymTensor) -> Result<SymTensor> {
        same("gelu_tanh_bwd", x, dy)?;
        Ok(self.one(OpKind::GeluTanhBwd, &[x, dy], x.shape.clone()))
    }

    fn relu_fwd(&self, x: &SymTensor) -> Result<SymTensor> {
        Ok(self.one(OpKind::Relu, &[x], x.shape.clone()))
    }

    fn relu_bwd(&self, x: &SymTensor, dy: &SymTensor) -> Result<SymTensor> {
        same("relu_bwd", x, dy)?;
        Ok(self.one(OpKind::ReluBwd, &[x, dy], x.shape.clone()))
    }

    fn tanh_fwd(&self, x: &SymTensor) -> Result<SymTensor> {
        Ok(self.one(OpKind::Tanh, &[x], x.shape.clone()))
    }

    fn tanh_bwd(&self, y: &SymTensor, dy: &SymTensor) -> Result<SymTensor> {
        same("tanh_bwd", y, dy)?;
        Ok(self.one(OpKind::TanhBwd, &[y, dy], y.shape.clone()))
    }
}

impl SoftmaxOps for TraceBackend {
    fn softmax_fwd(
        &self,
        x: &SymTensor,
        scale: f64,
        mask: Option<&SymTensor>,
    ) -> Result<SymTensor> {
        let mut inputs = vec![x];
        if let Some(m) = mask {
            let d = x.shape.dims();
            if d.len() < 2 || m.shape.dims() != [d[0], d[d.len() - 1]] {
                return Err(shape_error(
                    "softmax_fwd",
                    &[&x.shape, &m.shape],
                    "mask must be [B, Tk]",
                ));
            }
            inputs.push(m);
        }
        Ok(self.one(OpKind::Softmax { scale }, &inputs, x.shape.clone()))
    }

    fn softmax_bwd(&self, y: &SymTensor, dy: &SymTensor, _scale: f64) -> Result<SymTensor> {
        same("softmax_bwd", y, dy)?;
        Ok(self.one(OpKind::SoftmaxBwd, &[y, dy], y.shape.clone()))
    }
}

impl NormOps for TraceBackend {
    fn layer_norm_fwd(
        &self,
        x: &SymTensor,
        gamma: &SymTensor,
        beta: &SymTensor,
        _eps: f64,
    ) -> Result<(SymTensor, LayerNormStats<SymTensor>)> {
        row_vector("layer_norm_fwd", x, gamma)?;
        row_vector("layer_norm_fwd", x, beta)?;
        let (y, mean, rstd) = self.three(
            OpKind::LayerNorm,
            &[x, gamma, beta],
            [x.shape.clone(), rows_of(&x.shape), rows_of(&x.shape)],
        );
        Ok((y, LayerNormStats { mean, rstd }))
    }

    fn layer_norm_bwd(
        &self,
        x: &SymTensor,
        gamma: &SymTensor,
        stats: &LayerNormStats<SymTensor>,
        dy: &SymTensor,
    ) -> Result<(SymTensor, SymTensor, SymTensor)> {
        row_vector("layer_norm_bwd", x, gamma)?;
        same("layer_norm_bwd", x, dy)?;
        Ok(self.three(
            OpKind::LayerNormBwd,
            &[x, gamma, &stats.mean, &stats.rstd, dy],
            [x.shape.clone(), gamma.shape.clone(), gamma.shape.clone()],
        ))
    }

    fn masked_layer_norm_fwd(
        &self,
        x: &SymTensor,
        gamma: &SymTensor,
        beta: &SymTensor,
        keep: &SymTensor,
        _eps: f64,
    ) -> Result<(SymTensor, LayerNormStats<SymTensor>)> {
        for v in [gamma, beta, keep] {
            row_vector("masked_layer_norm_fwd", x, v)?;
        }
        let (y, mean, rstd) = self.three(
            OpKind::MaskedLayerNorm,
            &[x, gamma, beta, keep],
            [x.shape.clone(), rows_of(&x.shape), rows_of(&x.shape)],
        );
        Ok((y, LayerNormStats { mean, rstd }))
    }

    fn masked_layer_norm_bwd(
        &self,
        x: &SymTensor,
        gamma: &SymTensor,
        keep: &SymTensor,
        stats: &LayerNormStats<SymTensor>,
        dy: &SymTensor,
    ) -> Result<(SymTensor, SymTensor, SymTensor)> {
        row_vector("masked_layer_norm_bwd", x, gamma)?;
        row_vector("masked_layer_norm_bwd", x, keep)?;
        same("masked_layer_norm_bwd", x, dy)?;
        Ok(self.three(
            OpKind::MaskedLayerNormBwd,
            &[x, gamma, keep, &stats.mean, &stats.rstd, dy],
            [x.shape.clone(), gamma.shape.clone(), gamma.shape.clone()],
        ))
    }
}

impl IndexOps for TraceBackend {
    fn gather_rows_fwd(&self, table: &SymTensor, ids: &[usize]) -> Result<SymTensor> {
        let d = table.shape.dims();
        if d.len() != 2 {
            return Err(shape_error(
                "gather_rows_fwd",
                &[&table.shape],
                "table must be [V, C]",
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i >= d[0]) {
            return Err(prune_tensor::TensorError::Index {
                op: "gather_rows_fwd",
                index: bad as i64,
                bound: d[0],
            });
        }
        Ok(self.one(
            OpKind::GatherRows { count: ids.len() },
            &[table],
            Shape::from([ids.len(), d[1]]),
        ))
    }

    fn gather_rows_bwd(&self, dy: &SymTensor, ids: &[usize], rows: usize) -> Result<SymTensor> {
        if dy.shape.rank() != 2 || dy.shape.dims()[0] != ids.len() {
            return Err(shape_error(
                "gather_rows_bwd",
                &[&dy.shape],
                format!("dy must be [{}, C]", ids.len()),
            ));
        }
        Ok(self.one(
            OpKind::GatherRowsBwd { rows },
            &[dy],
            Shape::from([rows, dy.shape.last()]),
        ))
    }

    fn permute(&self, x: &SymTensor, perm: &[usize]) -> Result<SymTensor> {
        let rank = x.shape.rank();
        let mut seen = vec![false; rank];
        let valid = perm.len() == rank
            && perm
                .iter()
                .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(shape_error(
                "permute",
                &[&x.shape],
                format!("{perm:?} is not a permutation of the {rank} axes"),
            ));
        }
        let dims: Vec<usize> = perm.iter().map(|&p| x.shape.dims()[p]).collect();
        Ok(self.one(OpKind::Permute(perm.to_vec()), &[x], Shape::new(dims)))
    }
}

impl LossOps for TraceBackend {
    fn cross_entropy_fwd(
        &self,
        logits: &SymTensor,
        labels: &[i64],
        _ignore_index: i64,
    ) -> Result<(f64, SymTensor)> {
        if logits.shape.rank() != 2 || logits.shape.dims()[0] != labels.len() {
            return Err(shape_error(
                "cross_entropy_fwd",
                &[&logits.shape],
                format!("logits must be [{}, K]", labels.len()),
            ));
        }
        Ok((
            0.0,
            self.one(OpKind::CrossEntropy, &[logits], logits.shape.clone()),
        ))
    }

    fn cross_entropy_bwd(
        &self,
        probs: &SymTensor,
        _labels: &[i64],
        _ignore_index: i64,
        _dl: f64,
    ) -> Result<SymTensor> {
        Ok(self.one(OpKind::CrossEntropyBwd, &[probs], probs.shape.clone()))
    }

    fn mse_fwd(&self, pred: &SymTensor, target: &SymTensor) -> Result<f64> {
        same("mse_fwd", pred, target)?;
        self.record(OpKind::Mse, &[pred, target], vec![]);
        Ok(0.0)
    }

    fn mse_bwd(&self, pred: &SymTensor, target: &SymTensor, _dl: f64) -> Result<SymTensor> {
        same("mse_bwd", pred, target)?;
        Ok(self.one(OpKind::MseBwd, &[pred, target], pred.shape.clone()))
    }

    fn kl_div_fwd(&self, student: &SymTensor, teacher: &SymTensor, _t: f64) -> Result<f64> {
        same("kl_div_fwd", student, teacher)?;
        self.record(OpKind::KlDiv, &[student, teacher], vec![]);
        Ok(0.0)
    }

    fn kl_div_bwd(
        &self,
        student: &SymTensor,
        teacher: &SymTensor,
        _t: f64,
        _dl: f64,
    ) -> Result<SymTensor> {
        same("kl_div_bwd", student, teacher)?;
        Ok(self.one(OpKind::KlDivBwd, &[student, teacher], student.shape.clone()))
    }
}

impl OptimOps for TraceBackend {
    fn adamw_step(
        &self,
        param: &mut SymTensor,
        grad: &SymTensor,
        m: &mut SymTensor,
        v: &mut SymTensor,
        _hp: &AdamW,
        mask: Option<&SymTensor>,
    ) -> Result<()> {
        for t in [grad, &*m, &*v].into_iter().chain(mask) {
            same("adamw_step", param, t)?;
        }
        let mut inputs: Vec<&SymTensor> = vec![param, grad, m, v];
        inputs.extend(mask);
        let shape = param.shape.clone();
        let (p, m2, v2) = self.three(
            OpKind::AdamW,
            &inputs,
            [shape.clone(), shape.clone(), shape],
        );
        *param = p;
        *m = m2;
        *v = v2;
        Ok(())
    }
}
