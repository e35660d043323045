//! The graph knows no model: a hand-written one-layer encoder with its own parameter names,
//! traced and named through `Place`, gives the hidden, heads and FFN groups with exactly
//! the members its code couples.

use prune_graph::naming::{Place, groups_from_trace};
use prune_graph::{GroupKind, Role, TraceBackend};
use prune_tensor::{
    ActivationOps, AttentionOps, ElementwiseOps, IndexOps, MatmulOps, Shape, SoftmaxOps, Storage,
    Tensor, Transpose,
};

/// Batch 2 × 2 tokens, width 8 in 2 heads of 4, FFN 6, vocabulary 5.
fn trace_encoder() -> prune_graph::Trace {
    let (c, f) = (8, 6);
    let tb = TraceBackend::new();
    let p = |name: &str, dims: [usize; 2]| tb.param(name, Shape::from(dims));
    let tok = p("tok", [5, c]);
    let [q, k, v, o] = ["q", "k", "v", "o"].map(|n| p(&format!("blk0.{n}"), [c, c]));
    let (up, down) = (p("blk0.up", [f, c]), p("blk0.down", [c, f]));
    let x = tb.gather_rows_fwd(&tok, &[0, 1, 2, 3]).unwrap();
    let mm = |a, w| tb.matmul_fwd(a, w, Transpose::NT).unwrap();
    let (qx, kx, vx) = (mm(&x, &q), mm(&x, &k), mm(&x, &v));
    let mut scores = tb.head_scores(&qx, &kx, 2, 4).unwrap();
    let mask = tb.upload(&Tensor::zeros([2, 2])).unwrap();
    tb.softmax_assign(&mut scores, 0.5, Some(&mask)).unwrap();
    let ctx = tb.head_context(&scores, &vx, 2, 4, false).unwrap();
    let x = tb.add_fwd(&x, &mm(&ctx, &o)).unwrap();
    let h = tb.gelu_fwd(&mm(&x, &up)).unwrap();
    tb.add_fwd(&x, &mm(&h, &down)).unwrap();
    tb.trace()
}

fn place(name: &str) -> Place {
    match name {
        "tok" => Place::Embeddings,
        n if n.starts_with("blk0.") => Place::Layer(0),
        _ => Place::Other,
    }
}

#[test]
fn a_model_of_its_own_names_gets_its_groups() {
    let groups = groups_from_trace(&trace_encoder(), 1, place).unwrap();
    let members = |i: usize| -> Vec<(String, usize, Role)> {
        let mut m: Vec<_> = groups[i]
            .members
            .iter()
            .map(|m| (m.param.clone(), m.axis, m.role))
            .collect();
        m.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        m
    };
    let name = |s: &str| s.to_string();
    assert_eq!(groups.len(), 3);
    assert_eq!((groups[0].kind, groups[0].channels), (GroupKind::Hidden, 8));
    let hidden: Vec<(String, usize)> = members(0).into_iter().map(|m| (m.0, m.1)).collect();
    let expected: Vec<(String, usize)> = [
        ("blk0.down", 0),
        ("blk0.k", 1),
        ("blk0.o", 0),
        ("blk0.q", 1),
        ("blk0.up", 1),
        ("blk0.v", 1),
        ("tok", 1),
    ]
    .map(|(p, a)| (name(p), a))
    .to_vec();
    assert_eq!(hidden, expected);
    let heads = &groups[1];
    assert_eq!(heads.kind, GroupKind::Heads { layer: 0 });
    assert_eq!((heads.channels, heads.unit), (2, 4));
    let head_axes: Vec<(String, usize)> = members(1).into_iter().map(|m| (m.0, m.1)).collect();
    let expected: Vec<(String, usize)> =
        [("blk0.k", 0), ("blk0.o", 1), ("blk0.q", 0), ("blk0.v", 0)]
            .map(|(p, a)| (name(p), a))
            .to_vec();
    assert_eq!(head_axes, expected);
    let ffn = &groups[2];
    assert_eq!(
        (ffn.kind, ffn.channels, ffn.unit),
        (GroupKind::Ffn { layer: 0 }, 6, 1)
    );
    let ffn_axes: Vec<(String, usize)> = members(2).into_iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(ffn_axes, vec![(name("blk0.down"), 1), (name("blk0.up"), 0)]);
}

#[test]
fn a_layer_the_names_do_not_place_is_missing() {
    let e = groups_from_trace(&trace_encoder(), 1, |n| match n {
        "tok" => Place::Embeddings,
        _ => Place::Other,
    })
    .unwrap_err();
    assert!(e.to_string().contains("no heads of layer 0 group"), "{e}");
}
