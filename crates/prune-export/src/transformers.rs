//! A checkpoint transformers loads as it is, for shapes its BERT cannot express by itself:
//! FFN widths that differ between layers are zero-padded to the widest (the padded
//! neurons have zero weights and bias, so GELU gives 0 and the model computes what it did).
//! A pruned hidden width has no such form: transformers' BERT has one width for the
//! embeddings, every layer and the pooler. ELECTRA's embedding width under its projection
//! is its own key, `embedding_size`.

use crate::error::{ExportError, Result};
use prune_tensor::Tensor;
use prune_transformer::{BertConfig, HostParams};
use std::collections::BTreeSet;

/// `t` `[rows, cols]` with zero rows added up to `rows_to` and zero columns up to
/// `cols_to` (a bias `[n]` is padded with zeros to `rows_to`).
fn padded(t: &Tensor<f32>, rows_to: usize, cols_to: usize) -> Result<Tensor<f32>> {
    let dims = t.dims();
    let (rows, cols) = (dims[0], dims.get(1).copied().unwrap_or(1));
    let mut data = vec![0.0; rows_to * cols_to];
    for (r, row) in t.data().chunks(cols.max(1)).enumerate().take(rows) {
        data[r * cols_to..r * cols_to + cols].copy_from_slice(row);
    }
    let shape = if dims.len() == 1 {
        vec![rows_to]
    } else {
        vec![rows_to, cols_to]
    };
    Ok(Tensor::new(shape, data).map_err(prune_transformer::TransformerError::from)?)
}

/// The configuration and parameters of a transformers checkpoint computing what `params`
/// (of `config`) computes, or why transformers cannot hold it.
pub fn to_transformers(
    config: &BertConfig,
    params: &HostParams,
) -> Result<(BertConfig, HostParams)> {
    if config.hidden() != config.hidden_size {
        return Err(ExportError::Unsupported(format!(
            "the hidden width is pruned ({} of {}): transformers' BERT has one width for the \
             embeddings, every layer and the pooler, so it cannot hold this model; export it \
             with --format onnx",
            config.hidden(),
            config.hidden_size
        )));
    }
    if config.hidden_size % config.num_attention_heads != 0
        || config.head_dim() != config.hidden_size / config.num_attention_heads
    {
        return Err(ExportError::Unsupported(format!(
            "the head size {} is not hidden_size / num_attention_heads, which transformers \
             assumes; export it with --format onnx",
            config.head_dim()
        )));
    }
    for l in 0..config.num_hidden_layers {
        let removed = config.pruned_heads.get(&l).map_or(0, BTreeSet::len);
        if config.heads(l) + removed != config.num_attention_heads {
            return Err(ExportError::Unsupported(format!(
                "layer {l} keeps {} heads but pruned_heads names {removed} of {} removed, so \
                 transformers would build other shapes; export it with --format onnx",
                config.heads(l),
                config.num_attention_heads
            )));
        }
    }
    let widest = config.layer_intermediate.iter().copied().max().unwrap_or(0);
    let mut out = params.clone();
    let c = config.hidden();
    for layer in &mut out.layers {
        layer.intermediate.weight = padded(&layer.intermediate.weight, widest, c)?;
        layer.intermediate.bias = padded(&layer.intermediate.bias, widest, 1)?;
        layer.output.weight = padded(&layer.output.weight, c, widest)?;
    }
    let mut cfg = config.clone();
    cfg.layer_intermediate = vec![widest; config.num_hidden_layers];
    cfg.intermediate_size = widest;
    if config.projects_embeddings() {
        // ELECTRA builds `embeddings_project` only when `embedding_size` ≠ `hidden_size`.
        if config.kept_embedding_size == config.hidden_size {
            return Err(ExportError::Unsupported(format!(
                "the embedding width is pruned to the hidden width ({}), where transformers' \
                 ELECTRA has no embeddings projection; export it with --format onnx",
                config.hidden_size
            )));
        }
        cfg.embedding_size = config.kept_embedding_size;
    }
    Ok((cfg, out))
}
