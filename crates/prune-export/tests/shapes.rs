//! The exports without ONNX Runtime: the ONNX graph is well formed (typed inputs and output,
//! opset 17, every node input defined before use, weights with the checkpoint's shapes), and
//! the transformers export pads uneven FFN widths without changing the logits and refuses
//! what transformers cannot hold.

use prost::Message;
use prune_export::proto::ModelProto;
use prune_export::{ExportError, OPSET, to_onnx, to_transformers};
use prune_tensor::rng::Rng;
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::{Batch, BertConfig, BertForSequenceClassification, BertModel, HostParams};
use serde_json::json;
use std::collections::BTreeSet;

/// A tiny classifier with `extra` config keys and every parameter random.
fn tiny(extra: serde_json::Value) -> (BertConfig, HostParams) {
    let mut v = json!({
        "vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4,
        "intermediate_size": 24, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 20, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "num_labels": 3
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    let config = BertConfig::from_json(&v).unwrap();
    let model = BertModel::random(CpuBackend::<f32>::new(), config.clone(), true, true, 7).unwrap();
    let mut rng = Rng::new(5);
    let host = model.to_host().unwrap().map(|_, t: &Tensor<f32>| {
        Tensor::from_fn(t.dims().to_vec(), |_| (rng.normal() * 0.5) as f32)
    });
    (config, host)
}

fn logits(config: &BertConfig, host: &HostParams) -> Vec<f32> {
    let bert = BertModel::from_host(CpuBackend::new(), config.clone(), host).unwrap();
    let model = BertForSequenceClassification::new(bert).unwrap();
    let ids = (0..12).map(|i| (i * 7 % 40) as u32).collect();
    let batch = Batch::new(2, 6, ids, vec![0; 12], vec![1; 12]).unwrap();
    model.logits(&batch).unwrap().data().to_vec()
}

#[test]
fn the_onnx_graph_is_well_formed() {
    let uneven = json!({"pruned_heads": {"0": [3], "1": [0, 1, 2, 3]}, "prune_layer_intermediate": [24, 5, 0]});
    let (config, host) = tiny(uneven);
    let model = ModelProto::decode(to_onnx(&config, &host).unwrap().as_slice()).unwrap();
    assert_eq!(model.opset_import[0].version, OPSET);
    let g = model.graph.unwrap();
    let names = |v: &[prune_export::proto::ValueInfoProto]| {
        v.iter().map(|i| i.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(&g.input),
        ["input_ids", "attention_mask", "token_type_ids"]
    );
    assert_eq!(names(&g.output), ["logits"]);
    let mut defined: BTreeSet<String> = names(&g.input).into_iter().collect();
    defined.extend(g.initializer.iter().map(|t| t.name.clone()));
    for node in &g.node {
        for input in &node.input {
            assert!(
                defined.contains(input),
                "{} reads {input} before it exists",
                node.op_type
            );
        }
        defined.extend(node.output.iter().cloned());
    }
    assert!(defined.contains("logits"));
    let dims = |name: &str| {
        g.initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.dims.clone())
            .unwrap()
    };
    // MatMul weights are stored [in, out]; a layer without heads keeps only its bias.
    assert_eq!(
        dims("bert.encoder.layer.0.attention.self.query.weight"),
        [16, 12]
    );
    assert_eq!(
        dims("bert.encoder.layer.1.intermediate.dense.weight"),
        [16, 5]
    );
    assert!(
        g.initializer
            .iter()
            .all(|t| !t.name.contains("layer.1.attention.self"))
    );
    assert!(
        g.initializer
            .iter()
            .all(|t| !t.name.contains("layer.2.intermediate"))
    );
}

#[test]
fn uneven_ffn_widths_are_padded_for_transformers_without_changing_the_logits() {
    let (config, host) =
        tiny(json!({"prune_layer_intermediate": [24, 5, 0], "pruned_heads": {"0": [2]}}));
    let (cfg, padded) = to_transformers(&config, &host).unwrap();
    assert_eq!(
        (cfg.intermediate_size, cfg.layer_intermediate.clone()),
        (24, vec![24; 3])
    );
    let saved = cfg.checkpoint_json(true);
    assert!(saved.get("prune_layer_intermediate").is_none(), "{saved}");
    assert_eq!(saved["pruned_heads"], json!({"0": [2]}));
    let (a, b) = (logits(&config, &host), logits(&cfg, &padded));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-5, "padding changed the logits by {worst}");
}

#[test]
fn a_narrower_electra_embedding_width_is_its_own_key_for_transformers() {
    let electra = json!({"model_type": "electra", "embedding_size": 24, "prune_embedding_size": 9});
    let (config, host) = tiny(electra);
    let (cfg, params) = to_transformers(&config, &host).unwrap();
    let saved = cfg.checkpoint_json(true);
    assert_eq!(
        (&saved["embedding_size"], saved.get("prune_embedding_size")),
        (&json!(9), None)
    );
    assert_eq!(logits(&config, &host), logits(&cfg, &params));
}

#[test]
fn shapes_transformers_cannot_hold_are_refused_naming_onnx() {
    let (config, host) = tiny(json!({"prune_hidden_size": 12}));
    match to_transformers(&config, &host) {
        Err(ExportError::Unsupported(why)) => {
            assert!(
                why.contains("hidden width is pruned (12 of 16)") && why.contains("onnx"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // ELECTRA's embedding width cut to the hidden width: transformers would build no
    // projection.
    let electra =
        json!({"model_type": "electra", "embedding_size": 24, "prune_embedding_size": 16});
    let (config, host) = tiny(electra);
    match to_transformers(&config, &host) {
        Err(ExportError::Unsupported(why)) => {
            assert!(why.contains("no embeddings projection"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let (config, mut host) = tiny(json!({}));
    host.classifier = None;
    assert!(matches!(to_onnx(&config, &host), Err(ExportError::NoHead)));
}
