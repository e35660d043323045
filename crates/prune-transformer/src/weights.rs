//! Safetensors checkpoints: reading Hugging Face BERT weights (f32, f16 or bf16, with or
//! without the `bert.` prefix) into a host parameter tree checked against the config, and
//! writing one back atomically in the same layout.

use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::params::{BERT_PREFIX, BertParams, canonical_name};
use prune_tensor::{Shape, Tensor};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A host parameter tree in f32, as read from or written to a checkpoint.
pub type HostParams = BertParams<Tensor<f32>>;

/// Reads a whole file, naming it in the error.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|source| Error::Safetensors {
        path: path.to_path_buf(),
        source,
    })
}

/// IEEE half precision to f32 (normals, subnormals, infinities and NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * (1.0 / (1u32 << 24) as f32);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 to f32 (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Whether `dtype` holds floats this crate can read.
fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// The elements of a float tensor view as f32 (f16/bf16 upcast, f64 rounded).
fn to_f32(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Tensor<f32>> {
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => {
            return Err(Error::Dtype {
                path: path.to_path_buf(),
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Ok(Tensor::new(view.shape().to_vec(), values)?)
}

/// Every floating-point tensor of a safetensors file as f32, by its stored name; other
/// dtypes (e.g. `embeddings.position_ids`) are skipped.
pub fn read_float_tensors(path: &Path) -> Result<BTreeMap<String, Tensor<f32>>> {
    let bytes = read_file(path)?;
    let st = parse(path, &bytes)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if is_float(view.dtype()) {
            let t = to_f32(path, &name, &view)?;
            out.insert(name, t);
        }
    }
    Ok(out)
}

/// The stored name that provides canonical parameter `name`: the name itself, with the
/// `bert.` prefix, or with LayerNorm's old `gamma`/`beta` spelling.
fn stored_name<'a>(index: &HashMap<String, &'a str>, name: &str) -> Option<&'a str> {
    let mut candidates = vec![name.to_string()];
    if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
        candidates.push(format!("{stem}LayerNorm.gamma"));
    }
    if let Some(stem) = name.strip_suffix("LayerNorm.bias") {
        candidates.push(format!("{stem}LayerNorm.beta"));
    }
    candidates.iter().find_map(|c| index.get(c).copied())
}

/// Reads the parameters a model with `config` needs from `path`, checking every shape.
/// The pooler and the classifier are read when the file has them (`pooler.dense.weight`,
/// `classifier.weight`); tensors no parameter uses (masked-LM heads, `position_ids`) are
/// ignored.
pub fn load_params(path: &Path, config: &BertConfig) -> Result<HostParams> {
    let bytes = read_file(path)?;
    let st = parse(path, &bytes)?;
    let names = st.names();
    let index: HashMap<String, &str> = names
        .iter()
        .map(|n| (canonical_name(n).to_string(), *n))
        .collect();
    let has = |n: &str| stored_name(&index, n).is_some();
    let expected = BertParams::expected(
        config,
        has("pooler.dense.weight"),
        has("classifier.weight") || has("classifier.bias"),
    );
    expected.try_map(|name, shape| {
        let stored = stored_name(&index, name).ok_or_else(|| Error::MissingTensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            expected: shape.clone(),
        })?;
        let view = st.tensor(stored).map_err(|source| Error::Safetensors {
            path: path.to_path_buf(),
            source,
        })?;
        let found = Shape::from(view.shape());
        if &found != shape {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: shape.clone(),
                found,
            });
        }
        to_f32(path, name, &view)
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so a crash never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp: PathBuf = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Writes `params` to a safetensors file in f32, under transformers' names: with the
/// `bert.` prefix on encoder parameters when a classifier is present (the layout of
/// `BertForSequenceClassification`), without it otherwise (`BertModel`).
pub fn save_params(path: &Path, params: &HostParams) -> Result<()> {
    let prefixed = params.classifier.is_some();
    let named = params.named();
    let mut buffers: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(named.len());
    for (name, t) in named {
        let stored = if prefixed && !name.starts_with("classifier.") {
            format!("{BERT_PREFIX}{name}")
        } else {
            name
        };
        let bytes: Vec<u8> = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((stored, bytes, t.dims().to_vec()));
    }
    let views = buffers
        .iter()
        .map(|(n, b, s)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.as_str(), v))
                .map_err(|source| Error::Safetensors {
                    path: path.to_path_buf(),
                    source,
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let bytes = safetensors::serialize(views, metadata).map_err(|source| Error::Safetensors {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Writes `config` as pretty JSON, atomically.
pub fn save_config(path: &Path, config: &BertConfig) -> Result<()> {
    let text = serde_json::to_string_pretty(&config.to_json()).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversions() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }
}
