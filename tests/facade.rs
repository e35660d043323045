//! The workspace through its facade: a real GLUE example, tokenized, through the fetched
//! checkpoint, then a planned cut of half the heads and FFN of one layer; the masked model
//! and the cut model agree and the cut model is smaller.

use prune::data::{BadRows, Split, Task, default_glue_dir, encode_examples, load_glue};
use prune::speedup::{GroupKind, PruningPlan, apply, mask_model};
use prune::tensor::{CpuBackend, Storage};
use prune::transformer::{BertForSequenceClassification, Padding, Tokenizer, paths};

#[test]
fn real_examples_through_a_masked_and_a_cut_model_agree() {
    let dir = paths::require_model_dir().expect("cargo xtask fetch");
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json"), 64, Padding::Longest).unwrap();
    let dev = load_glue(&default_glue_dir(), Task::Sst2, Split::Dev, BadRows::Fail).unwrap();
    let enc = encode_examples(&tok, &dev.examples[..4]).unwrap();
    let batch = prune::data::collate(&enc.iter().collect::<Vec<_>>(), 0).unwrap();
    let b = CpuBackend::<f32>::new();
    let dense = BertForSequenceClassification::from_pretrained(b, &dir, 2, 1).unwrap();

    let mut plan = PruningPlan::new();
    plan.remove(GroupKind::Heads { layer: 2 }, 12, &[0, 2, 4, 6, 8, 10])
        .unwrap();
    plan.remove(
        GroupKind::Ffn { layer: 2 },
        1536,
        &(0..768).map(|i| 2 * i).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut masked = dense.clone();
    mask_model(&mut masked.bert, &plan).unwrap();
    let mut cut = dense.clone();
    apply(&mut cut.bert, &plan, &mut []).unwrap();

    let a = b.download(&masked.logits(&batch.inputs).unwrap()).unwrap();
    let c = b.download(&cut.logits(&batch.inputs).unwrap()).unwrap();
    assert_eq!(a.dims(), [4, 2]);
    assert!(
        a.max_abs_diff(&c) < 1e-5,
        "masked vs cut logits differ by {}",
        a.max_abs_diff(&c)
    );
    assert!(cut.bert.num_parameters() < dense.bert.num_parameters());
    assert_eq!(cut.bert.config.heads(2), 6);
    assert_eq!(cut.bert.config.intermediate(2), 768);
}
