//! The tracer checks shapes as the CPU backend does: every op of the backend traits, run on
//! both with the same input shapes, gives the same output shapes, and both refuse the same
//! mismatched inputs. Without this, a trace could describe a graph the model never runs.

use prune_graph::TraceBackend;
use prune_tensor::{AdamW, Backend, CpuBackend, LayerNormStats, Shape, Tensor, Transpose};

/// The sizes of one run: batch, length, heads, head dim, FFN width, vocabulary, classes;
/// `vector` is the length given to biases, LayerNorm parameters and channel masks (the
/// width C when consistent), `inner` the inner dimension of the weight (C when consistent).
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch: usize,
    seq: usize,
    heads: usize,
    dim: usize,
    ffn: usize,
    vocab: usize,
    classes: usize,
    vector: usize,
    inner: usize,
}

/// Each op's name and its outputs' shapes, or `None` when it refused its inputs.
type Outcomes = Vec<(&'static str, Option<Vec<Vec<usize>>>)>;

fn run_every_op<B: Backend>(b: &B, s: Sizes) -> Outcomes {
    let c = s.heads * s.dim;
    let n = s.batch * s.seq;
    let up = |dims: &[usize]| b.upload(&Tensor::full(dims.to_vec(), 0.5)).unwrap();
    let dims = |t: &B::Tensor| b.shape(t).dims().to_vec();
    let (x, w, w2) = (up(&[n, c]), up(&[s.ffn, s.inner]), up(&[s.inner, s.ffn]));
    let (h, vector, bias_f) = (up(&[n, s.ffn]), up(&[s.vector]), up(&[s.ffn]));
    // A channel mask holds 0 or 1 (the CPU checks the values; the tracer cannot).
    let keep = b.upload(&Tensor::full(vec![s.vector], 1.0)).unwrap();
    let scores = up(&[s.batch, s.heads, s.seq, s.seq]);
    let mask = up(&[s.batch, s.seq]);
    let head_mask = up(&[s.batch * s.heads]);
    let ids: Vec<usize> = (0..n).map(|i| i % s.vocab).collect();
    let labels: Vec<i64> = (0..s.batch as i64).map(|i| i % s.classes as i64).collect();
    let logits = up(&[s.batch, s.classes]);
    let one = |r: prune_tensor::Result<B::Tensor>| r.ok().map(|t| vec![dims(&t)]);
    let two = |r: prune_tensor::Result<(B::Tensor, B::Tensor)>| {
        r.ok().map(|(p, q)| vec![dims(&p), dims(&q)])
    };
    let three = |r: prune_tensor::Result<(B::Tensor, B::Tensor, B::Tensor)>| {
        r.ok().map(|(p, q, t)| vec![dims(&p), dims(&q), dims(&t)])
    };
    let norm = |r: prune_tensor::Result<(B::Tensor, LayerNormStats<B::Tensor>)>| {
        r.ok()
            .map(|(y, st)| vec![dims(&y), dims(&st.mean), dims(&st.rstd)])
    };
    let stats = b.layer_norm_fwd(&x, &up(&[c]), &up(&[c]), 1e-12).unwrap().1;
    let probs = b.cross_entropy_fwd(&logits, &labels, -100).unwrap().1;
    let mut out: Outcomes = vec![
        ("matmul NT", one(b.matmul_fwd(&x, &w, Transpose::NT))),
        ("matmul NN", one(b.matmul_fwd(&x, &w2, Transpose::NN))),
        ("matmul TN", one(b.matmul_fwd(&x, &h, Transpose::TN))),
        ("matmul bwd", two(b.matmul_bwd(&x, &w, Transpose::NT, &h))),
        ("linear", one(b.linear_fwd(&x, &w, &bias_f))),
        ("head scores", one(b.head_scores(&x, &x, s.batch, s.dim))),
        (
            "head context",
            one(b.head_context(&scores, &x, s.batch, s.dim, false)),
        ),
        ("add", one(b.add_fwd(&x, &x))),
        ("mul", one(b.mul_fwd(&x, &x))),
        ("mul bwd", two(b.mul_bwd(&x, &x, &x))),
        ("scale", one(b.scale_fwd(&x, 2.0))),
        ("add bias", one(b.add_bias_fwd(&x, &vector))),
        ("add bias bwd", one(b.add_bias_bwd(&x))),
        (
            "scale rows",
            one(b.scale_rows_fwd(&scores, &head_mask, s.seq)),
        ),
        (
            "scale rows bwd",
            two(b.scale_rows_bwd(&scores, &head_mask, s.seq, &scores)),
        ),
        ("sum bwd", one(b.sum_bwd(&Shape::from([n, c]), 1.0))),
        ("dropout", two(b.dropout_fwd(&x, 0.1, 3))),
        ("dropout add", two(b.dropout_add_fwd(&x, &x, 0.1, 3))),
        ("gelu", one(b.gelu_fwd(&h))),
        ("gelu bwd", one(b.gelu_bwd(&h, &h))),
        ("tanh", one(b.tanh_fwd(&x))),
        ("tanh bwd", one(b.tanh_bwd(&x, &x))),
        ("softmax", one(b.softmax_fwd(&scores, 0.5, Some(&mask)))),
        ("softmax bwd", one(b.softmax_bwd(&scores, &scores, 0.5))),
        (
            "layer norm",
            norm(b.layer_norm_fwd(&x, &vector, &vector, 1e-12)),
        ),
        (
            "layer norm bwd",
            three(b.layer_norm_bwd(&x, &vector, &stats, &x)),
        ),
        (
            "masked layer norm",
            norm(b.masked_layer_norm_fwd(&x, &vector, &vector, &keep, 1e-12)),
        ),
        (
            "masked layer norm bwd",
            three(b.masked_layer_norm_bwd(&x, &vector, &keep, &stats, &x)),
        ),
        (
            "add layer norm",
            one(b.add_layer_norm_fwd(&x, &x, &vector, &vector, None, 1e-12)),
        ),
        ("gather", one(b.gather_rows_fwd(&up(&[s.vocab, c]), &ids))),
        ("gather bwd", one(b.gather_rows_bwd(&x, &ids, s.vocab))),
        (
            "permute",
            one(b.permute(&up(&[s.batch, s.seq, s.heads, s.dim]), &[0, 2, 1, 3])),
        ),
        (
            "cross entropy",
            one(b.cross_entropy_fwd(&logits, &labels, -100).map(|r| r.1)),
        ),
        (
            "cross entropy bwd",
            one(b.cross_entropy_bwd(&probs, &labels, -100, 1.0)),
        ),
        ("mse bwd", one(b.mse_bwd(&logits, &logits, 1.0))),
        ("kl div bwd", one(b.kl_div_bwd(&logits, &logits, 2.0, 1.0))),
    ];
    let attention = b.attention(&x, &x, &x, &mask, 0.5, s.batch, s.dim, true);
    out.push((
        "attention",
        attention.ok().map(|(ctx, p)| {
            let mut shapes = vec![dims(&ctx)];
            shapes.extend(p.as_ref().map(dims));
            shapes
        }),
    ));
    let mut h_bias = h.clone();
    out.push(("bias gelu", one(b.bias_gelu_fwd(&mut h_bias, &bias_f))));
    let (mut p, mut m, mut v) = (w.clone(), w.clone(), w.clone());
    let hp = AdamW {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
    };
    let step = b.adamw_step(&mut p, &w, &mut m, &mut v, &hp, None);
    out.push(("adamw", step.ok().map(|()| vec![dims(&p)])));
    out
}

#[test]
fn tracer_and_cpu_agree_on_every_op() {
    let ok = Sizes {
        batch: 2,
        seq: 3,
        heads: 2,
        dim: 4,
        ffn: 5,
        vocab: 7,
        classes: 3,
        vector: 8,
        inner: 8,
    };
    let cases = [
        ok,
        Sizes {
            batch: 1,
            seq: 5,
            heads: 3,
            dim: 2,
            ffn: 6,
            vocab: 4,
            classes: 2,
            vector: 6,
            inner: 6,
        },
        Sizes { vector: 9, ..ok },
        Sizes { inner: 7, ..ok },
    ];
    for s in cases {
        let cpu = run_every_op(&CpuBackend::<f32>::new(), s);
        let traced = run_every_op(&TraceBackend::new(), s);
        assert_eq!(cpu.len(), traced.len());
        for ((name, a), (_, t)) in cpu.iter().zip(&traced) {
            assert_eq!(a, t, "{name} at {s:?} (CPU, then tracer)");
        }
        let refused: Vec<&str> = cpu
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(n, _)| *n)
            .collect();
        let consistent = s.vector == s.heads * s.dim && s.inner == s.heads * s.dim;
        assert_eq!(refused.is_empty(), consistent, "{s:?}: refused {refused:?}");
    }
}
