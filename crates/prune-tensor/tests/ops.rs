//! Every op of a backend against the slow scalar references in f64, and every backward against
//! the CPU backend in f64 (itself checked by finite differences in `gradients.rs`). Written
//! once over `B: Backend`; runs on the CPU backend always and on the CUDA backend with the
//! feature `cuda`, where a missing GPU is a failure, not a skip.

use prune_tensor::rng::Rng;
use prune_tensor::{
    Activation, ActivationOps, AdamW, Backend, CpuBackend, ElementwiseOps, LayerNormStats, LossOps,
    MatmulOps, NormOps, Shape, SoftmaxOps, Tensor, Transpose, reference as r,
};

#[path = "ops/backwards.rs"]
mod backwards;

use backwards::backwards_match_cpu_f64;

/// Random f32-representable inputs as f64 tensors, so references see exactly what the
/// backend sees.
fn rand(shape: impl Into<Shape>, rng: &mut Rng) -> Tensor<f64> {
    Tensor::from_fn(shape, |_| rng.range(-2.0, 2.0) as f32 as f64)
}

fn up<B: Backend>(b: &B, t: &Tensor<f64>) -> B::Tensor {
    b.upload(&t.cast()).unwrap()
}

fn down<B: Backend>(b: &B, t: &B::Tensor) -> Tensor<f64> {
    b.download(t).unwrap().cast()
}

/// Asserts `got` matches `want` to `tol` relative to the reference's largest magnitude.
fn close(what: &str, got: &Tensor<f64>, want: &Tensor<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let err = got.max_abs_diff(want) / want.max_abs().max(1.0);
    assert!(err <= tol, "{what}: relative error {err:e} > {tol:e}");
}

const TOL: f64 = 1e-5;

/// Asserts LayerNorm gradients `(dx, dγ, dβ)` of `b` match the f64 CPU's.
fn close_norm_grads<B: Backend>(
    what: &str,
    b: &B,
    got: &(B::Tensor, B::Tensor, B::Tensor),
    want: &(Tensor<f64>, Tensor<f64>, Tensor<f64>),
) {
    close(&format!("{what} dx"), &down(b, &got.0), &want.0, TOL);
    close(&format!("{what} dgamma"), &down(b, &got.1), &want.1, TOL);
    close(&format!("{what} dbeta"), &down(b, &got.2), &want.2, TOL);
}

fn matmul_all_layouts<B: Backend>(b: &B) {
    let mut rng = Rng::new(1);
    // Small; large enough to be split over threads by rows; few rows, split by columns.
    let sizes = [(5, 7, 4), (70, 60, 66), (20, 128, 130)];
    for t in [Transpose::NN, Transpose::NT, Transpose::TN, Transpose::TT] {
        // Shared 2-D right operand (linear layer) and fully batched (attention).
        let leads = [
            (vec![], vec![]),
            (vec![3, 2], vec![]),
            (vec![2, 3], vec![2, 3]),
        ];
        for ((a_lead, b_lead), (m, k, n)) in leads
            .into_iter()
            .flat_map(|l| sizes.map(|s| (l.clone(), s)))
        {
            let mut ad = a_lead.clone();
            ad.extend(if t.a() { [k, m] } else { [m, k] });
            let mut bd = b_lead.clone();
            bd.extend(if t.b() { [n, k] } else { [k, n] });
            let (x, y) = (rand(ad, &mut rng), rand(bd, &mut rng));
            let got = down(b, &b.matmul_fwd(&up(b, &x), &up(b, &y), t).unwrap());
            close(
                &format!("matmul {t:?} {a_lead:?} {m}x{k}x{n}"),
                &got,
                &r::matmul(&x, &y, t),
                TOL,
            );
        }
    }
}

fn matmul_backward_matches_reference<B: Backend>(b: &B) {
    // dA and dB via the identities dA = dC·op(B)ᵀ, dB = op(A)ᵀ·dC, computed by the reference.
    let mut rng = Rng::new(2);
    let (m, k, n) = (6, 5, 3);
    let x = rand([2, m, k], &mut rng);
    let w = rand([n, k], &mut rng);
    let dc = rand([2, m, n], &mut rng);
    let (da, dw) = b
        .matmul_bwd(&up(b, &x), &up(b, &w), Transpose::NT, &up(b, &dc))
        .unwrap();
    close(
        "matmul_bwd dA",
        &down(b, &da),
        &r::matmul(&dc, &w, Transpose::NN),
        TOL,
    );
    let x2 = x.clone().reshape([2 * m, k]).unwrap();
    let dc2 = dc.clone().reshape([2 * m, n]).unwrap();
    close(
        "matmul_bwd dB",
        &down(b, &dw),
        &r::matmul(&dc2, &x2, Transpose::TN),
        TOL,
    );
}

fn elementwise<B: Backend>(b: &B) {
    let mut rng = Rng::new(3);
    let (x, y) = (rand([4, 3, 5], &mut rng), rand([4, 3, 5], &mut rng));
    let (ux, uy) = (up(b, &x), up(b, &y));
    close(
        "add",
        &down(b, &b.add_fwd(&ux, &uy).unwrap()),
        &r::zip(&x, &y, |a, c| a + c),
        TOL,
    );
    close(
        "mul",
        &down(b, &b.mul_fwd(&ux, &uy).unwrap()),
        &r::zip(&x, &y, |a, c| a * c),
        TOL,
    );
    close(
        "scale",
        &down(b, &b.scale_fwd(&ux, -0.5).unwrap()),
        &r::map(&x, |a| -0.5 * a),
        TOL,
    );
    let bias = rand([5], &mut rng);
    let got = down(b, &b.add_bias_fwd(&ux, &up(b, &bias)).unwrap());
    close("add_bias", &got, &r::add_bias(&x, &bias), TOL);
    close(
        "add_bias_bwd",
        &down(b, &b.add_bias_bwd(&ux).unwrap()),
        &r::sum_rows(&x),
        TOL,
    );
    let s = rand([6], &mut rng);
    let got = down(b, &b.scale_rows_fwd(&ux, &up(b, &s), 2).unwrap());
    close("scale_rows", &got, &r::scale_rows(&x, &s, 2), TOL);
    let mut acc = ux.clone();
    b.add_assign(&mut acc, &uy).unwrap();
    close(
        "add_assign",
        &down(b, &acc),
        &r::zip(&x, &y, |a, c| a + c),
        TOL,
    );
    b.scale_assign(&mut acc, 2.0).unwrap();
    close(
        "scale_assign",
        &down(b, &acc),
        &r::zip(&x, &y, |a, c| 2.0 * (a + c)),
        TOL,
    );
    let sum: f64 = x.data().iter().sum();
    assert!((b.sum_fwd(&ux).unwrap() - sum).abs() < 1e-4);
    assert!((b.mean_fwd(&ux).unwrap() - sum / 60.0).abs() < 1e-6);
    let sq: f64 = x.data().iter().map(|v| v * v).sum();
    assert!((b.sum_squares(&ux).unwrap() - sq).abs() < 1e-4);
    let mean_grad = down(b, &b.mean_bwd(x.shape(), 3.0).unwrap());
    close(
        "mean_bwd",
        &mean_grad,
        &Tensor::full([4, 3, 5], 3.0 / 60.0),
        TOL,
    );
    close(
        "sum_bwd",
        &down(b, &b.sum_bwd(x.shape(), 3.0).unwrap()),
        &Tensor::full([4, 3, 5], 3.0),
        TOL,
    );
}

/// The fused ops against the ops they fuse: bias add + GELU, dropout + residual sum.
fn fused<B: Backend>(b: &B) {
    let mut rng = Rng::new(13);
    let (x, bias) = (rand([3, 5, 8], &mut rng), rand([8], &mut rng));
    let mut u = up(b, &x);
    let g = b.bias_gelu_fwd(&mut u, &up(b, &bias)).unwrap();
    let want_u = r::add_bias(&x, &bias);
    close("bias_gelu u", &down(b, &u), &want_u, TOL);
    close("bias_gelu y", &down(b, &g), &r::gelu(&want_u), TOL);
    for (n, i, o) in [(6, 8, 5), (70, 60, 66)] {
        let (x, w, bias) = (
            rand([n, i], &mut rng),
            rand([o, i], &mut rng),
            rand([o], &mut rng),
        );
        let got = b.linear_fwd(&up(b, &x), &up(b, &w), &up(b, &bias)).unwrap();
        let want = r::add_bias(&r::matmul(&x, &w, Transpose::NT), &bias);
        close(&format!("linear {n}x{i}x{o}"), &down(b, &got), &want, TOL);
    }
    let residual = rand([3, 5, 8], &mut rng);
    let (y, keep) = b
        .dropout_add_fwd(&up(b, &x), &up(b, &residual), 0.3, 7)
        .unwrap();
    let (_, keep_alone) = b.dropout_fwd(&up(b, &x), 0.3, 7).unwrap();
    assert_eq!(
        down(b, &keep).data(),
        down(b, &keep_alone).data(),
        "dropout_add draws what dropout draws"
    );
    let dropped = r::dropout(&x, 0.3, 7);
    let want = Tensor::from_fn([3, 5, 8], |i| dropped.data()[i] + residual.data()[i]);
    close("dropout_add", &down(b, &y), &want, TOL);
    assert!(
        b.dropout_add_fwd(&up(b, &x), &up(b, &bias), 0.3, 7)
            .is_err(),
        "a residual of another shape is refused"
    );
}

fn dropout<B: Backend>(b: &B) {
    let mut rng = Rng::new(4);
    let x = rand([64, 33], &mut rng);
    let (y, keep) = b.dropout_fwd(&up(b, &x), 0.25, 99).unwrap();
    close("dropout", &down(b, &y), &r::dropout(&x, 0.25, 99), TOL);
    let keep = down(b, &keep);
    let dropped =
        keep.data().iter().filter(|&&k| k == 0.0).count() as f64 / keep.data().len() as f64;
    assert!((dropped - 0.25).abs() < 0.03, "drop rate {dropped}");
    let (y0, _) = b.dropout_fwd(&up(b, &x), 0.0, 1).unwrap();
    close("dropout p=0", &down(b, &y0), &x, TOL);
}

fn activations<B: Backend>(b: &B) {
    let mut rng = Rng::new(5);
    let x = rand([7, 9], &mut rng);
    close(
        "gelu",
        &down(b, &b.gelu_fwd(&up(b, &x)).unwrap()),
        &r::gelu(&x),
        TOL,
    );
    close(
        "tanh",
        &down(b, &b.tanh_fwd(&up(b, &x)).unwrap()),
        &r::map(&x, f64::tanh),
        TOL,
    );
    let k = (2.0 / std::f64::consts::PI).sqrt();
    close(
        "gelu_tanh",
        &down(b, &b.gelu_tanh_fwd(&up(b, &x)).unwrap()),
        &r::map(&x, |v| {
            0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())
        }),
        TOL,
    );
    close(
        "relu",
        &down(b, &b.relu_fwd(&up(b, &x)).unwrap()),
        &r::map(&x, |v| v.max(0.0)),
        TOL,
    );
    // GELU at known points: gelu(1) = Φ(1) = 0.8413447460685429.
    let one = Tensor::<f64>::new([1], vec![1.0]).unwrap();
    let g1 = down(b, &b.gelu_fwd(&up(b, &one)).unwrap()).data()[0];
    assert!((g1 - 0.841_344_746_068_542_9).abs() < 1e-6, "{g1}");
}

fn softmax<B: Backend>(b: &B) {
    let mut rng = Rng::new(6);
    let x = rand([2, 3, 4, 6], &mut rng);
    let mask = Tensor::<f64>::new(
        [2, 6],
        vec![0., 0., 0., 0., -1e4, -1e4, 0., 0., 0., 0., 0., -1e4],
    )
    .unwrap();
    let got = down(
        b,
        &b.softmax_fwd(&up(b, &x), 0.125, Some(&up(b, &mask)))
            .unwrap(),
    );
    close(
        "softmax masked",
        &got,
        &r::softmax(&x, 0.125, Some(&mask)),
        TOL,
    );
    assert!(got.data()[4] < 1e-12, "masked positions get no probability");
    let got = down(b, &b.softmax_fwd(&up(b, &x), 1.0, None).unwrap());
    close("softmax", &got, &r::softmax(&x, 1.0, None), TOL);
}

fn layer_norm<B: Backend>(b: &B) {
    let mut rng = Rng::new(7);
    let x = rand([3, 5, 16], &mut rng);
    let (g, be) = (rand([16], &mut rng), rand([16], &mut rng));
    let (y, LayerNormStats { mean, rstd }) = b
        .layer_norm_fwd(&up(b, &x), &up(b, &g), &up(b, &be), 1e-12)
        .unwrap();
    close(
        "layer_norm",
        &down(b, &y),
        &r::layer_norm(&x, &g, &be, 1e-12),
        TOL,
    );
    assert_eq!(b.shape(&mean).dims(), [15]);
    assert_eq!(b.shape(&rstd).dims(), [15]);
}

fn masked_layer_norm<B: Backend>(b: &B) {
    let mut rng = Rng::new(17);
    let x = rand([3, 4, 10], &mut rng);
    let (g, be) = (rand([10], &mut rng), rand([10], &mut rng));
    let keep = Tensor::from_fn([10], |i| if i % 3 == 1 { 0.0 } else { 1.0 });
    let (y, _) = b
        .masked_layer_norm_fwd(&up(b, &x), &up(b, &g), &up(b, &be), &up(b, &keep), 1e-12)
        .unwrap();
    close(
        "masked_layer_norm",
        &down(b, &y),
        &r::masked_layer_norm(&x, &g, &be, &keep, 1e-12),
        TOL,
    );
    let all = Tensor::full([10], 1.0);
    let (y, _) = b
        .masked_layer_norm_fwd(&up(b, &x), &up(b, &g), &up(b, &be), &up(b, &all), 1e-5)
        .unwrap();
    close(
        "masked_layer_norm keeping all",
        &down(b, &y),
        &r::layer_norm(&x, &g, &be, 1e-5),
        TOL,
    );
    let none = Tensor::zeros([10]);
    assert!(
        b.masked_layer_norm_fwd(&up(b, &x), &up(b, &g), &up(b, &be), &up(b, &none), 1e-5)
            .is_err()
    );
}

fn index<B: Backend>(b: &B) {
    let mut rng = Rng::new(8);
    let table = rand([10, 4], &mut rng);
    let ids = [3, 0, 9, 3, 7];
    let got = down(b, &b.gather_rows_fwd(&up(b, &table), &ids).unwrap());
    close("gather_rows", &got, &r::gather_rows(&table, &ids), TOL);
    let dy = rand([5, 4], &mut rng);
    let dt = down(b, &b.gather_rows_bwd(&up(b, &dy), &ids, 10).unwrap());
    // Row 3 appears twice: its gradient is the sum of both upstream rows.
    for j in 0..4 {
        assert!((dt.data()[3 * 4 + j] - dy.data()[j] - dy.data()[3 * 4 + j]).abs() < 1e-6);
        assert_eq!(dt.data()[4 + j], 0.0, "row 1 was never gathered");
    }
    let x = rand([2, 3, 4, 5], &mut rng);
    for perm in [[0, 2, 1, 3], [3, 1, 0, 2], [0, 1, 2, 3]] {
        let got = down(b, &b.permute(&up(b, &x), &perm).unwrap());
        close(
            &format!("permute {perm:?}"),
            &got,
            &r::permute(&x, &perm),
            0.0,
        );
    }
}

fn losses<B: Backend>(b: &B) {
    let mut rng = Rng::new(9);
    let logits = rand([5, 3], &mut rng);
    let labels = [2, -100, 0, 1, 1];
    let (loss, probs) = b.cross_entropy_fwd(&up(b, &logits), &labels, -100).unwrap();
    let want = r::cross_entropy(&logits, &labels, -100);
    assert!(
        (loss - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{loss} vs {want}"
    );
    close(
        "ce probs",
        &down(b, &probs),
        &r::softmax(&logits.clone().reshape([5, 1, 3]).unwrap(), 1.0, None)
            .reshape([5, 3])
            .unwrap(),
        TOL,
    );
    let (p, t) = (rand([4, 6], &mut rng), rand([4, 6], &mut rng));
    let mse = b.mse_fwd(&up(b, &p), &up(b, &t)).unwrap();
    assert!((mse - r::mse(&p, &t)).abs() < 1e-6);
    let kd = b.kl_div_fwd(&up(b, &p), &up(b, &t), 2.0).unwrap();
    assert!((kd - r::kl_div(&p, &t, 2.0)).abs() < 1e-6, "{kd}");
    assert!(
        b.kl_div_fwd(&up(b, &p), &up(b, &p), 2.0).unwrap().abs() < 1e-9,
        "KL(p‖p) = 0"
    );
}

fn adamw<B: Backend>(b: &B) {
    let mut rng = Rng::new(10);
    let (mut p, g) = (rand([8, 3], &mut rng), rand([8, 3], &mut rng));
    let mut m = r::map(&rand([8, 3], &mut rng), |v| v * 0.1);
    let mut v = r::map(&rand([8, 3], &mut rng), |x| (x * 0.1).abs());
    let mask = Tensor::from_fn([8, 3], |i| if i % 4 == 0 { 0.0 } else { 1.0 });
    let m0 = m.clone();
    let hp = AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
    };
    let (mut up_p, mut up_m, mut up_v) = (up(b, &p), up(b, &m), up(b, &v));
    b.adamw_step(
        &mut up_p,
        &up(b, &g),
        &mut up_m,
        &mut up_v,
        &hp,
        Some(&up(b, &mask)),
    )
    .unwrap();
    r::adamw(&mut p, &g, &mut m, &mut v, &hp, Some(&mask));
    close("adamw param", &down(b, &up_p), &p, TOL);
    close("adamw m", &down(b, &up_m), &m, TOL);
    close("adamw v", &down(b, &up_v), &v, TOL);
    // Masked entries get no gradient: their first moment only decays.
    let m_after = down(b, &up_m);
    let only_decayed = (0..24)
        .step_by(4)
        .all(|i| (m_after.data()[i] - 0.9 * m0.data()[i]).abs() < 1e-7);
    assert!(only_decayed, "masked entries get no gradient");
}

/// Shapes large enough that row-parallel ops split into several rayon tasks and GEMMs run
/// multi-threaded, so the task index arithmetic is covered too.
fn multi_task_shapes<B: Backend>(b: &B) {
    let mut rng = Rng::new(11);
    let (x, w) = (rand([3, 40, 96], &mut rng), rand([80, 96], &mut rng));
    let got = down(
        b,
        &b.matmul_fwd(&up(b, &x), &up(b, &w), Transpose::NT).unwrap(),
    );
    close("large matmul", &got, &r::matmul(&x, &w, Transpose::NT), TOL);
    let x = rand([5, 700, 24], &mut rng);
    let (g, be) = (rand([24], &mut rng), rand([24], &mut rng));
    let (y, stats) = b
        .layer_norm_fwd(&up(b, &x), &up(b, &g), &up(b, &be), 1e-5)
        .unwrap();
    close(
        "large layer_norm",
        &down(b, &y),
        &r::layer_norm(&x, &g, &be, 1e-5),
        TOL,
    );
    let mean_row_1999 = x.data()[1999 * 24..2000 * 24].iter().sum::<f64>() / 24.0;
    assert!((down(b, &stats.mean).data()[1999] - mean_row_1999).abs() < 1e-5);
    let mask = Tensor::from_fn([5, 24], |i| if i % 7 == 3 { -1e4 } else { 0.0 });
    let got = down(
        b,
        &b.softmax_fwd(&up(b, &x), 0.3, Some(&up(b, &mask))).unwrap(),
    );
    close(
        "large softmax",
        &got,
        &r::softmax(&x, 0.3, Some(&mask)),
        TOL,
    );
    close(
        "large add_bias_bwd",
        &down(b, &b.add_bias_bwd(&up(b, &x)).unwrap()),
        &r::sum_rows(&x),
        TOL,
    );
    // dγ and dβ are column sums over all 3500 rows.
    let dy = rand([5, 700, 24], &mut rng);
    let cpu = CpuBackend::<f64>::new();
    let (_, cpu_stats) = cpu.layer_norm_fwd(&x, &g, &be, 1e-5).unwrap();
    let want = cpu.layer_norm_bwd(&x, &g, &cpu_stats, &dy).unwrap();
    let got = b
        .layer_norm_bwd(&up(b, &x), &up(b, &g), &stats, &up(b, &dy))
        .unwrap();
    close_norm_grads("large layer_norm_bwd", b, &got, &want);
}

/// Instantiates every op test for each backend.
macro_rules! backends {
    ($($backend:ident => $make:expr),* $(,)?) => { $(
        mod $backend {
            #[test] fn matmul_all_layouts() { super::matmul_all_layouts(&$make) }
            #[test] fn matmul_backward() { super::matmul_backward_matches_reference(&$make) }
            #[test] fn elementwise() { super::elementwise(&$make) }
            #[test] fn dropout() { super::dropout(&$make) }
            #[test] fn fused() { super::fused(&$make) }
            #[test] fn activations() { super::activations(&$make) }
            #[test] fn softmax() { super::softmax(&$make) }
            #[test] fn layer_norm() { super::layer_norm(&$make) }
            #[test] fn masked_layer_norm() { super::masked_layer_norm(&$make) }
            #[test] fn index() { super::index(&$make) }
            #[test] fn losses() { super::losses(&$make) }
            #[test] fn adamw() { super::adamw(&$make) }
            #[test] fn multi_task_shapes() { super::multi_task_shapes(&$make) }
            #[test] fn backwards() { super::backwards_match_cpu_f64(&$make) }
        }
    )* };
}

backends!(cpu => prune_tensor::CpuBackend::<f32>::new());

#[cfg(feature = "cuda")]
backends!(cuda => prune_tensor::CudaBackend::new(0).expect("the feature `cuda` needs a GPU"));
