//! Every backward of a backend against `CpuBackend<f64>` on the same inputs.

use super::*;

/// Every backward of `b` against `CpuBackend<f64>` on the same inputs.
pub fn backwards_match_cpu_f64<B: Backend>(b: &B) {
    let cpu = CpuBackend::<f64>::new();
    let mut rng = Rng::new(12);
    let (x, dy) = (rand([6, 20], &mut rng), rand([6, 20], &mut rng));
    let (ux, udy) = (up(b, &x), up(b, &dy));
    let y = rand([6, 20], &mut rng);
    let (da, db) = b.mul_bwd(&ux, &up(b, &y), &udy).unwrap();
    let (wa, wb) = cpu.mul_bwd(&x, &y, &dy).unwrap();
    close("mul_bwd da", &down(b, &da), &wa, TOL);
    close("mul_bwd db", &down(b, &db), &wb, TOL);
    let want = cpu.gelu_bwd(&x, &dy).unwrap();
    close(
        "gelu_bwd",
        &down(b, &b.gelu_bwd(&ux, &udy).unwrap()),
        &want,
        TOL,
    );
    for (name, act) in [
        ("gelu_tanh_bwd", Activation::GeluTanh),
        ("relu_bwd", Activation::Relu),
    ] {
        let want = cpu.activation_bwd(act, &x, &dy).unwrap();
        let got = b.activation_bwd(act, &ux, &udy).unwrap();
        close(name, &down(b, &got), &want, TOL);
    }
    let t = cpu.tanh_fwd(&x).unwrap();
    let want = cpu.tanh_bwd(&t, &dy).unwrap();
    close(
        "tanh_bwd",
        &down(b, &b.tanh_bwd(&up(b, &t), &udy).unwrap()),
        &want,
        TOL,
    );
    let s = rand([3], &mut rng);
    let (dx, ds) = b.scale_rows_bwd(&ux, &up(b, &s), 2, &udy).unwrap();
    let (wx, ws) = cpu.scale_rows_bwd(&x, &s, 2, &dy).unwrap();
    close("scale_rows_bwd dx", &down(b, &dx), &wx, TOL);
    close("scale_rows_bwd ds", &down(b, &ds), &ws, TOL);
    let p = cpu.softmax_fwd(&x, 0.5, None).unwrap();
    let want = cpu.softmax_bwd(&p, &dy, 0.5).unwrap();
    let got = b.softmax_bwd(&up(b, &p), &udy, 0.5).unwrap();
    close("softmax_bwd", &down(b, &got), &want, TOL);
    let (g, keep) = (
        rand([20], &mut rng),
        Tensor::from_fn([20], |i| if i % 5 == 2 { 0.0 } else { 1.0 }),
    );
    let (_, stats) = cpu.layer_norm_fwd(&x, &g, &g, 1e-5).unwrap();
    let (_, gs) = b.layer_norm_fwd(&ux, &up(b, &g), &up(b, &g), 1e-5).unwrap();
    let got = b.layer_norm_bwd(&ux, &up(b, &g), &gs, &udy).unwrap();
    let want = cpu.layer_norm_bwd(&x, &g, &stats, &dy).unwrap();
    close_norm_grads("layer_norm_bwd", b, &got, &want);
    let (_, stats) = cpu.masked_layer_norm_fwd(&x, &g, &g, &keep, 1e-5).unwrap();
    let uk = up(b, &keep);
    let (_, gs) = b
        .masked_layer_norm_fwd(&ux, &up(b, &g), &up(b, &g), &uk, 1e-5)
        .unwrap();
    let got = b
        .masked_layer_norm_bwd(&ux, &up(b, &g), &uk, &gs, &udy)
        .unwrap();
    let want = cpu
        .masked_layer_norm_bwd(&x, &g, &keep, &stats, &dy)
        .unwrap();
    close_norm_grads("masked_layer_norm_bwd", b, &got, &want);
    let labels = [3, -100, 0, 19, 7, 7];
    let (_, probs) = cpu.cross_entropy_fwd(&x, &labels, -100).unwrap();
    let want = cpu.cross_entropy_bwd(&probs, &labels, -100, 1.5).unwrap();
    let got = b
        .cross_entropy_bwd(&up(b, &probs), &labels, -100, 1.5)
        .unwrap();
    close("cross_entropy_bwd", &down(b, &got), &want, TOL);
    let want = cpu.mse_bwd(&x, &y, 0.7).unwrap();
    close(
        "mse_bwd",
        &down(b, &b.mse_bwd(&ux, &up(b, &y), 0.7).unwrap()),
        &want,
        TOL,
    );
    let want = cpu.kl_div_bwd(&x, &y, 2.0, 0.7).unwrap();
    let got = b.kl_div_bwd(&ux, &up(b, &y), 2.0, 0.7).unwrap();
    close("kl_div_bwd", &down(b, &got), &want, TOL);
    // A shared right operand whose left operand is transposed: dB sums over the batch.
    let (a3, w) = (rand([2, 3, 4, 5], &mut rng), rand([4, 6], &mut rng));
    let dc = rand([2, 3, 5, 6], &mut rng);
    let (got_a, got_w) = b
        .matmul_bwd(&up(b, &a3), &up(b, &w), Transpose::TN, &up(b, &dc))
        .unwrap();
    let (want_a, want_w) = cpu.matmul_bwd(&a3, &w, Transpose::TN, &dc).unwrap();
    close("matmul_bwd TN dA", &down(b, &got_a), &want_a, TOL);
    close("matmul_bwd TN dB", &down(b, &got_w), &want_w, TOL);
    for t in [Transpose::NN, Transpose::NT, Transpose::TT] {
        let (ad, bd) = match t {
            Transpose::NN => ([2, 5, 4], [2, 4, 3]),
            Transpose::NT => ([2, 5, 4], [2, 3, 4]),
            _ => ([2, 4, 5], [2, 3, 4]),
        };
        let (l, r_) = (rand(ad, &mut rng), rand(bd, &mut rng));
        let dc = rand([2, 5, 3], &mut rng);
        let (ga, gb) = b
            .matmul_bwd(&up(b, &l), &up(b, &r_), t, &up(b, &dc))
            .unwrap();
        let (wa, wb) = cpu.matmul_bwd(&l, &r_, t, &dc).unwrap();
        close(&format!("matmul_bwd {t:?} dA"), &down(b, &ga), &wa, TOL);
        close(&format!("matmul_bwd {t:?} dB"), &down(b, &gb), &wb, TOL);
    }
}
