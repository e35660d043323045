//! Tokenizing a real GLUE split once, unpadded, and batching it dynamically.

use prune_data::{
    BadRows, BatchOrder, Split, Task, collate, default_glue_dir, encode_examples, load_glue,
};
use prune_transformer::{Padding, Tokenizer, paths};

#[test]
fn encodes_each_example_as_the_tokenizer_does_alone_and_pads_per_batch() {
    let model = paths::require_model_dir().unwrap();
    let tok = Tokenizer::from_file(&model.join("tokenizer.json"), 64, Padding::Longest).unwrap();
    let rte = load_glue(&default_glue_dir(), Task::Rte, Split::Dev, BadRows::Fail).unwrap();
    let enc = encode_examples(&tok, &rte.examples).unwrap();
    assert_eq!(enc.len(), rte.examples.len());
    assert!(
        enc.iter()
            .all(|e| e.ids.len() <= 64 && e.ids[0] == 101 && *e.ids.last().unwrap() == 102)
    );
    assert!(
        enc.iter().any(|e| e.ids.len() == 64),
        "long pairs are truncated to the max length"
    );
    for i in [0, 5, 100, 276] {
        let e = &rte.examples[i];
        let alone = tok.encode(&[(&e.text_a, e.text_b.as_deref())]).unwrap();
        assert_eq!(enc[i].ids, alone.input_ids, "example {i}");
        assert_eq!(enc[i].type_ids, alone.token_type_ids, "example {i}");
    }
    let lengths: Vec<usize> = enc.iter().map(|e| e.ids.len()).collect();
    let order = BatchOrder {
        batch_size: 16,
        shuffle: Some(1),
        bucket_by_length: true,
    };
    for idx in order.batches(&lengths, 0).unwrap() {
        let members: Vec<_> = idx.iter().map(|&i| &enc[i]).collect();
        let b = collate(&members, 0).unwrap();
        assert_eq!(b.inputs.seq, idx.iter().map(|&i| lengths[i]).max().unwrap());
    }
}
