//! Shared helpers of the integration tests: the default checkpoint with the fixture's
//! classification head, and the fixture batch.
#![allow(dead_code)]

use anyhow::{Context, Result};
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::paths::{require_fixture, require_model_dir};
use prune_transformer::{
    Batch, BertConfig, BertModel, classifier_from_tensors, load_params, read_float_tensors,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `<fixtures>/minilm/<file>`, failing with the fetch hint when absent.
pub fn fixture(file: &str) -> Result<PathBuf> {
    Ok(require_fixture(&format!("minilm/{file}"))?)
}

/// The default checkpoint with the fixture's head, dropout 0 (the fixture's model).
pub fn fixture_model() -> Result<BertModel<CpuBackend<f32>>> {
    let dir = require_model_dir()?;
    let mut config = BertConfig::from_file(&dir.join("config.json"))?;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config.num_labels = Some(2);
    let mut host = load_params(&dir.join("model.safetensors"), &config)?;
    let head = read_float_tensors(&fixture("head.safetensors")?)?;
    host.classifier = Some(classifier_from_tensors(&head)?);
    Ok(BertModel::from_host(CpuBackend::new(), config, &host)?)
}

/// The examples of `inputs.json`.
pub fn inputs() -> Result<serde_json::Value> {
    let path = fixture("inputs.json")?;
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}

fn ints(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The fixture batch (4 × 32) and its labels.
pub fn fixture_batch() -> Result<(Batch, Vec<i64>)> {
    let v = inputs()?;
    let seq = v["max_len"].as_u64().unwrap() as usize;
    let ex = v["examples"].as_array().unwrap();
    let (mut ids, mut types, mut mask, mut labels) = (vec![], vec![], vec![], vec![]);
    for e in ex {
        ids.extend(ints(&e["input_ids"]));
        types.extend(ints(&e["token_type_ids"]));
        mask.extend(ints(&e["attention_mask"]));
        labels.push(e["label"].as_i64().unwrap());
    }
    Ok((Batch::new(ex.len(), seq, ids, types, mask)?, labels))
}

/// Float tensors of `reference.safetensors`.
pub fn reference() -> Result<BTreeMap<String, Tensor<f32>>> {
    Ok(read_float_tensors(&fixture("reference.safetensors")?)?)
}

/// An i64 tensor of `reference.safetensors`.
pub fn reference_i64(name: &str) -> Result<Vec<i64>> {
    let bytes = std::fs::read(fixture("reference.safetensors")?)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let t = st.tensor(name)?;
    Ok(t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect())
}
