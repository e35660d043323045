//! Checkpoints: reading Hugging Face weights of a BERT-family model (named as its
//! [`Family`] names them) from safetensors or from PyTorch's `pytorch_model.bin` (f32, f16,
//! bf16 or f64, with or without the model prefix, LayerNorm as `weight`/`bias` or `gamma`/`beta`) into a host
//! parameter tree checked against the config, and writing one back atomically in the same
//! layout. A file is checked against the config from its header alone, before any tensor is
//! read; NaN and infinity are refused when loading and when saving.

use crate::config::BertConfig;
use crate::error::{Result, TransformerError, one_line};
use crate::family::Family;
use crate::params::BertParams;
use crate::tensor_file::{TensorFile, is_float, to_f32};
use crate::torch_file::{TorchFile, is_torch_zip};
use prune_tensor::{Shape, Tensor};
use safetensors::tensor::TensorInfo;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub use crate::tensor_file::{
    RawTensor, bf16_to_f32, f16_to_f32, save_tensors, write_atomic, write_safetensors,
};

/// A host parameter tree in f32, as read from or written to a checkpoint.
pub type HostParams = BertParams<Tensor<f32>>;

/// Every floating-point tensor of a safetensors file as f32, by its stored name; other
/// dtypes (e.g. `embeddings.position_ids`) are skipped. A NaN or infinite value is an error
/// naming the tensor.
pub fn read_float_tensors(path: &Path) -> Result<BTreeMap<String, Tensor<f32>>> {
    let file = TensorFile::open(path)?;
    let infos: Vec<(String, TensorInfo)> = file
        .metadata
        .tensors()
        .into_iter()
        .filter(|(_, info)| is_float(info.dtype))
        .map(|(name, info)| (name, info.clone()))
        .collect();
    let data = file.read_data()?;
    infos
        .into_iter()
        .map(|(name, info)| Ok((name.clone(), to_f32(path, &name, &info, &data)?)))
        .collect()
}

/// The stored names of a file by the tree parameter they provide ([`Family::tree_name`]),
/// sorted; names the family does not read are left out.
type NameIndex<'a> = HashMap<String, Vec<&'a str>>;

fn name_index<'a>(family: Family, names: impl IntoIterator<Item = &'a String>) -> NameIndex<'a> {
    let mut index: NameIndex<'a> = HashMap::new();
    for n in names {
        if let Some(tree) = family.tree_name(n) {
            index.entry(tree).or_default().push(n.as_str());
        }
    }
    index.values_mut().for_each(|v| v.sort_unstable());
    index
}

/// The stored name that provides canonical parameter `name`, if any. A parameter stored
/// under two names (`bert.X` and `X`, or `gamma` and `weight`) is an error naming both:
/// which one was read would otherwise depend on hash order.
fn stored_name<'a>(path: &Path, index: &NameIndex<'a>, name: &str) -> Result<Option<&'a str>> {
    match index.get(name).map(Vec::as_slice) {
        None | Some([]) => Ok(None),
        Some([one]) => Ok(Some(one)),
        Some([first, second, ..]) => Err(TransformerError::checkpoint(
            path,
            format!(
                "parameter `{name}` is stored twice, as `{}` and as `{}`",
                one_line(first),
                one_line(second)
            ),
        )),
    }
}

/// A missing tensor or a wrong shape, described without the file's path.
fn difference(e: &TransformerError) -> Option<String> {
    match e {
        TransformerError::MissingTensor { name, expected, .. } => {
            Some(format!("missing tensor `{name}` of shape {expected}"))
        }
        TransformerError::TensorShape {
            name,
            expected,
            found,
        } => Some(format!(
            "tensor `{name}` has shape {found}, the config implies {expected}"
        )),
        _ => None,
    }
}

/// Reads the parameters a model with `config` needs from `path`. The file's header is
/// checked first, before any tensor is read or allocated (see `plan`). The pooler and the
/// classifier are read when the file has them (`pooler.dense.weight`, `classifier.weight`);
/// tensors no parameter uses (masked-LM heads, `position_ids`) are ignored.
pub fn load_params(path: &Path, config: &BertConfig) -> Result<HostParams> {
    config.validate()?;
    let (plan, data) = if is_torch_zip(path)? {
        let file = TorchFile::open(path)?;
        let plan = plan(
            path,
            config,
            &file.infos.iter().map(|(n, i)| (n.clone(), i)).collect(),
        )?;
        (plan, file.read_data()?)
    } else {
        let file = TensorFile::open(path)?;
        let plan = plan(path, config, &file.metadata.tensors())?;
        (plan, file.read_data()?)
    };
    plan.try_map(|_, (stored, info)| to_f32(path, stored, info, &data))
}

/// The weights file of the checkpoint folder `dir`: `model.safetensors`, else
/// `pytorch_model.bin` (PyTorch's zip format, read without running its pickle).
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    let found = WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        TransformerError::checkpoint(
            dir,
            format!("holds neither {} nor {}", WEIGHT_FILES[0], WEIGHT_FILES[1]),
        )
    })
}

/// The weights files a checkpoint folder may hold, the preferred first.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// The stored name and header entry of every parameter a model with `config` needs, from a
/// file's header (`infos`, by stored name): each parameter stored once, with the shape the
/// config implies and a float dtype. When something is missing or misshapen and the file
/// holds fewer values than the config describes, the error says so with both counts.
fn plan(
    path: &Path,
    config: &BertConfig,
    infos: &HashMap<String, &TensorInfo>,
) -> Result<BertParams<(String, TensorInfo)>> {
    let index = name_index(config.family, infos.keys());
    let has = |n: &str| index.contains_key(n);
    let (pooler, classifier) = (
        has("pooler.dense.weight"),
        has("classifier.weight") || has("classifier.bias"),
    );
    let expected = BertParams::expected(config, pooler, classifier);
    let plan = expected.try_map(|name, shape| {
        if !config.family.stores(name) {
            // An empty table (DistilBERT's token types): read as nothing.
            let info = TensorInfo {
                dtype: safetensors::Dtype::F32,
                shape: shape.dims().to_vec(),
                data_offsets: (0, 0),
            };
            return Ok((String::new(), info));
        }
        let stored =
            stored_name(path, &index, name)?.ok_or_else(|| TransformerError::MissingTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                expected: shape.clone(),
            })?;
        let info = infos[stored];
        let found = Shape::from(info.shape.as_slice());
        if &found != shape {
            return Err(TransformerError::TensorShape {
                name: name.to_string(),
                expected: shape.clone(),
                found,
            });
        }
        if !is_float(info.dtype) {
            return Err(TransformerError::Dtype {
                path: path.to_path_buf(),
                name: one_line(stored).into_owned(),
                dtype: format!("{:?}", info.dtype),
            });
        }
        Ok((stored.to_string(), info.clone()))
    });
    plan.map_err(|e| {
        let needed = config.parameter_count(pooler, classifier);
        let held: u64 = infos
            .values()
            .filter(|info| is_float(info.dtype))
            .map(|info| info.shape.iter().product::<usize>() as u64)
            .fold(0, u64::saturating_add);
        match (needed, difference(&e)) {
            (Ok(needed), Some(first)) if held < needed => TransformerError::checkpoint(
                path,
                format!(
                    "the config describes {needed} parameter values ({} layers, hidden size \
                     {}, vocabulary {}) but the file's float tensors hold only {held}: the \
                     config does not describe this checkpoint (first difference: {first})",
                    config.num_hidden_layers, config.hidden_size, config.vocab_size
                ),
            ),
            _ => e,
        }
    })
}

/// Writes `params` to a safetensors file in f32, under `family`'s transformers names
/// ([`Family::stored_name`]): for BERT, with the `bert.` prefix on encoder parameters when a
/// classifier is present (the layout of `BertForSequenceClassification`), without it
/// otherwise (`BertModel`). Parameters holding NaN or infinity are refused (nothing is
/// written).
pub fn save_params(path: &Path, params: &HostParams, family: Family) -> Result<()> {
    let prefixed = params.classifier.is_some();
    let named: Vec<(String, &Tensor<f32>)> = params
        .named()
        .into_iter()
        .filter_map(|(name, t)| Some((family.stored_name(&name, prefixed)?, t)))
        .collect();
    save_tensors(path, &named)
}

/// Writes `config` as the pretty JSON of a checkpoint with a classification head when
/// `classifier` ([`BertConfig::checkpoint_json`]), atomically.
pub fn save_config(path: &Path, config: &BertConfig, classifier: bool) -> Result<()> {
    let json = config.checkpoint_json(classifier);
    let text = serde_json::to_string_pretty(&json).map_err(|cause| TransformerError::Json {
        path: path.to_path_buf(),
        cause,
    })?;
    write_atomic(path, text.as_bytes())
}
