//! `set_bf16_products`: f32 GEMMs switch to bf16 inputs on AMX and back (its own test binary,
//! since the switch is process-wide and would reach the other tests' products).

use prune_tensor::cpu::{CpuBackend, check_bf16_products, set_bf16_products};
use prune_tensor::{MatmulOps, Tensor, Transpose};

#[test]
fn bf16_products_round_the_inputs_and_turn_off_again() {
    let b = CpuBackend::<f32>::new();
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    };
    let x = Tensor::new([96, 200], values(96 * 200, 1)).unwrap();
    let w = Tensor::new([72, 200], values(72 * 200, 2)).unwrap();
    let exact = b.matmul_fwd(&x, &w, Transpose::NT).unwrap();
    if let Err(why) = check_bf16_products() {
        assert!(set_bf16_products(true).is_err());
        eprintln!("skipped: {why}");
        return;
    }
    set_bf16_products(true).unwrap();
    let rounded = b.matmul_fwd(&x, &w, Transpose::NT).unwrap();
    set_bf16_products(false).unwrap();
    let again = b.matmul_fwd(&x, &w, Transpose::NT).unwrap();
    assert_eq!(
        exact.data(),
        again.data(),
        "f32 products again once turned off"
    );
    let worst = exact
        .data()
        .iter()
        .zip(rounded.data())
        .map(|(e, r)| (e - r).abs())
        .fold(0.0f32, f32::max);
    // Inputs of magnitude ≤ 1 rounded to 8 mantissa bits, 200 terms: errors near 2^-9 · √200.
    assert!(worst > 0.0, "bf16 products left every output exact");
    assert!(worst < 0.1, "bf16 products off by {worst}");
}
