//! Shared helpers of the integration tests: the default checkpoint with the fixture's
//! classification head, and the fixture batch.
#![allow(dead_code)]

use anyhow::Result;
use prune_tensor::Tensor;
use prune_transformer::read_float_tensors;
use std::collections::BTreeMap;

pub use prune_transformer::fixtures::{fixture, fixture_batch, fixture_model};

/// The examples of `inputs.json`.
pub fn inputs() -> Result<serde_json::Value> {
    Ok(prune_transformer::fixtures::fixture_json("inputs.json")?)
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
