//! Tests of reading, validating and writing `config.json`.

use super::*;
use serde_json::json;

fn base() -> Value {
    json!({
        "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 1536, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512, "type_vocab_size": 2, "vocab_size": 30522,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "some_unknown_key": [1, 2, 3]
    })
}

fn err_of(v: Value) -> String {
    BertConfig::from_json(&v).unwrap_err().to_string()
}

#[test]
fn reads_minilm_shape_and_defaults() {
    let c = BertConfig::from_json(&base()).unwrap();
    assert_eq!(
        (c.hidden(), c.head_dim(), c.heads(3), c.intermediate(5)),
        (384, 32, 12, 1536)
    );
    assert_eq!(c.labels(), 2);
    assert_eq!(c.problem(), ProblemType::SingleLabel);
    assert!(c.extra.contains_key("some_unknown_key"));
}

#[test]
fn honours_pruned_heads_and_surgery_keys() {
    let mut v = base();
    v["pruned_heads"] = json!({"0": [0, 3, 7], "4": [0,1,2,3,4,5,6,7,8,9,10,11]});
    v["prune_layer_intermediate"] = json!([1536, 100, 0, 1536, 1536, 7]);
    v["prune_hidden_size"] = json!(320);
    v["num_labels"] = json!(1);
    let c = BertConfig::from_json(&v).unwrap();
    assert_eq!(c.layer_heads, vec![9, 12, 12, 12, 0, 12]);
    assert_eq!(c.intermediate(1), 100);
    assert_eq!(c.hidden(), 320);
    assert_eq!(c.problem(), ProblemType::Regression);
    let back = BertConfig::from_json(&c.to_json()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn checkpoints_use_transformers_keys_where_they_can() {
    let mut v = base();
    v["pruned_heads"] = json!({"0": [0, 3]});
    v["prune_layer_intermediate"] = json!([384, 384, 384, 384, 384, 384]);
    let c = BertConfig::from_json(&v).unwrap();
    let saved = c.checkpoint_json(true);
    assert_eq!(saved["intermediate_size"], 384, "one width for every layer");
    assert!(saved.get("prune_layer_intermediate").is_none());
    assert!(
        saved.get("prune_layer_heads").is_none(),
        "pruned_heads says it"
    );
    assert_eq!(
        saved["architectures"],
        json!(["BertForSequenceClassification"])
    );
    assert_eq!(saved["model_type"], "bert");
    assert_eq!(saved["id2label"], json!({"0": "LABEL_0", "1": "LABEL_1"}));
    assert_eq!(saved["label2id"], json!({"LABEL_0": 0, "LABEL_1": 1}));
    let back = BertConfig::from_json(&saved).unwrap();
    assert_eq!(
        (back.layer_intermediate.clone(), back.layer_heads.clone()),
        (c.layer_intermediate.clone(), c.layer_heads.clone())
    );
    assert_eq!(
        c.checkpoint_json(false)["architectures"],
        json!(["BertModel"])
    );
    assert!(c.checkpoint_json(false).get("id2label").is_none());
}

#[test]
fn errors_name_the_key() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("vocab_size");
    assert!(err_of(v).contains("`vocab_size`: missing"));
    let mut v = base();
    v["hidden_size"] = json!(100);
    assert!(err_of(v).contains("`hidden_size`: 100 is not divisible"));
    let mut v = base();
    v["num_hidden_layers"] = json!(0);
    assert!(err_of(v).contains("`num_hidden_layers`"));
    let mut v = base();
    v["hidden_act"] = json!("swish");
    assert!(err_of(v).contains("`hidden_act`"));
    let mut v = base();
    v["num_attention_heads"] = json!("twelve");
    assert!(err_of(v).contains("`num_attention_heads`: expected a non-negative integer"));
    let mut v = base();
    v["prune_layer_heads"] = json!([12, 12]);
    assert!(err_of(v).contains("`prune_layer_heads`: has 2 entries for 6 layers"));
    let mut v = base();
    v["pruned_heads"] = json!({"9": [1]});
    assert!(err_of(v).contains("`pruned_heads`"));
    let mut v = base();
    v["hidden_dropout_prob"] = json!(1.5);
    assert!(err_of(v).contains("`hidden_dropout_prob`"));
    // Another family: named, with what is supported, before any key it spells otherwise.
    let mut v = base();
    v["model_type"] = json!("albert");
    v.as_object_mut().unwrap().remove("hidden_size");
    let e = err_of(v);
    assert!(
        e.contains(
            "`model_type`: \"albert\" is not supported (supported: bert, roberta, xlm-roberta, \
             distilbert, electra)"
        ),
        "{e}"
    );
}

#[test]
fn counts_parameters_and_refuses_absurd_sizes() {
    let c = BertConfig::new(50, 32, 2, 4, 64).unwrap();
    // Embeddings 18112, two layers of 8544, pooler 1056, classifier 66.
    assert_eq!(c.parameter_count(false, false).unwrap(), 35200);
    assert_eq!(c.parameter_count(true, true).unwrap(), 36322);
    let mut v = base();
    v["num_hidden_layers"] = json!(1u64 << 62);
    assert!(err_of(v).contains("`num_hidden_layers`: 4611686018427387904 is above the limit"));
    let mut v = base();
    v["prune_layer_intermediate"] = json!([1536, 1536, 1536, 1536, 1536, 1u64 << 40]);
    assert!(err_of(v).contains("`prune_layer_intermediate`: 1099511627776 is above the limit"));
    let mut v = base();
    v["attention_head_size"] = json!(1u64 << 24);
    assert!(err_of(v).contains(
        "`num_attention_heads`: `encoder.layer.0.attention.self.query.weight` of shape \
         [201326592, 384] takes the model above"
    ));
}

#[test]
fn electra_keeps_the_width_of_its_embeddings() {
    let mut v = base();
    v["model_type"] = json!("electra");
    v["embedding_size"] = json!(128);
    let c = BertConfig::from_json(&v).unwrap();
    assert!(c.projects_embeddings());
    assert_eq!((c.embedding_width(), c.hidden()), (128, 384));
    assert!(!c.extra.contains_key("embedding_size"));
    let mut pruned = c.clone();
    pruned.kept_embedding_size = 100;
    pruned.kept_hidden_size = 300;
    let json = pruned.to_json();
    assert_eq!(
        (&json["embedding_size"], &json["prune_embedding_size"]),
        (&json!(128), &json!(100))
    );
    assert_eq!(BertConfig::from_json(&json).unwrap(), pruned);
    // transformers' default, and no projection when the widths agree.
    v.as_object_mut().unwrap().remove("embedding_size");
    assert_eq!(BertConfig::from_json(&v).unwrap().embedding_width(), 128);
    v["embedding_size"] = json!(384);
    let same = BertConfig::from_json(&v).unwrap();
    assert!(!same.projects_embeddings());
    v["prune_embedding_size"] = json!(100);
    assert!(err_of(v.clone()).contains("only a model whose embeddings are projected"));
    v["embedding_size"] = json!(128);
    v["prune_embedding_size"] = json!(129);
    assert!(err_of(v).contains("`prune_embedding_size`: 129 exceeds embedding_size = 128"));
    // Another family's `embedding_size` is a key this crate does not interpret.
    let mut v = base();
    v["embedding_size"] = json!(128);
    let c = BertConfig::from_json(&v).unwrap();
    assert!(!c.projects_embeddings() && c.extra.contains_key("embedding_size"));
}
