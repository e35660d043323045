//! Attention's per-head products (`AttentionOps`) of a backend against the scalar reference
//! on explicitly split heads: scores `X_bh · Y_bhᵀ` and contexts `op(P_bh) · Y_bh`, for several
//! heads, a single one and none; the fused attention against its parts. Runs on the CPU backend always and on the CUDA backend with
//! the feature `cuda`.

use prune_tensor::rng::Rng;
use prune_tensor::{AttentionSpec, Backend, Shape, Tensor, Transpose, reference as r};

/// Random f32-representable inputs as f64 tensors.
fn rand(shape: impl Into<Shape>, rng: &mut Rng) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.range(-2.0, 2.0) as f32 as f64)
}

/// `[B·T, H·D]` → `[B, H, T, D]`, by index.
fn split(x: &Tensor<f64>, b: usize, t: usize, h: usize, d: usize) -> Tensor<f64> {
    Tensor::from_fn([b, h, t, d], |i| {
        let (bi, hi, ti, di) = (i / (h * t * d), i / (t * d) % h, i / d % t, i % d);
        x.data()[(bi * t + ti) * h * d + hi * d + di]
    })
}

/// Asserts `got` matches `want` to 1e-5 relative to the reference's largest magnitude.
fn close(what: &str, got: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let err = got.max_abs_diff(want) / want.max_abs().max(1.0);
    assert!(err <= 1e-5, "{what}: relative error {err:e}");
}

fn heads<B: Backend>(backend: &B) {
    let mut rng = Rng::new(21);
    let (b, t, d) = (2, 5, 4);
    for h in [3, 1, 0] {
        let (x, y) = (
            rand([b * t, h * d], &mut rng),
            rand([b * t, h * d], &mut rng),
        );
        let up = |v: &Tensor<f64>| backend.upload(&v.cast()).unwrap();
        let down = |v: &B::Tensor| backend.download(v).unwrap().cast::<f64>();
        let (xs, ys) = (split(&x, b, t, h, d), split(&y, b, t, h, d));
        let scores = backend.head_scores(&up(&x), &up(&y), b, d).unwrap();
        close(
            &format!("head_scores H={h}"),
            &down(&scores),
            &r::matmul(&xs, &ys, Transpose::NT),
        );
        let p = rand([b, h, t, t], &mut rng);
        for (transpose, tr) in [(false, Transpose::NN), (true, Transpose::TN)] {
            let got = backend
                .head_context(&up(&p), &up(&y), b, d, transpose)
                .unwrap();
            let want = r::permute(&r::matmul(&p, &ys, tr), &[0, 2, 1, 3]);
            let want = want.reshape([b * t, h * d]).unwrap();
            close(&format!("head_context H={h} {tr:?}"), &down(&got), &want);
        }
    }
    // The fused attention computes what its parts compute, with or without keeping the
    // probabilities, for several heads and none.
    for h in [3, 0] {
        let [q, k, v] = [0; 3].map(|_| rand([b * t, h * d], &mut rng));
        let mask = Tensor::from_fn([b, t], |i| if i % t == t - 1 { -1e4 } else { 0.0 });
        let up = |v: &Tensor<f64>| backend.upload(&v.cast()).unwrap();
        let down = |v: &B::Tensor| backend.download(v).unwrap().cast::<f64>();
        let (uq, uk, uv, um) = (up(&q), up(&k), up(&v), up(&mask));
        let scores = backend.head_scores(&uq, &uk, b, d).unwrap();
        let probs = backend.softmax_fwd(&scores, 0.5, Some(&um)).unwrap();
        let context = backend.head_context(&probs, &uv, b, d, false).unwrap();
        for keep in [false, true] {
            let (c, p) = backend
                .attention(&uq, &uk, &uv, &um, 0.5, b, d, keep)
                .unwrap();
            close(&format!("attention H={h}"), &down(&c), &down(&context));
            assert_eq!(p.is_some(), keep, "probabilities kept when asked");
            if let Some(p) = p {
                close(&format!("attention probs H={h}"), &down(&p), &down(&probs));
            }
        }
    }
    // The fused training attention and its backward compute what their parts compute,
    // with and without dropout, for several heads and none.
    for (h, dropout) in [(3, 0.0), (3, 0.25), (0, 0.25)] {
        let [q, k, v, dc] = [0; 4].map(|_| rand([b * t, h * d], &mut rng));
        let mask = Tensor::from_fn([b, t], |i| if i % t == t - 1 { -1e4 } else { 0.0 });
        let up = |v: &Tensor<f64>| backend.upload(&v.cast()).unwrap();
        let down = |v: &B::Tensor| backend.download(v).unwrap().cast::<f64>();
        let [q, k, v, dc, mask] = [q, k, v, dc, mask].map(|x| up(&x));
        let spec = AttentionSpec {
            batch: b,
            head_dim: d,
            scale: 0.5,
            dropout,
            seed: 3,
        };
        let probs = backend.head_scores(&q, &k, b, d).unwrap();
        let probs = backend.softmax_fwd(&probs, 0.5, Some(&mask)).unwrap();
        let (dropped, keep) = backend.dropout_fwd(&probs, dropout, 3).unwrap();
        let context = backend.head_context(&dropped, &v, b, d, false).unwrap();
        let (c, saved) = backend.attention_train(&q, &k, &v, &mask, &spec).unwrap();
        let what = format!("attention_train H={h} p={dropout}");
        close(&what, &down(&c), &down(&context));
        // The saved probabilities are the probabilities in magnitude; a backend may mark
        // dropped ones by their sign, and no other.
        let marks = down(&saved);
        let magnitudes = marks.data().iter().map(|v| v.abs()).collect();
        let magnitudes = Tensor::new(marks.shape().clone(), magnitudes).unwrap();
        close(&what, &magnitudes, &down(&probs));
        let kept = down(&keep);
        for (m, k) in marks.data().iter().zip(kept.data()) {
            assert!(
                m.is_sign_positive() || *k == 0.0,
                "{what}: a kept probability marked"
            );
        }
        let dv = backend.head_context(&dropped, &dc, b, d, true).unwrap();
        let dp = backend.head_scores(&dc, &v, b, d).unwrap();
        let dp = backend.mul_fwd(&dp, &keep).unwrap();
        let ds = backend.softmax_bwd(&probs, &dp, 0.5).unwrap();
        let dq = backend.head_context(&ds, &k, b, d, false).unwrap();
        let dk = backend.head_context(&ds, &q, b, d, true).unwrap();
        let got = backend
            .attention_bwd([&q, &k, &v], &saved, &dc, &spec)
            .unwrap();
        for (name, got, want) in [
            ("dq", &got[0], dq),
            ("dk", &got[1], dk),
            ("dv", &got[2], dv),
        ] {
            close(&format!("{what} {name}"), &down(got), &down(&want));
        }
    }
    // Heads that do not divide, and scores of another shape, are refused.
    let x = backend.upload(&Tensor::zeros([10, 6])).unwrap();
    assert!(backend.head_scores(&x, &x, 2, 4).is_err());
    assert!(backend.head_scores(&x, &x, 3, 3).is_err());
    let p = backend.upload(&Tensor::zeros([2, 2, 5, 4])).unwrap();
    assert!(backend.head_context(&p, &x, 2, 3, false).is_err());
    // A dropout probability outside [0, 1) is refused.
    let mask = backend.upload(&Tensor::zeros([2, 5])).unwrap();
    let spec = AttentionSpec {
        batch: 2,
        head_dim: 3,
        scale: 1.0,
        dropout: 1.0,
        seed: 0,
    };
    assert!(backend.attention_train(&x, &x, &x, &mask, &spec).is_err());
}

#[test]
fn cpu_heads_match_the_reference() {
    heads(&prune_tensor::CpuBackend::<f32>::new());
}

#[test]
fn cpu_f64_heads_match_the_reference() {
    heads(&prune_tensor::CpuBackend::<f64>::new());
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_heads_match_the_reference() {
    heads(&prune_tensor::CudaBackend::new(0).expect("the feature `cuda` needs a GPU"));
}
