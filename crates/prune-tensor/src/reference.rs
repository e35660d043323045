//! Slow, obviously-correct scalar versions of every op, in f64, written straight from the
//! definitions with index arithmetic. Tests compare the fast backends against these.

use crate::rng::uniform_at;
use crate::{AdamW, Shape, Tensor, Transpose};

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// `op(a) · op(b)`, batched over `a`'s leading dims; `b` 2-D (shared) or batched alike.
pub fn matmul(a: &Tensor<f64>, b: &Tensor<f64>, t: Transpose) -> Tensor<f64> {
    let (ad, bd) = (a.dims(), b.dims());
    let (ar, ac) = (ad[ad.len() - 2], ad[ad.len() - 1]);
    let (br, bc) = (bd[bd.len() - 2], bd[bd.len() - 1]);
    let (m, k) = if t.a() { (ac, ar) } else { (ar, ac) };
    let n = if t.b() { br } else { bc };
    let batch: usize = ad[..ad.len() - 2].iter().product();
    let shared = bd.len() == 2;
    let at = |bi: usize, i: usize, p: usize| {
        let off = bi * ar * ac;
        if t.a() {
            a.data()[off + p * ac + i]
        } else {
            a.data()[off + i * ac + p]
        }
    };
    let bt = |bi: usize, p: usize, j: usize| {
        let off = if shared { 0 } else { bi * br * bc };
        if t.b() {
            b.data()[off + j * bc + p]
        } else {
            b.data()[off + p * bc + j]
        }
    };
    let mut out = Vec::with_capacity(batch * m * n);
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                out.push((0..k).map(|p| at(bi, i, p) * bt(bi, p, j)).sum());
            }
        }
    }
    let mut dims = ad[..ad.len() - 2].to_vec();
    dims.extend([m, n]);
    Tensor::new(dims, out).unwrap()
}

/// `f(a_i, b_i)` elementwise.
pub fn zip(a: &Tensor<f64>, b: &Tensor<f64>, f: impl Fn(f64, f64) -> f64) -> Tensor<f64> {
    Tensor::from_fn(a.shape().clone(), |i| f(a.data()[i], b.data()[i]))
}

/// `f(x_i)` elementwise.
pub fn map(x: &Tensor<f64>, f: impl Fn(f64) -> f64) -> Tensor<f64> {
    Tensor::from_fn(x.shape().clone(), |i| f(x.data()[i]))
}

/// `x + bias` with `bias` `[C]` broadcast over rows.
pub fn add_bias(x: &Tensor<f64>, bias: &Tensor<f64>) -> Tensor<f64> {
    let c = bias.data().len();
    Tensor::from_fn(x.shape().clone(), |i| x.data()[i] + bias.data()[i % c])
}

/// Column sums of `x` viewed `[N, C]`.
pub fn sum_rows(x: &Tensor<f64>) -> Tensor<f64> {
    let c = x.shape().last();
    let mut out = vec![0.0; c];
    for (i, v) in x.data().iter().enumerate() {
        out[i % c] += v;
    }
    Tensor::new([c], out).unwrap()
}

/// `x` with row `r` (of `[N, C]`) scaled by `s[r / rows_per_group]`.
pub fn scale_rows(x: &Tensor<f64>, s: &Tensor<f64>, rows_per_group: usize) -> Tensor<f64> {
    let c = x.shape().last();
    Tensor::from_fn(x.shape().clone(), |i| {
        x.data()[i] * s.data()[i / c / rows_per_group]
    })
}

/// GELU, erf form.
pub fn gelu(x: &Tensor<f64>) -> Tensor<f64> {
    map(x, |v| 0.5 * v * (1.0 + libm::erf(v / 2f64.sqrt())))
}

/// `softmax(scale · x + mask)` over the last axis, `mask` `[B, Tk]`.
pub fn softmax(x: &Tensor<f64>, scale: f64, mask: Option<&Tensor<f64>>) -> Tensor<f64> {
    let tk = x.shape().last();
    let rows = x.shape().rows();
    let per_batch = rows / x.dims()[0];
    let mut out = vec![0.0; x.shape().numel()];
    for r in 0..rows {
        let z: Vec<f64> = (0..tk)
            .map(|j| {
                scale * x.data()[r * tk + j]
                    + mask.map_or(0.0, |m| m.data()[(r / per_batch) * tk + j])
            })
            .collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        for j in 0..tk {
            out[r * tk + j] = (z[j] - max).exp() / sum;
        }
    }
    Tensor::new(x.shape().clone(), out).unwrap()
}

/// LayerNorm over the last axis with biased variance.
pub fn layer_norm(
    x: &Tensor<f64>,
    gamma: &Tensor<f64>,
    beta: &Tensor<f64>,
    eps: f64,
) -> Tensor<f64> {
    let c = x.shape().last();
    let mut out = vec![0.0; x.shape().numel()];
    for r in 0..x.shape().rows() {
        let row = &x.data()[r * c..(r + 1) * c];
        let mean = row.iter().sum::<f64>() / c as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
        for j in 0..c {
            out[r * c + j] =
                (row[j] - mean) / (var + eps).sqrt() * gamma.data()[j] + beta.data()[j];
        }
    }
    Tensor::new(x.shape().clone(), out).unwrap()
}

/// `table[ids[i]]` for each id.
pub fn gather_rows(table: &Tensor<f64>, ids: &[usize]) -> Tensor<f64> {
    let c = table.dims()[1];
    Tensor::from_fn([ids.len(), c], |i| table.data()[ids[i / c] * c + i % c])
}

/// Axis permutation: output dim `i` is input dim `perm[i]`.
pub fn permute(x: &Tensor<f64>, perm: &[usize]) -> Tensor<f64> {
    let in_strides = strides(x.dims());
    let out_dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let out_strides = strides(&out_dims);
    Tensor::from_fn(Shape::new(out_dims.clone()), |flat| {
        let offset: usize = (0..perm.len())
            .map(|i| (flat / out_strides[i]) % out_dims[i] * in_strides[perm[i]])
            .sum();
        x.data()[offset]
    })
}

/// Inverted dropout with the same `(seed, index)` draw as the backends.
pub fn dropout(x: &Tensor<f64>, p: f64, seed: u64) -> Tensor<f64> {
    Tensor::from_fn(x.shape().clone(), |i| {
        if uniform_at(seed, i as u64) < p {
            0.0
        } else {
            x.data()[i] / (1.0 - p)
        }
    })
}

/// Mean cross-entropy over the rows whose label is not `ignore`.
pub fn cross_entropy(logits: &Tensor<f64>, labels: &[i64], ignore: i64) -> f64 {
    let k = logits.dims()[1];
    let mut total = 0.0;
    let mut n = 0;
    for (r, &l) in labels.iter().enumerate() {
        if l == ignore {
            continue;
        }
        let row = &logits.data()[r * k..(r + 1) * k];
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        total += lse - row[l as usize];
        n += 1;
    }
    if n == 0 { 0.0 } else { total / n as f64 }
}

/// `mean((p − t)²)`.
pub fn mse(p: &Tensor<f64>, t: &Tensor<f64>) -> f64 {
    p.data()
        .iter()
        .zip(t.data())
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / p.data().len() as f64
}

/// `T² · Σ_rows KL(softmax(t/T) ‖ softmax(s/T)) / N`.
pub fn kl_div(s: &Tensor<f64>, t: &Tensor<f64>, temperature: f64) -> f64 {
    let (n, k) = (s.dims()[0], s.dims()[1]);
    let ps = softmax(
        &map(s, |v| v / temperature).reshape([n, 1, k]).unwrap(),
        1.0,
        None,
    );
    let pt = softmax(
        &map(t, |v| v / temperature).reshape([n, 1, k]).unwrap(),
        1.0,
        None,
    );
    let kl: f64 = pt
        .data()
        .iter()
        .zip(ps.data())
        .map(|(q, p)| q * (q.ln() - p.ln()))
        .sum();
    temperature * temperature * kl / n as f64
}

/// One AdamW step as PyTorch's `torch.optim.AdamW` computes it, on the gradient `g ⊙ mask`.
pub fn adamw(
    p: &mut Tensor<f64>,
    g: &Tensor<f64>,
    m: &mut Tensor<f64>,
    v: &mut Tensor<f64>,
    hp: &AdamW,
    mask: Option<&Tensor<f64>>,
) {
    let t = hp.step as i32;
    for i in 0..p.data().len() {
        let gi = g.data()[i] * mask.map_or(1.0, |mk| mk.data()[i]);
        let pi = p.data()[i] * (1.0 - hp.lr * hp.weight_decay);
        let mi = hp.beta1 * m.data()[i] + (1.0 - hp.beta1) * gi;
        let vi = hp.beta2 * v.data()[i] + (1.0 - hp.beta2) * gi * gi;
        let m_hat = mi / (1.0 - hp.beta1.powi(t));
        let v_hat = vi / (1.0 - hp.beta2.powi(t));
        let new = pi - hp.lr * m_hat / (v_hat.sqrt() + hp.eps);
        p.data_mut()[i] = new;
        m.data_mut()[i] = mi;
        v.data_mut()[i] = vi;
    }
}

/// LayerNorm of the kept channels only (`keep` 0/1), computed by cutting the dropped
/// channels out, normalising what is left, and scattering back with zeros.
pub fn masked_layer_norm(
    x: &Tensor<f64>,
    gamma: &Tensor<f64>,
    beta: &Tensor<f64>,
    keep: &Tensor<f64>,
    eps: f64,
) -> Tensor<f64> {
    let c = x.shape().last();
    let kept: Vec<usize> = (0..c).filter(|&i| keep.data()[i] == 1.0).collect();
    let rows = x.shape().rows();
    let pick = |t: &Tensor<f64>, n: usize| {
        Tensor::from_fn([n, kept.len()], |i| {
            t.data()[(i / kept.len()) * c + kept[i % kept.len()]]
        })
    };
    let small = layer_norm(
        &pick(x, rows),
        &pick(gamma, 1).reshape([kept.len()]).unwrap(),
        &pick(beta, 1).reshape([kept.len()]).unwrap(),
        eps,
    );
    let mut out = Tensor::zeros(x.shape().clone());
    for r in 0..rows {
        for (j, &i) in kept.iter().enumerate() {
            out.data_mut()[r * c + i] = small.data()[r * kept.len() + j];
        }
    }
    out
}
