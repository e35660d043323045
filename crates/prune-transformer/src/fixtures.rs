//! The reference fixtures of `<fixtures>/minilm/` (outputs of PyTorch + transformers, see
//! the fixtures README), read for the tests of every crate: the fixture's model (the default
//! checkpoint with the fixture's classification head, dropout 0), its batch and its JSON
//! files.

use crate::batch::Batch;
use crate::config::BertConfig;
use crate::error::{Result, TransformerError};
use crate::model::{BertModel, classifier_from_tensors};
use crate::paths::{require_fixture, require_model_dir};
use crate::weights::{load_params, read_float_tensors, weights_file};
use prune_tensor::{Backend, CpuBackend};
use serde_json::Value;
use std::path::PathBuf;

/// `<fixtures>/minilm/<file>`, or an error saying how to fetch it.
pub fn fixture(file: &str) -> Result<PathBuf> {
    require_fixture(&format!("minilm/{file}"))
}

/// The JSON file `<fixtures>/minilm/<file>`.
pub fn fixture_json(file: &str) -> Result<Value> {
    let path = fixture(file)?;
    let text = std::fs::read_to_string(&path).map_err(|e| TransformerError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|cause| TransformerError::Json { path, cause })
}

/// The default checkpoint with the fixture's 2-label head and dropout 0: the model the
/// fixtures were computed with.
pub fn fixture_model() -> Result<BertModel<CpuBackend<f32>>> {
    fixture_model_on(CpuBackend::new())
}

/// [`fixture_model`] on backend `b` (e.g. a GPU, for CPU/GPU parity).
pub fn fixture_model_on<B: Backend>(b: B) -> Result<BertModel<B>> {
    let dir = require_model_dir()?;
    let mut config = BertConfig::from_file(&dir.join("config.json"))?;
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config.num_labels = Some(2);
    let mut host = load_params(&weights_file(&dir)?, &config)?;
    let head = read_float_tensors(&fixture("head.safetensors")?)?;
    host.classifier = Some(classifier_from_tensors(&head)?);
    BertModel::from_host(b, config, &host)
}

/// Non-negative integers of a JSON array.
fn ints(v: &Value, what: &str) -> Result<Vec<u32>> {
    let bad = || {
        TransformerError::Input(format!(
            "fixture inputs.json: `{what}` is not a list of ids"
        ))
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|x| x.as_u64().map(|x| x as u32).ok_or_else(bad))
        .collect()
}

/// The fixture batch of `inputs.json` (4 examples × 32 tokens) and its labels.
pub fn fixture_batch() -> Result<(Batch, Vec<i64>)> {
    let v = fixture_json("inputs.json")?;
    let bad = |what: &str| TransformerError::Input(format!("fixture inputs.json: bad `{what}`"));
    let seq = v["max_len"].as_u64().ok_or_else(|| bad("max_len"))? as usize;
    let ex = v["examples"].as_array().ok_or_else(|| bad("examples"))?;
    let (mut ids, mut types, mut mask, mut labels) = (vec![], vec![], vec![], vec![]);
    for e in ex {
        ids.extend(ints(&e["input_ids"], "input_ids")?);
        types.extend(ints(&e["token_type_ids"], "token_type_ids")?);
        mask.extend(ints(&e["attention_mask"], "attention_mask")?);
        labels.push(e["label"].as_i64().ok_or_else(|| bad("label"))?);
    }
    Ok((Batch::new(ex.len(), seq, ids, types, mask)?, labels))
}
