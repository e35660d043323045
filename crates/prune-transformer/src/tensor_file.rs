//! Safetensors files at the byte level: the header read on its own (so that a checkpoint can
//! be checked against a configuration before any of its data is read), the data, float
//! tensors as f32 (required finite), and atomic writes of f32 tensors (which refuse NaN and
//! infinity).

use crate::error::{Result, TransformerError, one_line};
use prune_tensor::Tensor;
use safetensors::tensor::{Dtype, Metadata, TensorInfo, TensorView};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Longest header the safetensors format allows (the limit of the `safetensors` crate).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// An open safetensors file whose header has been read and checked; its data is not read
/// until [`TensorFile::read_data`].
pub(crate) struct TensorFile {
    path: PathBuf,
    file: File,
    /// Every tensor's dtype, shape and offsets, validated by the `safetensors` crate
    /// (contiguous offsets, each span the size its dtype and shape imply).
    pub(crate) metadata: Metadata,
}

impl TensorFile {
    /// Opens `path` and reads its header. Fails unless the file is exactly the header and
    /// the data the header describes.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let invalid = |why: String| TransformerError::Safetensors {
            path: path.to_path_buf(),
            why,
        };
        let mut file = File::open(path).map_err(|e| TransformerError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| TransformerError::io(path, e))?
            .len();
        if len < 8 {
            return Err(invalid(format!("{len} bytes, too short for a header")));
        }
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix)
            .map_err(|e| TransformerError::io(path, e))?;
        let n = u64::from_le_bytes(prefix);
        if n > MAX_HEADER_BYTES || n > len - 8 {
            return Err(invalid(format!(
                "header length {n} does not fit (file of {len} bytes, limit {MAX_HEADER_BYTES})"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| TransformerError::io(path, e))?;
        let metadata: Metadata =
            serde_json::from_slice(&header).map_err(|e| invalid(format!("header: {e}")))?;
        let held = len - 8 - n;
        if metadata.data_len() as u64 != held {
            return Err(invalid(format!(
                "the header describes {} bytes of tensor data, the file holds {held}",
                metadata.data_len()
            )));
        }
        Ok(TensorFile {
            path: path.to_path_buf(),
            file,
            metadata,
        })
    }

    /// Reads the tensor data (everything after the header).
    pub(crate) fn read_data(mut self) -> Result<Vec<u8>> {
        let len = self.metadata.data_len();
        let mut data = tensor_buffer(&self.path, len)?;
        (&mut self.file)
            .take(len as u64)
            .read_to_end(&mut data)
            .map_err(|e| TransformerError::io(&self.path, e))?;
        if data.len() != len {
            return Err(TransformerError::checkpoint(
                &self.path,
                format!(
                    "the file shrank while being read ({} of {len} bytes)",
                    data.len()
                ),
            ));
        }
        Ok(data)
    }
}

/// An empty buffer with room for the `len` bytes of tensor data of the checkpoint at `path`,
/// or an error saying they do not fit in memory.
pub(crate) fn tensor_buffer(path: &Path, len: usize) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| {
        TransformerError::checkpoint(
            path,
            format!("{len} bytes of tensor data do not fit in memory"),
        )
    })?;
    Ok(data)
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
pub(crate) fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// Index and value of the first element that is NaN or infinite.
fn first_non_finite(values: &[f32]) -> Option<(usize, f32)> {
    values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .map(|(i, &v)| (i, v))
}

/// The stored tensor `name` (described by `info`, its bytes in the file's `data`) as f32:
/// f16/bf16 upcast, f64 rounded. An error names the tensor when its dtype is not a float
/// one, and names it with the first index when a value is NaN or infinite (or, from f64,
/// beyond the range of f32).
pub(crate) fn to_f32(
    path: &Path,
    name: &str,
    info: &TensorInfo,
    data: &[u8],
) -> Result<Tensor<f32>> {
    let (start, end) = info.data_offsets;
    let name = one_line(name);
    let bytes = data.get(start..end).ok_or_else(|| {
        TransformerError::checkpoint(
            path,
            format!("tensor `{name}`: offsets {start}..{end} outside the data"),
        )
    })?;
    let values: Vec<f32> = match info.dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => {
            return Err(TransformerError::Dtype {
                path: path.to_path_buf(),
                name: name.into_owned(),
                dtype: format!("{other:?}"),
            });
        }
    };
    if let Some((i, v)) = first_non_finite(&values) {
        let stored = match info.dtype {
            Dtype::F64 => bytes
                .chunks_exact(8)
                .nth(i)
                .and_then(|b| b.try_into().ok())
                .map_or(v as f64, f64::from_le_bytes),
            _ => v as f64,
        };
        let what = if stored.is_finite() {
            format!("{stored:e}, beyond the range of f32,")
        } else {
            stored.to_string()
        };
        return Err(TransformerError::checkpoint(
            path,
            format!("tensor `{name}` holds {what} at index {i}: weights must be finite"),
        ));
    }
    Ok(Tensor::new(info.shape.clone(), values)?)
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
        return Err(TransformerError::io(path, e));
    }
    Ok(())
}

/// Writes named f32 tensors to a safetensors file (PyTorch format metadata), atomically.
/// A tensor holding NaN or infinity is refused, naming it and the first such index, before
/// anything is written.
pub fn save_tensors(path: &Path, tensors: &[(String, &Tensor<f32>)]) -> Result<()> {
    for (name, t) in tensors {
        if let Some((i, v)) = first_non_finite(t.data()) {
            return Err(TransformerError::checkpoint(
                path,
                format!(
                    "not saved: tensor `{}` holds {v} at index {i}",
                    one_line(name)
                ),
            ));
        }
    }
    let raw: Vec<RawTensor> = tensors
        .iter()
        .map(|(name, t)| RawTensor {
            name: name.as_str(),
            dtype: Dtype::F32,
            shape: t.dims().to_vec(),
            bytes: t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(path, &raw, metadata)
}

/// One tensor to write as it is stored: name, element type, shape, little-endian bytes.
pub struct RawTensor<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements, little-endian, row-major.
    pub bytes: Vec<u8>,
}

/// Writes `tensors` and `metadata` as a safetensors file, atomically (the one safetensors
/// writer: checkpoints, training state and mask files go through it).
pub fn write_safetensors(
    path: &Path,
    tensors: &[RawTensor],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let invalid = |e: safetensors::SafeTensorError| TransformerError::Safetensors {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name, v))
                .map_err(invalid)
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(invalid)?;
    write_atomic(path, &bytes)
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
