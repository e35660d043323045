//! `set_bf16_products` and `Bf16Scope`: f32 GEMMs switch to bf16 inputs on AMX and back (its
//! own test binary, since the switch is process-wide and would reach the other tests'
//! products).

use prune_tensor::cpu::{
    Bf16Scope, CpuBackend, bf16_products, check_bf16_products, set_bf16_products,
};
use prune_tensor::{MatmulOps, Tensor, Transpose};

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// The largest absolute difference of two tensors' elements.
fn worst(a: &Tensor<f32>, b: &Tensor<f32>) -> f32 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn bf16_products_round_the_inputs_of_large_products_and_turn_off_again() {
    let b = CpuBackend::<f32>::new();
    // 128 × 96 × 200 multiply-adds: above the size where the tile unit pays.
    let x = Tensor::new([128, 200], values(128 * 200, 1)).unwrap();
    let w = Tensor::new([96, 200], values(96 * 200, 2)).unwrap();
    let exact = b.matmul_fwd(&x, &w, Transpose::NT).unwrap();
    // 16 × 16 × 200: too small, stays f32.
    let (xs, ws) = (
        Tensor::new([16, 200], values(16 * 200, 3)).unwrap(),
        Tensor::new([16, 200], values(16 * 200, 4)).unwrap(),
    );
    let small = b.matmul_fwd(&xs, &ws, Transpose::NT).unwrap();
    if let Err(why) = check_bf16_products() {
        assert!(set_bf16_products(true).is_err());
        assert!(Bf16Scope::enter(true).is_err());
        assert!(!bf16_products());
        eprintln!("skipped: {why}");
        return;
    }
    set_bf16_products(true).unwrap();
    let rounded = b.matmul_fwd(&x, &w, Transpose::NT).unwrap();
    let small_then = b.matmul_fwd(&xs, &ws, Transpose::NT).unwrap();
    set_bf16_products(false).unwrap();
    let again = b.matmul_fwd(&x, &w, Transpose::NT).unwrap();
    assert_eq!(
        exact.data(),
        again.data(),
        "f32 products again once turned off"
    );
    assert_eq!(small.data(), small_then.data(), "small products stay f32");
    // Inputs of magnitude ≤ 1 rounded to 8 mantissa bits, 200 terms: errors near 2^-9 · √200.
    let off = worst(&exact, &rounded);
    assert!(off > 0.0, "bf16 products left every output exact");
    assert!(off < 0.1, "bf16 products off by {off}");
    a_bf16_scope_restores_the_setting_it_found();
}

/// Part of the test above (one test, since the setting is process-wide).
fn a_bf16_scope_restores_the_setting_it_found() {
    {
        let _off = Bf16Scope::enter(false).unwrap();
        assert!(!bf16_products(), "a scope not asked for changes nothing");
        let _on = Bf16Scope::enter(true).unwrap();
        assert!(bf16_products());
        {
            let _nested = Bf16Scope::enter(true).unwrap();
        }
        assert!(
            bf16_products(),
            "the inner scope restores on, as it found it"
        );
    }
    assert!(!bf16_products(), "off again after the outer scope");
}
