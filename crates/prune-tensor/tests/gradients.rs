//! Finite-difference gradient checks, in f64, of every backward of the CPU backend: central
//! differences of `L = Σ y ⊙ R` (R a fixed random upstream gradient) on sampled coordinates,
//! relative error < 1e-5.

use prune_tensor::gradcheck::{GradCheck, dot, uniform};
use prune_tensor::rng::Rng;
use prune_tensor::{
    ActivationOps, AttentionOps, AttentionSpec, CpuBackend, ElementwiseOps, IndexOps, LossOps,
    MatmulOps, NormOps, Shape, SoftmaxOps, Tensor, Transpose,
};

type T = Tensor<f64>;
const B: CpuBackend<f64> = CpuBackend::<f64>::new();

/// Asserts the analytic gradient `grad` of `loss` at `x` passes the default check.
fn check(what: &str, x: &T, grad: &T, loss: impl FnMut(&T) -> f64, rng: &mut Rng) {
    if let Err(m) = GradCheck::default().run(x, grad, loss, rng) {
        panic!("{what}: gradient mismatch {m:?}");
    }
}

fn rand(shape: impl Into<Shape>, rng: &mut Rng) -> T {
    uniform(shape, -1.5, 1.5, rng)
}

#[test]
fn matmul_gradients_in_every_layout() {
    let mut rng = Rng::new(11);
    let (m, k, n) = (4, 3, 5);
    for t in [Transpose::NN, Transpose::NT, Transpose::TN, Transpose::TT] {
        for (lead, shared) in [(vec![], true), (vec![2, 3], true), (vec![2, 3], false)] {
            let mut ad = lead.clone();
            ad.extend(if t.a() { [k, m] } else { [m, k] });
            let mut bd = if shared { vec![] } else { lead.clone() };
            bd.extend(if t.b() { [n, k] } else { [k, n] });
            let (a, b) = (rand(ad, &mut rng), rand(bd, &mut rng));
            let y = B.matmul_fwd(&a, &b, t).unwrap();
            let r = rand(y.shape().clone(), &mut rng);
            let (da, db) = B.matmul_bwd(&a, &b, t, &r).unwrap();
            let what = format!("matmul {t:?} lead {lead:?} shared {shared}");
            check(
                &what,
                &a,
                &da,
                |a| dot(&B.matmul_fwd(a, &b, t).unwrap(), &r),
                &mut rng,
            );
            check(
                &what,
                &b,
                &db,
                |b| dot(&B.matmul_fwd(&a, b, t).unwrap(), &r),
                &mut rng,
            );
        }
    }
}

#[test]
fn elementwise_gradients() {
    let mut rng = Rng::new(12);
    let (a, b) = (rand([3, 4, 5], &mut rng), rand([3, 4, 5], &mut rng));
    let r = rand([3, 4, 5], &mut rng);
    let (da, db) = B.mul_bwd(&a, &b, &r).unwrap();
    check(
        "mul a",
        &a,
        &da,
        |a| dot(&B.mul_fwd(a, &b).unwrap(), &r),
        &mut rng,
    );
    check(
        "mul b",
        &b,
        &db,
        |b| dot(&B.mul_fwd(&a, b).unwrap(), &r),
        &mut rng,
    );
    // add passes dy through; scale's backward is scale.
    check(
        "add",
        &a,
        &r,
        |a| dot(&B.add_fwd(a, &b).unwrap(), &r),
        &mut rng,
    );
    let ds = B.scale_fwd(&r, 0.3).unwrap();
    check(
        "scale",
        &a,
        &ds,
        |a| dot(&B.scale_fwd(a, 0.3).unwrap(), &r),
        &mut rng,
    );
    let bias = rand([5], &mut rng);
    let dbias = B.add_bias_bwd(&r).unwrap();
    check(
        "add_bias",
        &bias,
        &dbias,
        |bias| dot(&B.add_bias_fwd(&a, bias).unwrap(), &r),
        &mut rng,
    );
    let s = rand([6], &mut rng);
    let (dx, dsr) = B.scale_rows_bwd(&a, &s, 2, &r).unwrap();
    check(
        "scale_rows x",
        &a,
        &dx,
        |a| dot(&B.scale_rows_fwd(a, &s, 2).unwrap(), &r),
        &mut rng,
    );
    check(
        "scale_rows s",
        &s,
        &dsr,
        |s| dot(&B.scale_rows_fwd(&a, s, 2).unwrap(), &r),
        &mut rng,
    );
    let dsum = B.sum_bwd(a.shape(), 0.7).unwrap();
    check("sum", &a, &dsum, |a| 0.7 * B.sum_fwd(a).unwrap(), &mut rng);
    let dmean = B.mean_bwd(a.shape(), 0.7).unwrap();
    check(
        "mean",
        &a,
        &dmean,
        |a| 0.7 * B.mean_fwd(a).unwrap(),
        &mut rng,
    );
    // Dropout is linear in x for a fixed seed; its backward multiplies by `keep`.
    let (_, keep) = B.dropout_fwd(&a, 0.3, 5).unwrap();
    let dd = B.mul_fwd(&r, &keep).unwrap();
    check(
        "dropout",
        &a,
        &dd,
        |a| dot(&B.dropout_fwd(a, 0.3, 5).unwrap().0, &r),
        &mut rng,
    );
}

#[test]
fn activation_gradients() {
    let mut rng = Rng::new(13);
    let x = uniform([6, 7], -3.0, 3.0, &mut rng);
    let r = rand([6, 7], &mut rng);
    let dg = B.gelu_bwd(&x, &r).unwrap();
    check(
        "gelu",
        &x,
        &dg,
        |x| dot(&B.gelu_fwd(x).unwrap(), &r),
        &mut rng,
    );
    let dg = B.gelu_tanh_bwd(&x, &r).unwrap();
    check(
        "gelu_tanh",
        &x,
        &dg,
        |x| dot(&B.gelu_tanh_fwd(x).unwrap(), &r),
        &mut rng,
    );
    // Away from ReLU's kink, where central differences are exact.
    let away = Tensor::new(
        x.dims().to_vec(),
        (x.data().iter())
            .map(|&v| if v.abs() < 0.1 { v + 0.2 } else { v })
            .collect(),
    )
    .unwrap();
    let dr = B.relu_bwd(&away, &r).unwrap();
    check(
        "relu",
        &away,
        &dr,
        |x| dot(&B.relu_fwd(x).unwrap(), &r),
        &mut rng,
    );
    let y = B.tanh_fwd(&x).unwrap();
    let dt = B.tanh_bwd(&y, &r).unwrap();
    check(
        "tanh",
        &x,
        &dt,
        |x| dot(&B.tanh_fwd(x).unwrap(), &r),
        &mut rng,
    );
}

#[test]
fn softmax_gradient_with_scale_and_mask() {
    let mut rng = Rng::new(14);
    let x = rand([2, 3, 4, 5], &mut rng);
    let mask = Tensor::from_fn([2, 5], |i| if i == 4 || i == 8 { -1e4 } else { 0.0 });
    let r = rand([2, 3, 4, 5], &mut rng);
    for m in [None, Some(&mask)] {
        let y = B.softmax_fwd(&x, 0.5, m).unwrap();
        let dx = B.softmax_bwd(&y, &r, 0.5).unwrap();
        check(
            "softmax",
            &x,
            &dx,
            |x| dot(&B.softmax_fwd(x, 0.5, m).unwrap(), &r),
            &mut rng,
        );
    }
}

#[test]
fn layer_norm_gradients() {
    let mut rng = Rng::new(15);
    let x = rand([3, 4, 8], &mut rng);
    let (g, b) = (rand([8], &mut rng), rand([8], &mut rng));
    let r = rand([3, 4, 8], &mut rng);
    let eps = 1e-5;
    let (_, stats) = B.layer_norm_fwd(&x, &g, &b, eps).unwrap();
    let (dx, dg, db) = B.layer_norm_bwd(&x, &g, &stats, &r).unwrap();
    let ln = |x: &T, g: &T, b: &T| dot(&B.layer_norm_fwd(x, g, b, eps).unwrap().0, &r);
    check("layer_norm x", &x, &dx, |x| ln(x, &g, &b), &mut rng);
    check("layer_norm gamma", &g, &dg, |g| ln(&x, g, &b), &mut rng);
    check("layer_norm beta", &b, &db, |b| ln(&x, &g, b), &mut rng);
}

#[test]
fn masked_layer_norm_gradients() {
    let mut rng = Rng::new(18);
    let x = rand([3, 4, 8], &mut rng);
    let (g, b) = (rand([8], &mut rng), rand([8], &mut rng));
    let keep = Tensor::from_fn([8], |i| if i == 2 || i == 5 { 0.0 } else { 1.0 });
    let r = rand([3, 4, 8], &mut rng);
    let eps = 1e-5;
    let (_, stats) = B.masked_layer_norm_fwd(&x, &g, &b, &keep, eps).unwrap();
    let (dx, dg, db) = B.masked_layer_norm_bwd(&x, &g, &keep, &stats, &r).unwrap();
    let ln =
        |x: &T, g: &T, b: &T| dot(&B.masked_layer_norm_fwd(x, g, b, &keep, eps).unwrap().0, &r);
    check("masked_layer_norm x", &x, &dx, |x| ln(x, &g, &b), &mut rng);
    check(
        "masked_layer_norm gamma",
        &g,
        &dg,
        |g| ln(&x, g, &b),
        &mut rng,
    );
    check(
        "masked_layer_norm beta",
        &b,
        &db,
        |b| ln(&x, &g, b),
        &mut rng,
    );
}

#[test]
fn gather_and_permute_gradients() {
    let mut rng = Rng::new(16);
    let table = rand([7, 3], &mut rng);
    let ids = [1, 4, 1, 6, 0];
    let r = rand([5, 3], &mut rng);
    let dt = B.gather_rows_bwd(&r, &ids, 7).unwrap();
    check(
        "gather_rows",
        &table,
        &dt,
        |t| dot(&B.gather_rows_fwd(t, &ids).unwrap(), &r),
        &mut rng,
    );
    let x = rand([2, 3, 4, 5], &mut rng);
    let perm = [0, 2, 1, 3];
    let rp = rand([2, 4, 3, 5], &mut rng);
    let dx = B.permute(&rp, &[0, 2, 1, 3]).unwrap(); // inverse of a swap is itself
    check(
        "permute",
        &x,
        &dx,
        |x| dot(&B.permute(x, &perm).unwrap(), &rp),
        &mut rng,
    );
    let perm = [3, 1, 0, 2];
    let inverse = [2, 1, 3, 0];
    let rp = rand([5, 3, 2, 4], &mut rng);
    let dx = B.permute(&rp, &inverse).unwrap();
    check(
        "permute 3102",
        &x,
        &dx,
        |x| dot(&B.permute(x, &perm).unwrap(), &rp),
        &mut rng,
    );
}

#[test]
fn loss_gradients() {
    let mut rng = Rng::new(17);
    let logits = rand([6, 4], &mut rng);
    let labels = [3, 0, -100, 1, 2, 2];
    let dl = 0.8;
    let (_, probs) = B.cross_entropy_fwd(&logits, &labels, -100).unwrap();
    let d = B.cross_entropy_bwd(&probs, &labels, -100, dl).unwrap();
    check(
        "cross_entropy",
        &logits,
        &d,
        |z| dl * B.cross_entropy_fwd(z, &labels, -100).unwrap().0,
        &mut rng,
    );
    let (p, t) = (rand([5, 3], &mut rng), rand([5, 3], &mut rng));
    let d = B.mse_bwd(&p, &t, dl).unwrap();
    check("mse", &p, &d, |p| dl * B.mse_fwd(p, &t).unwrap(), &mut rng);
    for temp in [1.0, 2.0, 4.0] {
        let d = B.kl_div_bwd(&p, &t, temp, dl).unwrap();
        check(
            "kl_div",
            &p,
            &d,
            |p| dl * B.kl_div_fwd(p, &t, temp).unwrap(),
            &mut rng,
        );
    }
}

#[test]
fn fused_attention_gradients_with_and_without_dropout() {
    let mut rng = Rng::new(19);
    let (b, t, h, d) = (2, 5, 3, 4);
    let [q, k, v] = [0; 3].map(|_| rand([b * t, h * d], &mut rng));
    let mask = Tensor::from_fn([b, t], |i| if i == 2 * t - 1 { -1e4 } else { 0.0 });
    let r = rand([b * t, h * d], &mut rng);
    for dropout in [0.0, 0.3] {
        let spec = AttentionSpec {
            batch: b,
            head_dim: d,
            scale: 0.5,
            dropout,
            seed: 7,
        };
        let loss =
            |q: &T, k: &T, v: &T| dot(&B.attention_train(q, k, v, &mask, &spec).unwrap().0, &r);
        let (_, saved) = B.attention_train(&q, &k, &v, &mask, &spec).unwrap();
        let [dq, dk, dv] = B.attention_bwd([&q, &k, &v], &saved, &r, &spec).unwrap();
        let what = format!("attention dropout {dropout}");
        check(&what, &q, &dq, |x| loss(x, &k, &v), &mut rng);
        check(&what, &k, &dk, |x| loss(&q, x, &v), &mut rng);
        check(&what, &v, &dv, |x| loss(&q, &k, x), &mut rng);
    }
}
