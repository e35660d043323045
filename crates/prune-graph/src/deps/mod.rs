//! Dependency analysis of a [`Trace`]: which parameter axes share channels.
//!
//! Every axis of every traced tensor is an index space. The rules of DepGraph tie spaces
//! together: an op's output channels to its consumers' input channels (a matmul ties the
//! contracted axes of its operands, its free axes to the output's), LayerNorm, residual
//! adds and elementwise ops tie inputs to outputs axis by axis, permutes move axes, and a
//! reshape that splits an axis (`[N, H·D] → [B, T, H, D]`) records that the axis is the
//! product of finer spaces, heads being the major factor. Spaces are kept in a union-find
//! whose classes may carry such a factorisation; uniting two factored classes unites their
//! factors. A parameter axis whose (recursively expanded) factorisation starts with space
//! S holds S's channels in contiguous blocks of `unit` = product of the other factors.
//!
//! A class of spaces holding parameter axes becomes a [`ChannelClass`]: the raw material of
//! [`crate::Group`]s.

use crate::error::{GraphError, Result};
use crate::group::Role;
use crate::trace::{OpKind, Origin, TensorId, Trace};
use spaces::Spaces;
use std::collections::{BTreeMap, HashMap, HashSet};

mod spaces;

/// One parameter axis of a [`ChannelClass`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClassMember {
    /// The parameter's name.
    pub param: String,
    /// Its axis.
    pub axis: usize,
    /// Elements per channel along that axis.
    pub unit: usize,
    /// How the parameter meets the channels.
    pub role: Role,
    /// Whether the axis is a product of finer spaces (a head axis `H·D` is); an axis that
    /// the traced code never splits holds one element per channel.
    pub blocked: bool,
}

/// A set of parameter axes that share one index space of `channels` channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelClass {
    /// Number of channels.
    pub channels: usize,
    /// The parameter axes, sorted by name then axis.
    pub members: Vec<ClassMember>,
}

/// The analysis state: spaces of every tensor axis, parameter aliases and roles.
struct Analysis<'t> {
    trace: &'t Trace,
    spaces: Spaces,
    /// `axes[t][i]`: the space of axis `i` of tensor `t`.
    axes: Vec<Vec<usize>>,
    /// The parameter a tensor is an elementwise image of (a masked weight is its weight).
    alias: Vec<Option<TensorId>>,
    roles: HashMap<(TensorId, usize), Role>,
    /// Parameter axes whose entries are picked by data (the rows of an embedding table):
    /// no index space, so no channels.
    indexed: HashSet<(TensorId, usize)>,
}

impl<'t> Analysis<'t> {
    fn new(trace: &'t Trace) -> Self {
        let mut spaces = Spaces::default();
        let axes = trace
            .tensors
            .iter()
            .map(|t| {
                t.shape
                    .dims()
                    .iter()
                    .map(|&d| spaces.new_space(d))
                    .collect()
            })
            .collect();
        let alias = trace
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| matches!(t.origin, Origin::Param(_)).then_some(i))
            .collect();
        Analysis {
            trace,
            spaces,
            axes,
            alias,
            roles: HashMap::new(),
            indexed: HashSet::new(),
        }
    }

    fn rank(&self, t: TensorId) -> usize {
        self.axes[t].len()
    }

    fn tie(&mut self, a: TensorId, i: usize, b: TensorId, j: usize) -> Result<()> {
        let axis = |t: TensorId, i: usize| {
            self.axes
                .get(t)
                .and_then(|ax| ax.get(i))
                .copied()
                .ok_or_else(|| GraphError::Analysis(format!("tensor {t} has no axis {i}")))
        };
        let (x, y) = (axis(a, i)?, axis(b, j)?);
        self.spaces.union(x, y)
    }

    /// Ties every axis of `a` to the same axis of `b` (same shapes).
    fn tie_all(&mut self, a: TensorId, b: TensorId) -> Result<()> {
        for i in 0..self.rank(a).min(self.rank(b)) {
            self.tie(a, i, b, i)?;
        }
        Ok(())
    }

    /// Ties every tensor to the first, axis by axis.
    fn tie_each(&mut self, ts: &[TensorId]) -> Result<()> {
        if let Some((&first, rest)) = ts.split_first() {
            for &t in rest {
                self.tie_all(first, t)?;
            }
        }
        Ok(())
    }

    fn last(&self, t: TensorId) -> usize {
        self.rank(t).saturating_sub(1)
    }

    /// Axis 0 of `v` (a `[C]` vector) is the last axis of `x`.
    fn tie_vector(&mut self, v: TensorId, x: TensorId, role: Option<Role>) -> Result<()> {
        let l = self.last(x);
        self.tie(v, 0, x, l)?;
        if let Some(role) = role {
            self.role(v, 0, role);
        }
        Ok(())
    }

    fn role(&mut self, t: TensorId, axis: usize, role: Role) {
        if let Some(p) = self.alias[t] {
            self.roles.entry((p, axis)).or_insert(role);
        }
    }

    /// Space `whole` (axis 0 of a 1-D tensor) is the product of `parts` (axes of `of`).
    fn product(&mut self, whole: TensorId, of: TensorId, parts: &[usize]) -> Result<()> {
        let spaces: Vec<usize> = parts.iter().map(|&i| self.axes[of][i]).collect();
        if spaces.is_empty() {
            return Ok(());
        }
        let Some(&w) = self.axes[whole].first() else {
            return Err(GraphError::Analysis(format!(
                "tensor {whole} should have one axis, it is a scalar"
            )));
        };
        self.spaces.factor(w, spaces)
    }

    /// Per-row statistics `[N]` of `x` `[.., C]`: N is the product of `x`'s leading axes.
    fn rows(&mut self, stat: TensorId, x: TensorId) -> Result<()> {
        let lead: Vec<usize> = (0..self.last(x)).collect();
        self.product(stat, x, &lead)
    }

    fn matmul(
        &mut self,
        a: TensorId,
        b: TensorId,
        out: TensorId,
        t: prune_tensor::Transpose,
    ) -> Result<()> {
        let (ra, rb, ro) = (self.rank(a), self.rank(b), self.rank(out));
        if ra < 2 || rb < 2 || ro != ra {
            return Err(GraphError::Analysis(format!(
                "matmul of ranks {ra} and {rb} into rank {ro}"
            )));
        }
        for i in 0..ra - 2 {
            self.tie(a, i, out, i)?;
            if rb > 2 {
                self.tie(b, i, out, i)?;
            }
        }
        let (a_m, a_k) = if t.a() {
            (ra - 1, ra - 2)
        } else {
            (ra - 2, ra - 1)
        };
        let (b_k, b_n) = if t.b() {
            (rb - 1, rb - 2)
        } else {
            (rb - 2, rb - 1)
        };
        self.tie(a, a_m, out, ro - 2)?;
        self.tie(b, b_n, out, ro - 1)?;
        self.tie(a, a_k, b, b_k)?;
        self.role(a, a_m, Role::Producer);
        self.role(a, a_k, Role::Consumer);
        self.role(b, b_n, Role::Producer);
        self.role(b, b_k, Role::Consumer);
        Ok(())
    }

    /// A reshape: axes are matched in blocks of equal element count; a block with one axis
    /// on one side is the product of the other side's axes (size-1 axes join the block
    /// that follows them, so `[N, D] → [B, T, 1, D]` still shows one head of D).
    fn reshape(&mut self, x: TensorId, y: TensorId) -> Result<()> {
        let dims = |t: TensorId| self.trace.shape(t).dims().to_vec();
        let (xs, ys) = (dims(x), dims(y));
        let mut blocks: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < xs.len() && j < ys.len() {
            let (mut bi, mut bj) = (vec![i], vec![j]);
            let (mut pi, mut pj) = (xs[i], ys[j]);
            i += 1;
            j += 1;
            while pi != pj {
                if pi < pj && i < xs.len() {
                    pi *= xs[i];
                    bi.push(i);
                    i += 1;
                } else if pj < pi && j < ys.len() {
                    pj *= ys[j];
                    bj.push(j);
                    j += 1;
                } else {
                    return Ok(()); // no clean block structure: tie nothing further
                }
            }
            blocks.push((bi, bj));
        }
        if let Some((bi, bj)) = blocks.last_mut() {
            bi.extend(i..xs.len());
            bj.extend(j..ys.len());
        }
        for (bi, bj) in blocks {
            match (bi.len(), bj.len()) {
                (1, 1) => self.tie(x, bi[0], y, bj[0])?,
                (1, _) => {
                    let parts = bj.iter().map(|&k| self.axes[y][k]).collect();
                    self.spaces.factor(self.axes[x][bi[0]], parts)?;
                }
                (_, 1) => {
                    let parts = bi.iter().map(|&k| self.axes[x][k]).collect();
                    self.spaces.factor(self.axes[y][bj[0]], parts)?;
                }
                _ => {} // many-to-many: no axis maps onto another
            }
        }
        Ok(())
    }

    /// `s` (one factor per group of `rows_per_group` rows of `x`) spans `x`'s leading axes
    /// down to where the remaining leading axes hold `rows_per_group` rows.
    fn row_groups(&mut self, x: TensorId, s: TensorId, rows_per_group: usize) -> Result<()> {
        let dims = self.trace.shape(x).dims().to_vec();
        let lead = dims.len().saturating_sub(1);
        let mut inner = 1;
        for k in (0..=lead).rev() {
            if inner == rows_per_group {
                let parts: Vec<usize> = (0..k).collect();
                return self.product(s, x, &parts);
            }
            if k > 0 {
                inner *= dims[k - 1];
            }
        }
        Ok(())
    }

    fn op(&mut self, kind: &OpKind, inp: &[TensorId], out: &[TensorId]) -> Result<()> {
        use OpKind as K;
        let (ins, outs) = arity(kind);
        if !ins.contains(&inp.len()) || out.len() != outs {
            return Err(GraphError::Analysis(format!(
                "{} inputs and {} outputs do not fit the op",
                inp.len(),
                out.len()
            )));
        }
        if let Some(&t) = inp.iter().chain(out).find(|&&t| t >= self.axes.len()) {
            return Err(GraphError::Analysis(format!(
                "tensor {t} is not in the trace"
            )));
        }
        match kind {
            K::Matmul(t) => self.matmul(inp[0], inp[1], out[0], *t),
            K::MatmulBwd(t) => {
                self.matmul(inp[0], inp[1], inp[2], *t)?;
                self.tie_all(inp[0], out[0])?;
                self.tie_all(inp[1], out[1])
            }
            K::Mul => {
                let (a, b) = (self.alias[inp[0]], self.alias[inp[1]]);
                self.alias[out[0]] = match (a, b) {
                    (Some(p), None) | (None, Some(p)) => Some(p),
                    _ => None,
                };
                self.tie_each(&[inp, out].concat())
            }
            K::Scale(_) | K::AddAssign | K::ScaleAssign(_) | K::AdamW => {
                self.alias[out[0]] = self.alias[inp[0]];
                self.tie_each(&[inp, out].concat())
            }
            K::Add
            | K::MulBwd
            | K::Dropout { .. }
            | K::Gelu
            | K::GeluBwd
            | K::GeluTanh
            | K::GeluTanhBwd
            | K::Relu
            | K::ReluBwd
            | K::Tanh
            | K::TanhBwd
            | K::SoftmaxBwd
            | K::CrossEntropy
            | K::CrossEntropyBwd
            | K::Mse
            | K::MseBwd
            | K::KlDiv
            | K::KlDivBwd => self.tie_each(&[inp, out].concat()),
            K::AddBias => {
                self.tie_all(inp[0], out[0])?;
                self.tie_vector(inp[1], inp[0], Some(Role::Producer))
            }
            K::AddBiasBwd => self.tie_vector(out[0], inp[0], None),
            K::ScaleRows { rows_per_group } => {
                self.tie_all(inp[0], out[0])?;
                self.row_groups(inp[0], inp[1], *rows_per_group)
            }
            K::ScaleRowsBwd { rows_per_group } => {
                self.tie_each(&[inp[0], inp[2], out[0]])?;
                self.tie_all(inp[1], out[1])?;
                self.row_groups(inp[0], inp[1], *rows_per_group)
            }
            K::Reduce | K::ReduceBwd | K::Download => Ok(()),
            K::Softmax { .. } => {
                self.tie_all(inp[0], out[0])?;
                if let Some(&m) = inp.get(1) {
                    let l = self.last(inp[0]);
                    self.tie(m, 0, inp[0], 0)?;
                    self.tie(m, 1, inp[0], l)?;
                }
                Ok(())
            }
            K::LayerNorm | K::MaskedLayerNorm => {
                let x = inp[0];
                self.tie_all(x, out[0])?;
                for &v in &inp[1..] {
                    self.tie_vector(v, x, Some(Role::Norm))?;
                }
                self.rows(out[1], x)?;
                self.rows(out[2], x)
            }
            K::LayerNormBwd | K::MaskedLayerNormBwd => {
                let (x, dy) = (inp[0], inp[inp.len() - 1]);
                let vectors = if *kind == K::LayerNormBwd { 1..2 } else { 1..3 };
                self.tie_each(&[x, dy, out[0]])?;
                for v in inp[vectors].iter().chain(&out[1..]) {
                    self.tie_vector(*v, x, None)?;
                }
                let stats = inp.len() - 3;
                self.rows(inp[stats], x)?;
                self.rows(inp[stats + 1], x)
            }
            K::GatherRows { .. } => {
                self.tie(inp[0], 1, out[0], 1)?;
                self.role(inp[0], 1, Role::Producer);
                if let Some(p) = self.alias[inp[0]] {
                    self.indexed.insert((p, 0));
                }
                Ok(())
            }
            K::GatherRowsBwd { .. } => self.tie(inp[0], 1, out[0], 1),
            K::Permute(perm) => {
                for (i, &p) in perm.iter().enumerate() {
                    self.tie(out[0], i, inp[0], p)?;
                }
                Ok(())
            }
            K::Reshape => self.reshape(inp[0], out[0]),
        }
    }
}

/// How many inputs (a range: optional masks) and outputs an op of `kind` has.
fn arity(kind: &OpKind) -> (std::ops::RangeInclusive<usize>, usize) {
    use OpKind as K;
    match kind {
        K::Matmul(_) | K::Add | K::Mul | K::AddBias | K::ScaleRows { .. } | K::AddAssign => {
            (2..=2, 1)
        }
        K::MatmulBwd(_) | K::MulBwd | K::ScaleRowsBwd { .. } => (3..=3, 2),
        K::Scale(_)
        | K::ScaleAssign(_)
        | K::Gelu
        | K::GeluTanh
        | K::Relu
        | K::Tanh
        | K::Reshape
        | K::Permute(_) => (1..=1, 1),
        K::GatherRows { .. } | K::GatherRowsBwd { .. } | K::AddBiasBwd => (1..=1, 1),
        K::CrossEntropy | K::CrossEntropyBwd => (1..=1, 1),
        K::GeluBwd
        | K::GeluTanhBwd
        | K::ReluBwd
        | K::TanhBwd
        | K::SoftmaxBwd
        | K::MseBwd
        | K::KlDivBwd => (2..=2, 1),
        K::Mse | K::KlDiv => (2..=2, 0),
        K::Reduce | K::Download => (1..=1, 0),
        K::ReduceBwd => (0..=0, 1),
        K::Dropout { .. } => (1..=1, 2),
        K::Softmax { .. } => (1..=2, 1),
        K::LayerNorm => (3..=3, 3),
        K::MaskedLayerNorm => (4..=4, 3),
        K::LayerNormBwd => (5..=5, 3),
        K::MaskedLayerNormBwd => (6..=6, 3),
        K::AdamW => (4..=5, 3),
    }
}

/// Analyses `trace`: the classes of parameter axes that share channels, in the order their
/// first parameter was created. Axes indexed by data (embedding rows) belong to none.
pub fn analyze(trace: &Trace) -> Result<Vec<ChannelClass>> {
    let mut a = Analysis::new(trace);
    for (i, op) in trace.ops.iter().enumerate() {
        a.op(&op.kind, &op.inputs, &op.outputs)
            .map_err(|e| match e {
                GraphError::Analysis(why) => {
                    GraphError::Analysis(format!("op {i} ({:?}): {why}", op.kind))
                }
                e => e,
            })?;
    }
    // class root → (first parameter id, class)
    let mut classes: BTreeMap<usize, (usize, ChannelClass)> = BTreeMap::new();
    for (id, name) in trace.params() {
        for axis in 0..a.rank(id) {
            if a.indexed.contains(&(id, axis)) {
                continue;
            }
            let leaves = a.spaces.leaves(a.axes[id][axis], 0)?;
            let Some((&major, minor)) = leaves.split_first() else {
                continue;
            };
            let unit = minor.iter().map(|&s| a.spaces.size(s)).product();
            let role = a.roles.get(&(id, axis)).copied().unwrap_or(Role::Consumer);
            let channels = a.spaces.size(major);
            let entry = classes.entry(major).or_insert_with(|| {
                (
                    id,
                    ChannelClass {
                        channels,
                        members: Vec::new(),
                    },
                )
            });
            entry.1.members.push(ClassMember {
                param: name.to_string(),
                axis,
                unit,
                role,
                blocked: !minor.is_empty(),
            });
        }
    }
    let mut out: Vec<(usize, ChannelClass)> = classes.into_values().collect();
    out.sort_by_key(|(first, _)| *first);
    Ok(out
        .into_iter()
        .map(|(_, mut c)| {
            c.members.sort();
            c
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceBackend;
    use prune_tensor::{
        ActivationOps, ElementwiseOps, IndexOps, MatmulOps, NormOps, Shape, Storage, Transpose,
    };

    fn find<'a>(classes: &'a [ChannelClass], param: &str, axis: usize) -> &'a ChannelClass {
        classes
            .iter()
            .find(|c| c.members.iter().any(|m| m.param == param && m.axis == axis))
            .unwrap()
    }

    #[test]
    fn malformed_traces_are_errors() {
        let tb = TraceBackend::new();
        let w = tb.param("w", Shape::from([2, 3]));
        let x = tb.upload(&prune_tensor::Tensor::zeros([4, 3])).unwrap();
        tb.matmul_fwd(&x, &w, Transpose::NT).unwrap();
        let mut trace = tb.trace();
        trace.ops[0].inputs.pop();
        let e = analyze(&trace).unwrap_err();
        assert!(e.to_string().contains("1 inputs and 1 outputs"), "{e}");
        trace.ops[0].inputs = vec![x.id(), 99];
        assert!(
            analyze(&trace)
                .unwrap_err()
                .to_string()
                .contains("tensor 99")
        );
    }

    /// Two linears with a GELU between them and a residual LayerNorm: the MLP's hidden units
    /// form one class, the residual width another.
    #[test]
    fn mlp_with_residual() {
        let tb = TraceBackend::new();
        let p = |n: &str, d: &[usize]| tb.param(n, Shape::from(d));
        let (w1, b1, w2, b2) = (
            p("w1", &[5, 3]),
            p("b1", &[5]),
            p("w2", &[3, 5]),
            p("b2", &[3]),
        );
        let (g, beta) = (p("g", &[3]), p("beta", &[3]));
        let x = tb.upload(&prune_tensor::Tensor::zeros([4, 3])).unwrap();
        let h = tb.matmul_fwd(&x, &w1, Transpose::NT).unwrap();
        let h = tb.gelu_fwd(&tb.add_bias_fwd(&h, &b1).unwrap()).unwrap();
        let y = tb.matmul_fwd(&h, &w2, Transpose::NT).unwrap();
        let y = tb.add_fwd(&tb.add_bias_fwd(&y, &b2).unwrap(), &x).unwrap();
        tb.layer_norm_fwd(&y, &g, &beta, 1e-5).unwrap();
        let classes = analyze(&tb.trace()).unwrap();
        let hidden = find(&classes, "w1", 0);
        let names: Vec<(&str, usize, Role)> = hidden
            .members
            .iter()
            .map(|m| (m.param.as_str(), m.axis, m.role))
            .collect();
        assert_eq!(
            names,
            [
                ("b1", 0, Role::Producer),
                ("w1", 0, Role::Producer),
                ("w2", 1, Role::Consumer)
            ]
        );
        let width = find(&classes, "w1", 1);
        assert_eq!(width.channels, 3);
        assert_eq!(width.members.len(), 5); // w1 cols, w2 rows, b2, g, beta
        assert!(width.members.iter().all(|m| m.unit == 1 && !m.blocked));
    }

    /// A head split: `[N, H·D] → [B, T, H, D] → [B, H, T, D]`, attention over heads, merged
    /// back and projected: Q, K, V rows and O columns share the head class with unit D.
    #[test]
    fn heads_are_blocks_of_the_head_dim() {
        let (b, t, h, d, c) = (2, 3, 4, 5, 6);
        let tb = TraceBackend::new();
        let p = |n: &str, dims: &[usize]| tb.param(n, Shape::from(dims));
        let (wq, wk, wv, wo) = (
            p("q", &[h * d, c]),
            p("k", &[h * d, c]),
            p("v", &[h * d, c]),
            p("o", &[c, h * d]),
        );
        let x = tb.upload(&prune_tensor::Tensor::zeros([b * t, c])).unwrap();
        let split = |w| {
            let y = tb.matmul_fwd(&x, w, Transpose::NT).unwrap();
            let y = tb.reshape(y, Shape::from([b, t, h, d])).unwrap();
            tb.permute(&y, &[0, 2, 1, 3]).unwrap()
        };
        let (q, k, v) = (split(&wq), split(&wk), split(&wv));
        let s = tb.matmul_fwd(&q, &k, Transpose::NT).unwrap();
        let ctx = tb.matmul_fwd(&s, &v, Transpose::NN).unwrap();
        let ctx = tb.permute(&ctx, &[0, 2, 1, 3]).unwrap();
        let ctx = tb.reshape(ctx, Shape::from([b * t, h * d])).unwrap();
        tb.matmul_fwd(&ctx, &wo, Transpose::NT).unwrap();
        let classes = analyze(&tb.trace()).unwrap();
        let heads = find(&classes, "q", 0);
        assert_eq!(heads.channels, h);
        let m: Vec<(&str, usize, usize)> = heads
            .members
            .iter()
            .map(|m| (m.param.as_str(), m.axis, m.unit))
            .collect();
        assert_eq!(m, [("k", 0, d), ("o", 1, d), ("q", 0, d), ("v", 0, d)]);
        assert!(heads.members.iter().all(|m| m.blocked));
        // The input width (Q, K, V columns) and the output width (O rows) are the other two
        // classes; the within-head dims are no classes of their own.
        assert_eq!(classes.len(), 3);
        assert_eq!(find(&classes, "q", 1).members.len(), 3);
        assert_eq!(find(&classes, "o", 0).members.len(), 1);
    }
}
