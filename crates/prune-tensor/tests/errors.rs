//! Bad operands give typed errors that name the op and the shapes, never a panic.

use prune_tensor::{
    AdamW, CpuBackend, ElementwiseOps, IndexOps, LossOps, MatmulOps, NormOps, OptimOps, Shape,
    SoftmaxOps, Tensor, TensorError, Transpose,
};

const B: CpuBackend = CpuBackend::<f32>::new();

fn t(dims: &[usize]) -> Tensor {
    Tensor::zeros(dims)
}

/// Asserts `r` is a shape error of `op` mentioning each of `dims`.
fn shape_err<T: std::fmt::Debug>(r: Result<T, TensorError>, op: &str, dims: &[&[usize]]) {
    match r {
        Err(e @ TensorError::Shape { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(op), "{msg}");
            for d in dims {
                assert!(
                    msg.contains(&Shape::from(*d).to_string()),
                    "{msg} lacks {d:?}"
                );
            }
        }
        other => panic!("expected a shape error from {op}, got {other:?}"),
    }
}

#[test]
fn matmul_rejects_mismatched_operands() {
    shape_err(
        B.matmul_fwd(&t(&[4, 3]), &t(&[5, 2]), Transpose::NN),
        "matmul_fwd",
        &[&[4, 3], &[5, 2]],
    );
    shape_err(
        B.matmul_fwd(&t(&[2, 4, 3]), &t(&[3, 3, 2]), Transpose::NN),
        "matmul_fwd",
        &[&[2, 4, 3]],
    );
    shape_err(
        B.matmul_fwd(&t(&[4]), &t(&[4, 2]), Transpose::NN),
        "matmul_fwd",
        &[&[4]],
    );
    shape_err(
        B.matmul_bwd(&t(&[4, 3]), &t(&[3, 2]), Transpose::NN, &t(&[4, 3])),
        "matmul_bwd",
        &[&[4, 3]],
    );
}

#[test]
fn elementwise_ops_reject_mismatched_shapes() {
    shape_err(
        B.add_fwd(&t(&[2, 3]), &t(&[3, 2])),
        "add_fwd",
        &[&[2, 3], &[3, 2]],
    );
    shape_err(
        B.mul_fwd(&t(&[2, 3]), &t(&[6])),
        "mul_fwd",
        &[&[2, 3], &[6]],
    );
    shape_err(
        B.add_bias_fwd(&t(&[2, 3]), &t(&[2])),
        "add_bias_fwd",
        &[&[2, 3], &[2]],
    );
    shape_err(
        B.scale_rows_fwd(&t(&[4, 3]), &t(&[3]), 2),
        "scale_rows_fwd",
        &[&[4, 3], &[3]],
    );
    let mut acc = t(&[2]);
    shape_err(
        B.add_assign(&mut acc, &t(&[3])),
        "add_assign",
        &[&[2], &[3]],
    );
}

#[test]
fn norm_softmax_index_and_loss_reject_bad_operands() {
    shape_err(
        B.layer_norm_fwd(&t(&[2, 4]), &t(&[3]), &t(&[4]), 1e-5),
        "layer_norm_fwd",
        &[&[2, 4], &[3]],
    );
    shape_err(
        B.softmax_fwd(&t(&[2, 3, 4]), 1.0, Some(&t(&[2, 5]))),
        "softmax_fwd",
        &[&[2, 3, 4], &[2, 5]],
    );
    shape_err(
        B.gather_rows_fwd(&t(&[5]), &[0]),
        "gather_rows_fwd",
        &[&[5]],
    );
    shape_err(B.permute(&t(&[2, 3]), &[0, 0]), "permute", &[&[2, 3]]);
    shape_err(
        B.cross_entropy_fwd(&t(&[3, 2]), &[0, 1], -100),
        "cross_entropy_fwd",
        &[&[3, 2]],
    );
    shape_err(
        B.kl_div_fwd(&t(&[3, 2]), &t(&[3, 3]), 2.0),
        "kl_div_fwd",
        &[&[3, 2], &[3, 3]],
    );
    shape_err(
        Tensor::<f32>::zeros([2, 3]).reshape([4]),
        "reshape",
        &[&[2, 3], &[4]],
    );
}

#[test]
fn out_of_range_indices_and_arguments_are_errors() {
    let e = B.gather_rows_fwd(&t(&[5, 2]), &[1, 5]).unwrap_err();
    assert_eq!(
        e,
        TensorError::Index {
            op: "gather_rows_fwd",
            index: 5,
            bound: 5
        }
    );
    let e = B.cross_entropy_fwd(&t(&[2, 3]), &[0, 3], -100).unwrap_err();
    assert_eq!(
        e,
        TensorError::Index {
            op: "cross_entropy_fwd",
            index: 3,
            bound: 3
        }
    );
    assert!(matches!(
        B.dropout_fwd(&t(&[2]), 1.0, 0),
        Err(TensorError::Argument { .. })
    ));
    assert!(matches!(
        B.kl_div_fwd(&t(&[1, 2]), &t(&[1, 2]), 0.0),
        Err(TensorError::Argument { .. })
    ));
    let hp = AdamW {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 0,
    };
    let (mut p, mut m, mut v) = (t(&[2]), t(&[2]), t(&[2]));
    assert!(matches!(
        B.adamw_step(&mut p, &t(&[2]), &mut m, &mut v, &hp, None),
        Err(TensorError::Argument { .. })
    ));
    let e = Tensor::<f32>::new([2, 2], vec![0.0; 3]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a tensor of shape [2, 2] needs 4 elements, got 3"
    );
}
