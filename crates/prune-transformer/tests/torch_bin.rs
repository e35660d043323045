//! `pytorch_model.bin`: the fixture saved by transformers gives transformers' logits; an
//! archive written here (a transposed view, f16, a shared storage) loads the same weights
//! as safetensors; and pickles that name other code, loop, nest or lie about sizes are
//! refused with a clear error, never run.

use anyhow::Result;
use prune_tensor::CpuBackend;
use prune_transformer::paths::fixtures_dir;
use prune_transformer::{
    Batch, BertConfig, BertForSequenceClassification, BertModel, Family, load_params, save_params,
};
use safetensors::SafeTensors;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prune-torch-bin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_transformers_fixture_gives_transformers_logits() -> Result<()> {
    let dir = fixtures_dir().join("families/bert-bin");
    assert!(!dir.join("model.safetensors").exists());
    let model = BertModel::load(CpuBackend::<f32>::new(), &dir)?;
    let classifier = BertForSequenceClassification::new(model)?;
    let bytes = std::fs::read(dir.join("reference.safetensors"))?;
    let reference = SafeTensors::deserialize(&bytes)?;
    let ints = |name: &str| -> Result<Vec<i64>> {
        let t = reference.tensor(name)?;
        Ok(t.data()
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    };
    let (ids, mask, types) = (
        ints("input_ids")?,
        ints("attention_mask")?,
        ints("token_type_ids")?,
    );
    let shape = reference.tensor("input_ids")?.shape().to_vec();
    let batch = Batch::new(
        shape[0],
        shape[1],
        ids.iter().map(|&i| i as u32).collect(),
        types.iter().map(|&i| i as u32).collect(),
        mask.iter().map(|&i| i as u32).collect(),
    )?;
    let logits = classifier.logits(&batch)?;
    let expected: Vec<f32> = reference
        .tensor("logits")?
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let diff = logits
        .data()
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert_eq!(logits.data().len(), expected.len());
    assert!(diff <= 1e-4, "logits differ by {diff}");
    Ok(())
}

/// A hand-written pickle of a state dict, as `torch.save` writes one (protocol 2).
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn text(&mut self, s: &str) -> &mut Self {
        self.op(b"X")
            .op(&(s.len() as u32).to_le_bytes())
            .op(s.as_bytes())
    }
    fn int(&mut self, v: usize) -> &mut Self {
        self.op(b"J").op(&(v as u32).to_le_bytes())
    }
    fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b"(");
        v.iter().for_each(|&x| {
            self.int(x);
        });
        self.op(b"t")
    }
    /// `name: _rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
    fn tensor(&mut self, name: &str, storage: (&str, &str, usize), view: TensorView) -> &mut Self {
        let (class, key, len) = storage;
        self.text(name)
            .op(b"ctorch._utils\n_rebuild_tensor_v2\n(")
            .op(b"(")
            .text("storage")
            .op(format!("ctorch\n{class}\n").as_bytes())
            .text(key)
            .text("cpu")
            .int(len)
            .op(b"tQ")
            .int(view.0)
            .ints(&view.1)
            .ints(&view.2)
            .op(b"\x89ccollections\nOrderedDict\n)Rt")
            .op(b"R")
    }
}

/// Storage offset, shape and stride.
type TensorView = (usize, Vec<usize>, Vec<usize>);

/// Writes a `torch.save` archive: the pickle and the storages.
fn archive(path: &Path, pickle: &[u8], storages: &[(&str, Vec<u8>)]) {
    let mut zip = ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn tiny_config() -> BertConfig {
    BertConfig::from_json(&json!({
        "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 24, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1
    }))
    .unwrap()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn an_archive_loads_the_same_weights_as_safetensors() -> Result<()> {
    let dir = scratch("same");
    let model = BertModel::random(CpuBackend::<f32>::new(), tiny_config(), true, false, 3)?;
    let host = model.to_host()?;
    save_params(&dir.join("model.safetensors"), &host, Family::Bert)?;
    // Every parameter in its own f32 storage, except: the query weight stored transposed
    // (a non-contiguous view), the key bias as f16, and both LayerNorm tensors of the
    // embeddings sharing one storage at two offsets.
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(");
    let mut storages: Vec<(String, Vec<u8>)> = Vec::new();
    let named = host.named();
    for (i, (name, t)) in named.iter().enumerate() {
        let key = i.to_string();
        let dims = t.dims().to_vec();
        let row_major = |d: &[usize]| match d {
            [_, c] => vec![*c, 1],
            _ => vec![1; d.len()],
        };
        if name.ends_with("attention.self.query.weight") {
            let (r, c) = (dims[0], dims[1]);
            let mut transposed = vec![0.0f32; r * c];
            for (k, v) in t.data().iter().enumerate() {
                transposed[(k % c) * r + k / c] = *v;
            }
            p.tensor(name, ("FloatStorage", &key, r * c), (0, dims, vec![1, r]));
            storages.push((key, f32_bytes(&transposed)));
        } else if name.ends_with("attention.self.key.bias") {
            let half: Vec<u8> = t
                .data()
                .iter()
                .flat_map(|&v| f16_bits(v).to_le_bytes())
                .collect();
            p.tensor(name, ("HalfStorage", &key, dims[0]), (0, dims, vec![1]));
            storages.push((key, half));
        } else if name == "embeddings.LayerNorm.weight" || name == "embeddings.LayerNorm.bias" {
            let n = dims[0];
            let offset = if name.ends_with("weight") { 0 } else { n };
            p.tensor(name, ("FloatStorage", "ln", 2 * n), (offset, dims, vec![1]));
            if offset == 0 {
                let both = [
                    t.data(),
                    host.get("embeddings.LayerNorm.bias").unwrap().data(),
                ];
                storages.push(("ln".into(), f32_bytes(&both.concat())));
            }
        } else {
            let stride = row_major(&dims);
            p.tensor(
                name,
                ("FloatStorage", &key, t.data().len()),
                (0, dims, stride),
            );
            storages.push((key, f32_bytes(t.data())));
        }
    }
    p.op(b"u.");
    let bin = dir.join("pytorch_model.bin");
    let refs: Vec<(&str, Vec<u8>)> = storages
        .iter()
        .map(|(k, b)| (k.as_str(), b.clone()))
        .collect();
    archive(&bin, &p.0, &refs);
    let from_bin = load_params(&bin, &tiny_config())?;
    for (name, t) in from_bin.named() {
        let want = host.get(&name).unwrap();
        let tol = if name.ends_with("key.bias") {
            1e-3
        } else {
            0.0
        };
        let diff = t
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= tol, "{name}: {diff}");
    }
    Ok(())
}

/// f32 to IEEE half, rounding to nearest (normal range only: the test's values).
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if v == 0.0 || exp <= 0 {
        return sign;
    }
    let mant = (b & 0x7f_ffff) + 0x1000; // round
    sign | ((exp as u16 + (mant >> 23) as u16) << 10) | ((mant >> 13) & 0x3ff) as u16
}

/// Loads an archive of `pickle` with one storage `0` of `n` floats.
fn load_pickle(name: &str, pickle: &[u8], n: usize) -> String {
    let dir = scratch(name);
    let bin = dir.join("pytorch_model.bin");
    archive(&bin, pickle, &[("0", vec![0; 4 * n])]);
    match load_params(&bin, &tiny_config()) {
        Ok(_) => panic!("{name}: loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn pickles_that_are_not_a_plain_state_dict_are_refused() {
    // Code: a pickle that would call os.system.
    let e = load_pickle("code", b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", 0);
    assert!(e.contains("os.system") && e.contains("refused"), "{e}");
    let e = load_pickle("opcode", b"\x80\x02}i.", 0);
    assert!(e.contains("opcode 0x69"), "{e}");
    let e = load_pickle("truncated", b"\x80\x02}(X\x10\x00\x00\x00ab", 0);
    assert!(e.contains("ends inside"), "{e}");
    let e = load_pickle("not-a-dict", b"\x80\x02N.", 0);
    assert!(e.contains("dict of tensors"), "{e}");
    // Exponential copies: a list that holds itself twice, again and again.
    let mut grow = b"\x80\x02]q\x00".to_vec();
    for _ in 0..40 {
        grow.extend_from_slice(b"h\x00h\x00aq\x00");
    }
    grow.extend_from_slice(b".");
    let e = load_pickle("grow", &grow, 0);
    assert!(
        e.contains("copies more") || e.contains("nested deeper"),
        "{e}"
    );
    let mut deep = b"\x80\x02N".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 100_000));
    deep.push(b'.');
    let e = load_pickle("deep", &deep, 0);
    assert!(e.contains("nested deeper"), "{e}");
    // A view beyond its storage, and a storage of the wrong size.
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(")
        .tensor("w", ("FloatStorage", "0", 4), (2, vec![2, 2], vec![2, 1]))
        .op(b"u.");
    let e = load_pickle("beyond", &p.0, 4);
    assert!(e.contains("does not fit its storage"), "{e}");
    let e = load_pickle("size", &p.0, 3);
    assert!(e.contains("does not fit its storage"), "{e}");
    // PyTorch's legacy format: a bare pickle, no zip.
    let dir = scratch("legacy");
    let legacy = dir.join("pytorch_model.bin");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let e = load_params(&legacy, &tiny_config())
        .unwrap_err()
        .to_string();
    assert!(e.contains("legacy format"), "{e}");
}

#[test]
fn a_safetensors_header_that_starts_like_a_pickle_is_still_safetensors() -> Result<()> {
    // Headers of 640 + 256·k bytes begin with 0x80 0x02..: the file must still load.
    let dir = scratch("lookalike");
    let model = BertModel::random(CpuBackend::<f32>::new(), tiny_config(), true, false, 5)?;
    let path = dir.join("model.safetensors");
    save_params(&path, &model.to_host()?, Family::Bert)?;
    let bytes = std::fs::read(&path)?;
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    // Pad the header (metadata) to a length of 0x0280 + 0x10000·m bytes.
    let base = serde_json::to_vec(&header)?.len();
    let target = (0..)
        .map(|m| 0x280 + 0x10000 * m)
        .find(|&t| t > base + 40)
        .unwrap();
    header["__metadata__"] = json!({ "pad": "" });
    let short = serde_json::to_vec(&header)?.len();
    header["__metadata__"]["pad"] = json!("x".repeat(target - short));
    let text = serde_json::to_vec(&header)?;
    assert_eq!(text.len(), target);
    let file = [
        &(text.len() as u64).to_le_bytes()[..],
        &text,
        &bytes[8 + n..],
    ]
    .concat();
    assert_eq!(&file[..2], &[0x80, 0x02]);
    std::fs::write(&path, file)?;
    load_params(&path, &tiny_config())?;
    Ok(())
}
