//! Checkpoint I/O: save → load round trips, f16/bf16 and prefixed files, clear errors for
//! truncated files, wrong or missing tensors, parameters stored twice, non-finite values,
//! configs that describe another checkpoint and bad configs. (Head pruning against
//! transformers' reference is tested with the surgery, in `prune-speedup`.)

use anyhow::Result;
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::{
    BertConfig, BertModel, Family, ForwardOptions, TransformerError, load_params,
    read_float_tensors, save_params,
};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prune-transformer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny_config() -> BertConfig {
    BertConfig::from_json(&json!({
        "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 24, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "architectures": ["BertForSequenceClassification"],
        "prune_layer_intermediate": [24, 10], "pruned_heads": {"1": [0]},
        "id2label": {"0": "neg", "1": "pos"}
    }))
    .unwrap()
}

fn tiny(classifier: bool) -> BertModel<CpuBackend<f32>> {
    BertModel::random(CpuBackend::new(), tiny_config(), true, classifier, 7).unwrap()
}

/// Writes raw tensors `(name, dtype, shape, bytes)` as a safetensors file.
fn write_raw(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32_bytes(t: &Tensor<f32>) -> Vec<u8> {
    t.data().iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The tiny model's tensors as raw entries, transformed by `edit`.
fn raw_with(
    edit: impl Fn(&str, &Tensor<f32>) -> Option<(String, Dtype, Vec<usize>, Vec<u8>)>,
) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let host = tiny(false).to_host().unwrap();
    host.named()
        .into_iter()
        .filter_map(|(n, t)| edit(&n, t))
        .collect()
}

#[test]
fn save_load_round_trip_is_identical() -> Result<()> {
    for classifier in [false, true] {
        let dir = scratch(&format!("roundtrip-{classifier}"));
        let model = tiny(classifier);
        model.save(&dir)?;
        let back = BertModel::load(CpuBackend::<f32>::new(), &dir)?;
        // A save names the class it wrote (`architectures`) and the model type; what the
        // loaded model would write is the same checkpoint.
        assert_eq!(
            back.config.checkpoint_json(classifier),
            model.config.checkpoint_json(classifier)
        );
        assert_eq!(back.to_host()?, model.to_host()?);
        // transformers' layouts: `bert.`-prefixed with a head, bare without.
        let bytes = std::fs::read(dir.join("model.safetensors"))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let names = st.names();
        assert_eq!(names.contains(&"bert.pooler.dense.weight"), classifier);
        assert_eq!(names.contains(&"pooler.dense.weight"), !classifier);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        assert_eq!(cfg["pruned_heads"], json!({"1": [0]}));
        assert_eq!(cfg["prune_layer_intermediate"], json!([24, 10]));
        let class = if classifier {
            "BertForSequenceClassification"
        } else {
            "BertModel"
        };
        assert_eq!(cfg["architectures"], json!([class]));
        assert!(
            std::fs::read_dir(&dir)?.all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp"))
        );
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

#[test]
fn reads_half_precision_prefixed_files_and_skips_integer_buffers() -> Result<()> {
    let dir = scratch("half");
    let path = dir.join("model.safetensors");
    let mut raw = raw_with(|n, t| {
        let (dtype, bytes) = if n.contains("layer.0") {
            // bf16: the upper half of each f32.
            (
                Dtype::BF16,
                t.data()
                    .iter()
                    .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                    .collect(),
            )
        } else {
            (Dtype::F32, f32_bytes(t))
        };
        Some((format!("bert.{n}"), dtype, t.dims().to_vec(), bytes))
    });
    // An f16 LayerNorm weight of 1.5 everywhere and transformers' integer position ids.
    for entry in raw
        .iter_mut()
        .filter(|e| e.0 == "bert.encoder.layer.1.output.LayerNorm.weight")
    {
        entry.1 = Dtype::F16;
        entry.3 = std::iter::repeat_n(0x3e00u16.to_le_bytes(), 16)
            .flatten()
            .collect();
    }
    raw.push((
        "bert.embeddings.position_ids".into(),
        Dtype::I64,
        vec![1, 8],
        (0..8i64).flat_map(|i| i.to_le_bytes()).collect(),
    ));
    write_raw(&path, &raw);
    let host = load_params(&path, &tiny_config())?;
    assert!(
        host.layers[1]
            .output_norm
            .weight
            .data()
            .iter()
            .all(|&v| v == 1.5)
    );
    let orig = tiny(false).to_host()?;
    let q = host.layers[0].query.weight.data()[3];
    let expected = f32::from_bits(orig.layers[0].query.weight.data()[3].to_bits() & 0xffff_0000);
    assert_eq!(q, expected);
    assert_eq!(host.layers[1].output.weight, orig.layers[1].output.weight);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn errors_name_the_file_tensor_shapes_and_keys() -> Result<()> {
    let dir = scratch("errors");
    let cfg = tiny_config();
    let path = dir.join("model.safetensors");

    // Truncated file.
    save_params(&path, &tiny(false).to_host()?, Family::Bert)?;
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
    let e = load_params(&path, &cfg).unwrap_err();
    assert!(matches!(e, TransformerError::Safetensors { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not a valid safetensors file"),
        "{msg}"
    );
    std::fs::write(&path, b"garbage")?;
    assert!(
        load_params(&path, &cfg)
            .unwrap_err()
            .to_string()
            .contains("not a valid safetensors")
    );

    // A tensor with a wrong shape.
    write_raw(
        &path,
        &raw_with(|n, t| {
            let dims = if n == "encoder.layer.1.intermediate.dense.weight" {
                vec![16, 10]
            } else {
                t.dims().to_vec()
            };
            Some((n.to_string(), Dtype::F32, dims, f32_bytes(t)))
        }),
    );
    let msg = load_params(&path, &cfg).unwrap_err().to_string();
    assert_eq!(
        msg,
        "tensor `encoder.layer.1.intermediate.dense.weight`: expected shape [10, 16], found [16, 10]"
    );

    // A missing tensor (in a file with a masked-LM bias, so that it holds enough values).
    let mut raw = raw_with(|n, t| {
        (n != "encoder.layer.0.attention.output.LayerNorm.bias")
            .then(|| (n.to_string(), Dtype::F32, t.dims().to_vec(), f32_bytes(t)))
    });
    raw.push((
        "cls.predictions.bias".into(),
        Dtype::F32,
        vec![30],
        vec![0; 120],
    ));
    write_raw(&path, &raw);
    let msg = load_params(&path, &cfg).unwrap_err().to_string();
    assert!(
        msg.contains(
            "missing tensor `encoder.layer.0.attention.output.LayerNorm.bias` (expected shape [16])"
        ),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()));

    // A non-float parameter.
    write_raw(
        &path,
        &raw_with(|n, t| {
            let dtype = if n == "embeddings.LayerNorm.weight" {
                Dtype::I32
            } else {
                Dtype::F32
            };
            Some((n.to_string(), dtype, t.dims().to_vec(), f32_bytes(t)))
        }),
    );
    let msg = load_params(&path, &cfg).unwrap_err().to_string();
    assert!(
        msg.contains("`embeddings.LayerNorm.weight` has unsupported dtype I32"),
        "{msg}"
    );

    // Missing file, malformed and incomplete config.json.
    let missing = dir.join("nope.safetensors");
    assert!(
        load_params(&missing, &cfg)
            .unwrap_err()
            .to_string()
            .contains("nope.safetensors")
    );
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, "{ \"hidden_size\": 16,")?;
    let msg = BertConfig::from_file(&cfg_path).unwrap_err().to_string();
    assert!(msg.contains("config.json: invalid JSON"), "{msg}");
    let mut v = tiny_config().to_json();
    v.as_object_mut().unwrap().remove("num_attention_heads");
    std::fs::write(&cfg_path, v.to_string())?;
    let msg = BertConfig::from_file(&cfg_path).unwrap_err().to_string();
    assert!(
        msg.starts_with("config key `num_attention_heads`: missing (in ")
            && msg.contains("config.json"),
        "{msg}"
    );

    // Inputs the model refuses.
    let model = tiny(false);
    let bad = prune_transformer::Batch::new(1, 2, vec![1, 99], vec![0, 0], vec![1, 1])?;
    let msg = model
        .forward(&bad, &ForwardOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("token id 99 out of range (vocab_size = 30)"),
        "{msg}"
    );
    let long = prune_transformer::Batch::new(1, 9, vec![1; 9], vec![0; 9], vec![1; 9])?;
    assert!(
        model
            .forward(&long, &ForwardOptions::default())
            .unwrap_err()
            .to_string()
            .contains("max_position_embeddings")
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The tiny model saved as a checkpoint directory, its config rewritten by `edit`.
fn saved_with_config(name: &str, edit: impl Fn(&mut serde_json::Value)) -> Result<PathBuf> {
    let dir = scratch(name);
    tiny(false).save(&dir)?;
    let mut cfg = tiny_config().to_json();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string())?;
    Ok(dir)
}

#[test]
fn a_config_with_a_byte_order_mark_loads() -> Result<()> {
    let dir = scratch("bom");
    tiny(false).save(&dir)?;
    let text = std::fs::read(dir.join("config.json"))?;
    std::fs::write(
        dir.join("config.json"),
        [b"\xEF\xBB\xBF".as_slice(), &text].concat(),
    )?;
    let model = BertModel::load(CpuBackend::<f32>::new(), &dir)?;
    assert_eq!(
        model.config.checkpoint_json(false),
        tiny_config().checkpoint_json(false)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_allocated() -> Result<()> {
    let cases: [(&[(&str, serde_json::Value)], &str); 4] = [
        (
            &[("num_hidden_layers", json!(1_000_000_000u64))],
            "config key `num_hidden_layers`: 1000000000 is above the limit of 1024",
        ),
        (
            &[("num_hidden_layers", json!(1u64 << 62))],
            "config key `num_hidden_layers`: 4611686018427387904 is above the limit of 1024",
        ),
        (
            &[("intermediate_size", json!(1u64 << 62))],
            "config key `intermediate_size`: 4611686018427387904 is above the limit of 16777216",
        ),
        // Within every per-key limit, but 2^24 · 2^24 values in one table.
        (
            &[
                ("vocab_size", json!(1u64 << 24)),
                ("hidden_size", json!(1u64 << 24)),
                ("num_attention_heads", json!(1)),
                ("pruned_heads", json!({})),
            ],
            "config key `vocab_size`: `embeddings.word_embeddings.weight` of shape \
             [16777216, 16777216] takes the model above 17179869184 parameters",
        ),
    ];
    for (i, (edits, expected)) in cases.into_iter().enumerate() {
        let dir = saved_with_config(&format!("absurd-{i}"), |v| {
            for (key, value) in edits {
                v[*key] = value.clone();
            }
        })?;
        let msg = BertModel::load(CpuBackend::<f32>::new(), &dir)
            .unwrap_err()
            .to_string();
        let file = dir.join("config.json").display().to_string();
        assert_eq!(msg, format!("{expected} (in {file})"));
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

#[test]
fn a_config_describing_another_checkpoint_says_how_many_values_each_has() -> Result<()> {
    // The tiny model's two layers (1960 + 962 values), then 998 more full ones.
    let dir = saved_with_config("other", |v| {
        v["num_hidden_layers"] = json!(1000);
        let widths: Vec<usize> = [24, 10].into_iter().chain([24; 998]).collect();
        v["prune_layer_intermediate"] = json!(widths);
    })?;
    let msg = BertModel::load(CpuBackend::<f32>::new(), &dir)
        .unwrap_err()
        .to_string();
    let file = dir.join("model.safetensors").display().to_string();
    assert_eq!(
        msg,
        format!(
            "{file}: the config describes 1959946 parameter values (1000 layers, hidden size 16, \
             vocabulary 30) but the file's float tensors hold only 3866: the config does not describe \
             this checkpoint (first difference: missing tensor \
             `encoder.layer.2.attention.self.query.weight` of shape [16, 16])"
        )
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn a_parameter_stored_under_two_names_is_an_error_naming_both() -> Result<()> {
    let dir = scratch("twice");
    let path = dir.join("model.safetensors");
    let cfg = tiny_config();
    for (twin, message) in [
        (
            "bert.encoder.layer.1.output.dense.bias",
            "parameter `encoder.layer.1.output.dense.bias` is stored twice, as \
             `bert.encoder.layer.1.output.dense.bias` and as `encoder.layer.1.output.dense.bias`",
        ),
        (
            "embeddings.LayerNorm.gamma",
            "parameter `embeddings.LayerNorm.weight` is stored twice, as \
             `embeddings.LayerNorm.gamma` and as `embeddings.LayerNorm.weight`",
        ),
    ] {
        let mut raw =
            raw_with(|n, t| Some((n.to_string(), Dtype::F32, t.dims().to_vec(), f32_bytes(t))));
        let canonical = twin
            .trim_start_matches("bert.")
            .replace("LayerNorm.gamma", "LayerNorm.weight");
        let original = raw_with(|n, t| {
            (n == canonical).then(|| {
                (
                    twin.to_string(),
                    Dtype::F32,
                    t.dims().to_vec(),
                    f32_bytes(t),
                )
            })
        });
        raw.extend(original);
        write_raw(&path, &raw);
        let msg = load_params(&path, &cfg).unwrap_err().to_string();
        assert_eq!(msg, format!("{}: {message}", path.display()));
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn non_finite_weights_are_refused_when_loading_and_when_saving() -> Result<()> {
    let dir = scratch("nonfinite");
    let path = dir.join("model.safetensors");
    let cfg = tiny_config();
    let target = "encoder.layer.0.intermediate.dense.bias";
    let cases: [(Dtype, Vec<u8>, &str); 3] = [
        (
            Dtype::F32,
            [1.0f32, 2.0, f32::NAN]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            "NaN at index 2",
        ),
        (
            Dtype::F16,
            [0x3c00u16, 0x7c00]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            "inf at index 1",
        ),
        (
            Dtype::F64,
            [0.5f64, 1e300]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            "1e300, beyond the range of f32, at index 1",
        ),
    ];
    for (dtype, head, what) in cases {
        let raw = raw_with(|n, t| {
            let (dtype, bytes) = if n == target {
                let mut bytes = head.clone();
                bytes.resize(t.data().len() * dtype.bitsize() / 8, 0);
                (dtype, bytes)
            } else {
                (Dtype::F32, f32_bytes(t))
            };
            Some((n.to_string(), dtype, t.dims().to_vec(), bytes))
        });
        write_raw(&path, &raw);
        let expected = format!(
            "{}: tensor `{target}` holds {what}: weights must be finite",
            path.display()
        );
        assert_eq!(load_params(&path, &cfg).unwrap_err().to_string(), expected);
        assert_eq!(read_float_tensors(&path).unwrap_err().to_string(), expected);
    }

    // A name read from the file is shown on one line.
    let nan = f32::NAN.to_le_bytes().to_vec();
    write_raw(&path, &[("odd\nname".into(), Dtype::F32, vec![1], nan)]);
    assert_eq!(
        read_float_tensors(&path).unwrap_err().to_string(),
        format!(
            "{}: tensor `odd\\nname` holds NaN at index 0: weights must be finite",
            path.display()
        )
    );

    let mut host = tiny(true).to_host()?;
    host.layers[1].value.weight.data_mut()[5] = f32::NEG_INFINITY;
    let saved = dir.join("saved.safetensors");
    let msg = save_params(&saved, &host, Family::Bert)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        format!(
            "{}: not saved: tensor `bert.encoder.layer.1.attention.self.value.weight` holds -inf \
             at index 5",
            saved.display()
        )
    );
    assert!(!saved.exists());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn error_chains_do_not_repeat_the_cause() -> Result<()> {
    let dir = scratch("chains");
    std::fs::write(dir.join("config.json"), "{ \"hidden_size\": 16,")?;
    let errors = [
        BertModel::load(CpuBackend::<f32>::new(), &dir).unwrap_err(),
        load_params(&dir.join("absent.safetensors"), &tiny_config()).unwrap_err(),
    ];
    for e in errors {
        let chain = format!("{:#}", anyhow::Error::from(e));
        let last = chain.rsplit(": ").next().unwrap();
        assert_eq!(chain.matches(last).count(), 1, "{chain}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
