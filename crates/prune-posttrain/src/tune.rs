//! Mask tuning (Kwon et al. 2022, §4.5): layer by layer, the kept heads' and neurons'
//! output scales are fitted by linear least squares so that each pruned sub-layer
//! reproduces the unpruned model's sub-layer on the sample batches, and folded into the
//! weights (the columns of the attention output and FFN output projections).
//!
//! A sub-layer's pre-LayerNorm sum is `x + b + Σᵤ sᵤ·aᵤ(x)`, `aᵤ` the contribution of unit
//! `u` (a head's context times its slice of the output projection, or a neuron's GELU
//! output times its column). Its inputs come from the pruned model with the layers before
//! already tuned; the target is the unpruned model's sum on the unpruned model's inputs.
//! The scales minimise `‖A·s − (target − x − b)‖² + λ‖s − 1‖²` over real tokens (the last
//! layer: each sequence's first token, all the pooler reads), `λ = damping · mean(diag AᵀA)`
//! so that the scales stay near 1 where the data says little. A solve that fails, or any
//! scale outside `±max_scale`, is ill-posed: tuning stops there and keeps what it did.

use crate::error::{PostTrainError, Result};
use crate::fisher::column_groups;
use crate::layers::{LayerInputs, embed, layer};
use ndarray::{Array1, Array2};
use ndarray_linalg::SolveH;
use prune_speedup::slice::keep_along;
use prune_tensor::{Backend, CpuBackend, ElementwiseOps, IndexOps, MatmulOps, Tensor, Transpose};
use prune_transformer::{Batch, BertModel};
use serde::Serialize;

/// Settings of mask tuning.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TuneConfig {
    /// Weight of the pull towards 1, relative to the mean diagonal of `AᵀA`.
    pub damping: f64,
    /// Largest accepted |scale|.
    pub max_scale: f64,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            damping: 1e-3,
            max_scale: 10.0,
        }
    }
}

/// One fitted sub-layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SublayerFit {
    /// Encoder layer.
    pub layer: usize,
    /// `attention` or `ffn`.
    pub sublayer: &'static str,
    /// Units (heads or neurons) scaled.
    pub units: usize,
    /// Squared error summed over the fitted tokens, before (all scales 1) and after.
    pub error_before: f64,
    /// See `error_before`.
    pub error_after: f64,
    /// Smallest and largest scale.
    pub scale_range: [f64; 2],
}

/// What mask tuning did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TuneReport {
    /// Every sub-layer fitted, in order.
    pub fits: Vec<SublayerFit>,
    /// Why tuning stopped early, if it did.
    pub stopped: Option<String>,
}

/// The normal equations of one sub-layer, summed over batches.
struct Normal {
    gram: Array2<f64>,
    rhs: Array1<f64>,
    target: f64,
}

impl Normal {
    fn new(n: usize) -> Self {
        Normal {
            gram: Array2::zeros((n, n)),
            rhs: Array1::zeros(n),
            target: 0.0,
        }
    }

    /// `sᵀ·G·s − 2·sᵀ·r + ‖b‖²`.
    fn error(&self, s: &Array1<f64>) -> f64 {
        s.dot(&self.gram.dot(s)) - 2.0 * s.dot(&self.rhs) + self.target
    }

    /// The damped solution, or why the problem is ill-posed.
    fn solve(&self, cfg: &TuneConfig) -> std::result::Result<Array1<f64>, String> {
        let n = self.rhs.len();
        let mean = self.gram.diag().sum() / n.max(1) as f64;
        if !(mean.is_finite() && mean > 0.0) {
            return Err("the units contribute nothing on the sample".into());
        }
        let lambda = cfg.damping * mean;
        let mut a = self.gram.clone();
        a.diag_mut().mapv_inplace(|v| v + lambda);
        let b = &self.rhs + lambda;
        let s = a
            .solveh(&b)
            .map_err(|e| format!("the solve failed ({e})"))?;
        if let Some(bad) = s
            .iter()
            .find(|v| !(v.is_finite() && v.abs() <= cfg.max_scale))
        {
            return Err(format!("a scale of {bad} is outside ±{}", cfg.max_scale));
        }
        Ok(s)
    }
}

/// `Σ a⊙b` in f64.
fn frob(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// `w` with the columns of unit `u` (`group` consecutive ones) multiplied by `scales[u]`.
fn scale_columns(w: &Tensor<f32>, scales: &Array1<f64>, group: usize) -> Result<Tensor<f32>> {
    let factors = column_groups(w, group)?.expand(&scales.to_vec());
    let data = (w.data().iter().zip(&factors))
        .map(|(v, s)| (f64::from(*v) * s) as f32)
        .collect();
    Ok(Tensor::new(w.dims().to_vec(), data)?)
}

/// Columns `from..to` of a host matrix.
fn columns(cpu: &CpuBackend<f32>, t: &Tensor<f32>, from: usize, to: usize) -> Result<Tensor<f32>> {
    Ok(keep_along(cpu, t, 1, &(from..to).collect::<Vec<_>>())?)
}

/// Host-side products.
struct Host<'a, B: Backend> {
    cpu: CpuBackend<f32>,
    b: &'a B,
}

impl<B: Backend> Host<'_, B> {
    /// The rows `rows` of a device tensor `[R, K]`.
    fn rows(&self, t: &B::Tensor, rows: &[usize]) -> Result<Tensor<f32>> {
        Ok(self.cpu.gather_rows_fwd(&self.b.download(t)?, rows)?)
    }

    fn mm(&self, a: &Tensor<f32>, b: &Tensor<f32>, t: Transpose) -> Result<Tensor<f32>> {
        Ok(self.cpu.matmul_fwd(a, b, t)?)
    }

    fn add(&self, a: &Tensor<f32>, b: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.cpu.add_fwd(a, b)?)
    }

    fn sub(&self, a: &Tensor<f32>, b: &Tensor<f32>) -> Result<Tensor<f32>> {
        let minus = self.cpu.scale_fwd(b, -1.0)?;
        self.add(a, &minus)
    }
}

/// Fits the scales of `student` (pruned from `teacher`: same layers and widths, fewer heads
/// and neurons) layer by layer on `batches`, folding them into its weights.
pub fn tune<B: Backend>(
    teacher: &BertModel<B>,
    student: &mut BertModel<B>,
    batches: &[Batch],
    cfg: &TuneConfig,
) -> Result<TuneReport> {
    let (tc, sc) = (&teacher.config, &student.config);
    if tc.num_hidden_layers != sc.num_hidden_layers
        || tc.hidden() != sc.hidden()
        || tc.head_dim() != sc.head_dim()
    {
        return Err(PostTrainError::Input(
            "mask tuning needs the pruned model of the same layers, hidden width and head size"
                .into(),
        ));
    }
    if !(cfg.damping >= 0.0 && cfg.damping.is_finite() && cfg.max_scale > 0.0) {
        return Err(PostTrainError::Input(format!(
            "damping must be ≥ 0 and max_scale > 0, got {} and {}",
            cfg.damping, cfg.max_scale
        )));
    }
    let b = teacher.backend().clone();
    let host = Host {
        cpu: CpuBackend::new(),
        b: &b,
    };
    let inputs: Vec<LayerInputs<B::Tensor>> = batches
        .iter()
        .map(|x| {
            LayerInputs::check(student)?;
            LayerInputs::new(teacher, x)
        })
        .collect::<Result<_>>()?;
    let mut xt: Vec<B::Tensor> = inputs
        .iter()
        .map(|i| embed(teacher, i))
        .collect::<Result<_>>()?;
    let mut xs: Vec<B::Tensor> = inputs
        .iter()
        .map(|i| embed(student, i))
        .collect::<Result<_>>()?;
    let mut report = TuneReport::default();
    let layers = tc.num_hidden_layers;
    for l in 0..layers {
        let last = l + 1 == layers;
        // The unpruned layer's pre-LayerNorm sums (less their biases), on its own inputs.
        let tl = &teacher.params.layers[l];
        let (wo_t, w2_t) = (
            b.download(&tl.attention_output.weight)?,
            b.download(&tl.output.weight)?,
        );
        let mut targets = Vec::with_capacity(batches.len());
        for (i, inp) in inputs.iter().enumerate() {
            let rows = inp.rows(last);
            let (y, cache) = layer(teacher, l, &xt[i], inp)?;
            let ctx = host.rows(cache.context(), rows)?;
            let attn = host.add(
                &host.mm(&ctx, &wo_t, Transpose::NT)?,
                &host.rows(&xt[i], rows)?,
            )?;
            let g = host.rows(cache.ffn_activation(), rows)?;
            let h1 = host.rows(cache.ffn_input(), rows)?;
            let ffn = host.add(&host.mm(&g, &w2_t, Transpose::NT)?, &h1)?;
            targets.push((attn, ffn));
            xt[i] = y;
        }
        let sl = SubLayer {
            host: &host,
            l,
            inputs: &inputs,
            x: &xs,
            targets: &targets,
            last,
            cfg,
        };
        let mut ill = None;
        for sub in [Sub::Attention, Sub::Ffn] {
            match sl.fit(student, sub)? {
                Fitted::Done(fit) => report.fits.extend(fit),
                Fitted::Ill(why) => {
                    ill = Some(format!("layer {l} {}: {why}", sub.name()));
                    break;
                }
            }
        }
        if ill.is_some() {
            report.stopped = ill;
            break;
        }
        for (i, inp) in inputs.iter().enumerate() {
            xs[i] = layer(student, l, &xs[i], inp)?.0;
        }
    }
    Ok(report)
}

/// The two sub-layers of an encoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    Attention,
    Ffn,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::Attention => "attention",
            Sub::Ffn => "ffn",
        }
    }
}

/// What fitting a sub-layer gave.
enum Fitted {
    /// Fitted and folded (`None`: the sub-layer has no units).
    Done(Option<SublayerFit>),
    /// Ill-posed: tuning stops.
    Ill(String),
}

/// One layer of the student being tuned, with the teacher's targets.
struct SubLayer<'a, B: Backend> {
    host: &'a Host<'a, B>,
    l: usize,
    inputs: &'a [LayerInputs<B::Tensor>],
    /// The student's hidden states entering the layer.
    x: &'a [B::Tensor],
    /// Per batch, the teacher's attention and FFN sums (less biases), `[N, C]`.
    targets: &'a [(Tensor<f32>, Tensor<f32>)],
    /// Whether this is the last layer (see [`LayerInputs::rows`]).
    last: bool,
    cfg: &'a TuneConfig,
}

impl<B: Backend> SubLayer<'_, B> {
    /// Fits `sub` of the student's layer and folds its scales into the output projection.
    fn fit(&self, student: &mut BertModel<B>, sub: Sub) -> Result<Fitted> {
        let (host, l) = (self.host, self.l);
        let d = student.config.head_dim();
        let (units, group) = match sub {
            Sub::Attention => (student.config.heads(l), d),
            Sub::Ffn => (student.config.intermediate(l), 1),
        };
        if units == 0 {
            return Ok(Fitted::Done(None));
        }
        let weight = {
            let p = &student.params.layers[l];
            match sub {
                Sub::Attention => &p.attention_output.weight,
                Sub::Ffn => &p.output.weight,
            }
        };
        let w = host.b.download(weight)?;
        let normal = match sub {
            Sub::Attention => self.attention(student, &w, units, d)?,
            Sub::Ffn => self.ffn(student, &w, units)?,
        };
        let scales = match normal.solve(self.cfg) {
            Ok(s) => s,
            Err(why) => return Ok(Fitted::Ill(why)),
        };
        let fit = SublayerFit {
            layer: l,
            sublayer: sub.name(),
            units,
            error_before: normal.error(&Array1::ones(units)),
            error_after: normal.error(&scales),
            scale_range: [
                scales.iter().copied().fold(f64::INFINITY, f64::min),
                scales.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ],
        };
        let folded = host.b.upload(&scale_columns(&w, &scales, group)?)?;
        let p = &mut student.params.layers[l];
        match sub {
            Sub::Attention => p.attention_output.weight = folded,
            Sub::Ffn => p.output.weight = folded,
        }
        Ok(Fitted::Done(Some(fit)))
    }

    /// Normal equations of the heads: `A_h = context_h · W_hᵀ` per head.
    fn attention(
        &self,
        student: &BertModel<B>,
        w: &Tensor<f32>,
        heads: usize,
        d: usize,
    ) -> Result<Normal> {
        let host = self.host;
        let blocks: Vec<Tensor<f32>> = (0..heads)
            .map(|h| columns(&host.cpu, w, h * d, (h + 1) * d))
            .collect::<Result<_>>()?;
        let mut n = Normal::new(heads);
        for (i, inp) in self.inputs.iter().enumerate() {
            let rows = inp.rows(self.last);
            let (_, cache) = layer(student, self.l, &self.x[i], inp)?;
            let ctx = host.rows(cache.context(), rows)?;
            let target = host.sub(&self.targets[i].0, &host.rows(&self.x[i], rows)?)?;
            let a: Vec<Tensor<f32>> = blocks
                .iter()
                .enumerate()
                .map(|(h, wh)| {
                    host.mm(
                        &columns(&host.cpu, &ctx, h * d, (h + 1) * d)?,
                        wh,
                        Transpose::NT,
                    )
                })
                .collect::<Result<_>>()?;
            for h in 0..heads {
                for k in h..heads {
                    let v = frob(&a[h], &a[k]);
                    n.gram[[h, k]] += v;
                    if k != h {
                        n.gram[[k, h]] += v;
                    }
                }
                n.rhs[h] += frob(&a[h], &target);
            }
            n.target += frob(&target, &target);
        }
        Ok(n)
    }

    /// Normal equations of the neurons: `AᵀA = (WᵀW) ∘ (GᵀG)`, `Aᵀb_j = Σₜ g_tj·(b_t·w_j)`.
    fn ffn(&self, student: &BertModel<B>, w: &Tensor<f32>, neurons: usize) -> Result<Normal> {
        let host = self.host;
        let mut n = Normal::new(neurons);
        for (i, inp) in self.inputs.iter().enumerate() {
            let rows = inp.rows(self.last);
            let (_, cache) = layer(student, self.l, &self.x[i], inp)?;
            let g = host.rows(cache.ffn_activation(), rows)?;
            let target = host.sub(&self.targets[i].1, &host.rows(cache.ffn_input(), rows)?)?;
            let gg = host.mm(&g, &g, Transpose::TN)?;
            n.gram
                .iter_mut()
                .zip(gg.data())
                .for_each(|(a, v)| *a += f64::from(*v));
            let m = host.mm(&target, w, Transpose::NN)?;
            for (gr, mr) in g.data().chunks(neurons).zip(m.data().chunks(neurons)) {
                for (j, (a, b)) in gr.iter().zip(mr).enumerate() {
                    n.rhs[j] += f64::from(*a) * f64::from(*b);
                }
            }
            n.target += frob(&target, &target);
        }
        let ww = host.mm(w, w, Transpose::TN)?;
        n.gram
            .iter_mut()
            .zip(ww.data())
            .for_each(|(a, v)| *a *= f64::from(*v));
        Ok(n)
    }
}
