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
//! so that the scales stay near 1 where the data says little. A scale outside `±max_scale`
//! raises the damping tenfold and solves again; a solve that fails, or scales still out of
//! range at the largest damping, is ill-posed: tuning stops there and keeps what it did.
//!
//! With `bias` (bias correction, beyond the paper) the output projection's bias is fitted
//! too, free of damping: the pruned units' mean contribution is a constant offset that no
//! scale of the kept units can give back (a GELU output's mean is not zero), and the
//! LayerNorm that follows removes each token's mean over channels, not a channel's mean
//! over tokens. The bias is eliminated first (`δ = mean(target) − mean(A)·s`), which
//! centres the normal equations; the scales are solved on those, then `δ` is added.

mod norm;
mod normal;

use crate::error::{PostTrainError, Result};
use crate::fisher::column_groups;
use crate::layers::{LayerInputs, embed, layer};
use ndarray::{Array1, Array2};
use norm::NormView;
use normal::Normal;
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
    /// Also fit the output projection's bias (bias correction).
    pub bias: bool,
    /// Fit each sum as the LayerNorm after it sees it (see `norm.rs`; not with `bias`).
    pub norm: bool,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            damping: 1e-3,
            max_scale: 10.0,
            bias: false,
            norm: false,
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
    /// Euclidean norm of the change to the output projection's bias (0 without `bias`).
    pub bias_shift: f64,
    /// The damping the fit needed to keep its scales within range (at least the
    /// configured one).
    pub damping: f64,
}

/// What mask tuning did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TuneReport {
    /// Every sub-layer fitted, in order.
    pub fits: Vec<SublayerFit>,
    /// Why tuning stopped early, if it did.
    pub stopped: Option<String>,
}

/// `Σ a⊙b` in f64.
fn frob(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// The column sums of a host matrix `[R, C]`, in f64.
fn column_sums(t: &Tensor<f32>) -> Array1<f64> {
    let c = t.dims().last().copied().unwrap_or(0);
    let mut sums = Array1::zeros(c);
    for row in t.data().chunks(c.max(1)) {
        sums.iter_mut()
            .zip(row)
            .for_each(|(a, v)| *a += f64::from(*v));
    }
    sums
}

/// A host vector as f64.
fn to_f64(t: &Tensor<f32>) -> Array1<f64> {
    t.data().iter().map(|v| f64::from(*v)).collect()
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
    if cfg.bias && cfg.norm {
        return Err(PostTrainError::Input(
            "bias correction and norm-aware fitting cannot be combined".into(),
        ));
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
        let biases = [
            to_f64(&b.download(&tl.attention_output.bias)?),
            to_f64(&b.download(&tl.output.bias)?),
        ];
        let mut targets: Vec<(Tensor<f32>, Tensor<f32>)> = Vec::with_capacity(batches.len());
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
        let view = |sub: Sub, gamma: &B::Tensor| -> Result<NormView> {
            let sums: Vec<&Tensor<f32>> = targets
                .iter()
                .map(|(attention, ffn)| match sub {
                    Sub::Attention => attention,
                    Sub::Ffn => ffn,
                })
                .collect();
            let gamma = b.download(gamma)?;
            let bias = &biases[sub as usize];
            Ok(NormView::new(&gamma, &sums, bias, tc.layer_norm_eps))
        };
        let norms = match cfg.norm {
            true => Some([
                view(Sub::Attention, &tl.attention_norm.weight)?,
                view(Sub::Ffn, &tl.output_norm.weight)?,
            ]),
            false => None,
        };
        let sl = SubLayer {
            host: &host,
            norms: norms.as_ref(),
            l,
            inputs: &inputs,
            x: &xs,
            targets: &targets,
            biases: &biases,
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
    /// The teacher's attention and FFN output biases.
    biases: &'a [Array1<f64>; 2],
    /// With norm-aware fitting, the LayerNorms after the attention and the FFN.
    norms: Option<&'a [NormView; 2]>,
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
        let projection = {
            let p = &student.params.layers[l];
            match sub {
                Sub::Attention => &p.attention_output,
                Sub::Ffn => &p.output,
            }
        };
        let w = host.b.download(&projection.weight)?;
        let bias = to_f64(&host.b.download(&projection.bias)?);
        // The targets leave the biases out: add the teacher's less the student's.
        let shift = &self.biases[sub as usize] - &bias;
        let view = self.norms.map(|n| (&n[sub as usize], &shift));
        let mut normal = match sub {
            Sub::Attention => self.attention(student, &w, units, d, view)?,
            Sub::Ffn => self.ffn(student, &w, units, view)?,
        };
        if view.is_none() {
            normal.shift_target(&shift);
        }
        let centred;
        let problem = if self.cfg.bias {
            centred = normal.centred();
            &centred
        } else {
            &normal
        };
        let (scales, damping) = match problem.solve(self.cfg) {
            Ok(fit) => fit,
            Err(why) => return Ok(Fitted::Ill(why)),
        };
        let shift = if self.cfg.bias {
            normal.bias(&scales)
        } else {
            Array1::zeros(bias.len())
        };
        let fit = SublayerFit {
            layer: l,
            sublayer: sub.name(),
            units,
            error_before: normal.error(&Array1::ones(units)),
            error_after: problem.error(&scales),
            scale_range: [
                scales.iter().copied().fold(f64::INFINITY, f64::min),
                scales.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ],
            bias_shift: shift.dot(&shift).sqrt(),
            damping,
        };
        let folded = host.b.upload(&scale_columns(&w, &scales, group)?)?;
        let shifted = (bias.iter().zip(&shift))
            .map(|(b, d)| (b + d) as f32)
            .collect();
        let shifted = host.b.upload(&Tensor::new([bias.len()], shifted)?)?;
        let p = &mut student.params.layers[l];
        let projection = match sub {
            Sub::Attention => &mut p.attention_output,
            Sub::Ffn => &mut p.output,
        };
        projection.weight = folded;
        projection.bias = shifted;
        Ok(Fitted::Done(Some(fit)))
    }

    /// Normal equations of the heads: `A_h = context_h · W_hᵀ` per head (seen through the
    /// LayerNorm, the target shifted first, with `view`).
    fn attention(
        &self,
        student: &BertModel<B>,
        w: &Tensor<f32>,
        heads: usize,
        d: usize,
        view: Option<(&NormView, &Array1<f64>)>,
    ) -> Result<Normal> {
        let host = self.host;
        let blocks: Vec<Tensor<f32>> = (0..heads)
            .map(|h| columns(&host.cpu, w, h * d, (h + 1) * d))
            .collect::<Result<_>>()?;
        let mut n = Normal::new(heads, w.dims()[0]);
        for (i, inp) in self.inputs.iter().enumerate() {
            let rows = inp.rows(self.last);
            let (_, cache) = layer(student, self.l, &self.x[i], inp)?;
            let ctx = host.rows(cache.context(), rows)?;
            let mut target = host.sub(&self.targets[i].0, &host.rows(&self.x[i], rows)?)?;
            if let Some((norm, shift)) = view {
                target = norm.rows(i, &target, Some(shift))?;
            }
            let a: Vec<Tensor<f32>> = blocks
                .iter()
                .enumerate()
                .map(|(h, wh)| {
                    let a = host.mm(
                        &columns(&host.cpu, &ctx, h * d, (h + 1) * d)?,
                        wh,
                        Transpose::NT,
                    )?;
                    match view {
                        Some((norm, _)) => norm.rows(i, &a, None),
                        None => Ok(a),
                    }
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
                let mut sums = n.unit_sums.row_mut(h);
                sums += &column_sums(&a[h]);
            }
            n.target += frob(&target, &target);
            n.target_sum += &column_sums(&target);
            n.rows += rows.len() as f64;
        }
        Ok(n)
    }

    /// Normal equations of the neurons: `AᵀA = (WᵀW) ∘ (GᵀG)`, `Aᵀb_j = Σₜ g_tj·(b_t·w_j)`
    /// (seen through the LayerNorm, the target shifted first, with `view`).
    fn ffn(
        &self,
        student: &BertModel<B>,
        w: &Tensor<f32>,
        neurons: usize,
        view: Option<(&NormView, &Array1<f64>)>,
    ) -> Result<Normal> {
        let host = self.host;
        let seen = match view {
            Some((norm, _)) => norm.weight(w)?,
            None => w.clone(),
        };
        let mut n = Normal::new(neurons, w.dims()[0]);
        let mut activation_sums = Array1::<f64>::zeros(neurons);
        for (i, inp) in self.inputs.iter().enumerate() {
            let rows = inp.rows(self.last);
            let (_, cache) = layer(student, self.l, &self.x[i], inp)?;
            let mut g = host.rows(cache.ffn_activation(), rows)?;
            let mut target = host.sub(&self.targets[i].1, &host.rows(cache.ffn_input(), rows)?)?;
            if let Some((norm, shift)) = view {
                g = norm.scale_rows(i, &g)?;
                target = norm.rows(i, &target, Some(shift))?;
            }
            let gg = host.mm(&g, &g, Transpose::TN)?;
            n.gram
                .iter_mut()
                .zip(gg.data())
                .for_each(|(a, v)| *a += f64::from(*v));
            let m = host.mm(&target, &seen, Transpose::NN)?;
            for (gr, mr) in g.data().chunks(neurons).zip(m.data().chunks(neurons)) {
                for (j, (a, b)) in gr.iter().zip(mr).enumerate() {
                    n.rhs[j] += f64::from(*a) * f64::from(*b);
                }
            }
            n.target += frob(&target, &target);
            n.target_sum += &column_sums(&target);
            activation_sums += &column_sums(&g);
            n.rows += rows.len() as f64;
        }
        // Neuron j adds g_tj·w_j to row t, so its sum is (Σₜ g_tj)·w_j.
        let wt = Array2::from_shape_fn((neurons, w.dims()[0]), |(j, c)| {
            f64::from(w.data()[c * neurons + j])
        });
        n.unit_sums = &wt * &activation_sums.insert_axis(ndarray::Axis(1));
        let ww = host.mm(&seen, &seen, Transpose::TN)?;
        n.gram
            .iter_mut()
            .zip(ww.data())
            .for_each(|(a, v)| *a *= f64::from(*v));
        Ok(n)
    }
}
