//! `pytorch_model.bin`: the zip archive `torch.save` writes (PyTorch ≥ 1.6), read without
//! Python. `<archive>/data.pkl` names every tensor's storage, offset, size and stride (read
//! by [`crate::torch_pickle`], which never runs the pickle); `<archive>/data/<key>` holds
//! each storage's bytes (little-endian). Tensors come out as a safetensors file holds
//! them: dtype, shape and contiguous row-major bytes, so that the same checks and
//! conversions apply. Every size is checked against the archive before anything is
//! allocated.

use crate::error::{Result, TransformerError};
use crate::tensor_file::tensor_buffer;
use crate::torch_pickle::{TensorRef, state_dict};
use safetensors::tensor::TensorInfo;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use zip::ZipArchive;

/// Largest `data.pkl` read (a BERT-large state dict's is about 60 kB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// An open `torch.save` archive whose pickle has been read and checked; its tensor data is
/// not read until [`TorchFile::read_data`].
pub(crate) struct TorchFile {
    path: PathBuf,
    archive: ZipArchive<File>,
    /// The archive's folder (`pytorch_model/` or `archive/`).
    prefix: String,
    tensors: Vec<(String, TensorRef)>,
    /// Each tensor's dtype, shape and place in the data [`TorchFile::read_data`] returns.
    pub(crate) infos: HashMap<String, TensorInfo>,
}

/// Bytes per element of `t` (every storage type PyTorch pickles is whole bytes wide).
fn element_bytes(t: &TensorRef) -> usize {
    t.dtype.bitsize() / 8
}

/// Whether the file at `path` is a `torch.save` zip archive (`true`) or not (`false`); a
/// file in PyTorch's legacy format (a bare pickle, before 1.6) is an error saying so.
pub(crate) fn is_torch_zip(path: &Path) -> Result<bool> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(|e| TransformerError::io(path, e))?;
    let n = f
        .read(&mut head)
        .map_err(|e| TransformerError::io(path, e))?;
    // The legacy format opens with a pickle (protocol 2) of PyTorch's 10-byte magic number:
    // PROTO 2, LONG1 of 10 bytes. (As a safetensors header length these bytes would be far
    // beyond the format's limit, so no safetensors file is taken for it.)
    if n == 4 && head == [0x80, 0x02, 0x8a, 0x0a] {
        return Err(TransformerError::checkpoint(
            path,
            "PyTorch's legacy format (before 1.6) is not read: save it again with torch.save \
             from PyTorch 1.6 or later, or as safetensors",
        ));
    }
    Ok(n == 4 && head == *b"PK\x03\x04")
}

/// Elements of `t` (checked), and the storage it needs to hold them.
fn view_extent(t: &TensorRef) -> Option<(usize, usize)> {
    let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if numel == 0 {
        return Some((0, 0));
    }
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            a.checked_add((d - 1).checked_mul(s)?)
        })?;
    Some((numel, last.checked_add(1)?))
}

impl TorchFile {
    /// Opens `path`, reads its pickle and checks every tensor against its storage's entry.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let bad = |why: String| TransformerError::checkpoint(path, why);
        let file = File::open(path).map_err(|e| TransformerError::io(path, e))?;
        let mut archive =
            ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
        let pickles: Vec<String> = archive
            .file_names()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .map(str::to_string)
            .collect();
        let [pickle] = pickles.as_slice() else {
            return Err(bad(format!(
                "a PyTorch archive holds one <folder>/data.pkl, this one {}",
                pickles.len()
            )));
        };
        let prefix = pickle.trim_end_matches("data.pkl").to_string();
        let bytes = {
            let mut entry = archive
                .by_name(pickle)
                .map_err(|e| bad(format!("{pickle}: {e}")))?;
            if entry.size() > MAX_PICKLE_BYTES {
                return Err(bad(format!(
                    "{pickle} is {} bytes, above any state dict's",
                    entry.size()
                )));
            }
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_PICKLE_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("{pickle}: {e}")))?;
            bytes
        };
        let tensors = state_dict(&bytes).map_err(|why| bad(format!("{pickle}: {why}")))?;
        let mut infos = HashMap::new();
        let mut at = 0usize;
        for (name, t) in &tensors {
            let size = element_bytes(t);
            let entry = format!("{prefix}data/{}", t.key);
            let stored = archive
                .by_name(&entry)
                .map_err(|_| bad(format!("tensor `{name}`: its storage {entry} is missing")))?
                .size();
            let fits = t.storage_len.checked_mul(size).map(|b| b as u64) == Some(stored);
            let extent = view_extent(t).filter(|&(_, need)| need <= t.storage_len);
            let (Some((numel, _)), true) = (extent, fits) else {
                return Err(bad(format!(
                    "tensor `{name}` (shape {:?}, stride {:?}, offset {}) does not fit its storage \
                     of {} elements in {stored} bytes",
                    t.shape, t.stride, t.offset, t.storage_len
                )));
            };
            let end = numel
                .checked_mul(size)
                .and_then(|b| at.checked_add(b))
                .ok_or_else(|| bad("the tensors' sizes overflow".into()))?;
            let info = TensorInfo {
                dtype: t.dtype,
                shape: t.shape.clone(),
                data_offsets: (at, end),
            };
            if infos.insert(name.clone(), info).is_some() {
                return Err(bad(format!("tensor `{name}` is stored twice")));
            }
            at = end;
        }
        Ok(TorchFile {
            path: path.to_path_buf(),
            archive,
            prefix,
            tensors,
            infos,
        })
    }

    /// Every tensor's elements, contiguous and in order of the offsets of
    /// [`TorchFile::infos`].
    pub(crate) fn read_data(mut self) -> Result<Vec<u8>> {
        let len = self
            .infos
            .values()
            .map(|i| i.data_offsets.1)
            .max()
            .unwrap_or(0);
        let mut data = tensor_buffer(&self.path, len)?;
        data.resize(len, 0);
        // Each storage is read once and dropped after the tensors that view it.
        let mut by_storage: BTreeMap<&str, Vec<&(String, TensorRef)>> = BTreeMap::new();
        for entry in &self.tensors {
            by_storage
                .entry(entry.1.key.as_str())
                .or_default()
                .push(entry);
        }
        for (key, views) in by_storage {
            let entry = format!("{}data/{key}", self.prefix);
            let mut storage = Vec::new();
            self.archive
                .by_name(&entry)
                .and_then(|mut e| Ok(e.read_to_end(&mut storage)?))
                .map_err(|e| TransformerError::checkpoint(&self.path, format!("{entry}: {e}")))?;
            for (name, t) in views {
                if storage.len() != t.storage_len * element_bytes(t) {
                    return Err(TransformerError::checkpoint(
                        &self.path,
                        format!("the storage of `{name}` changed while being read"),
                    ));
                }
                let (from, to) = self.infos[name].data_offsets;
                gather(&storage, t, &mut data[from..to]);
            }
        }
        Ok(data)
    }
}

/// Copies the elements of the view `t` of `storage` into `out`, row-major.
fn gather(storage: &[u8], t: &TensorRef, out: &mut [u8]) {
    let size = element_bytes(t);
    let numel = out.len() / size.max(1);
    let mut index = vec![0usize; t.shape.len()];
    for k in 0..numel {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out[k * size..(k + 1) * size].copy_from_slice(&storage[at * size..(at + 1) * size]);
        // The next index, last dimension fastest.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}
