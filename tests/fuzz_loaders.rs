//! Fuzz targets, one per loader: `config.json` (read, then a whole model loaded with it),
//! the safetensors header and the whole safetensors file, `pytorch_model.bin` (the whole
//! archive, and its pickle re-packed with the seed's storages), `tokenizer.json` (loaded, then
//! encoding), GLUE TSV files and single TSV rows, and `config_list` files (JSON and TOML,
//! then selected against a model). Seeds are small real inputs: the MiniLM config, a tiny
//! model saved by `save_params`, tiny tokenizers, real GLUE rows and real config lists.
//!
//! `cargo test --test fuzz_loaders` runs a short fixed number of mutants per target; for a
//! bounded longer run: `PRUNE_FUZZ_SECONDS=60 cargo test --release --test fuzz_loaders --
//! --exact <target> --nocapture`.

mod fuzzing;

use fuzzing::fuzz;
use prune::data::dataset::load_tsv;
use prune::data::{BadRows, Task};
use prune::pruners::{ConfigList, modules_of};
use prune::tensor::CpuBackend;
use prune::transformer::{
    BertConfig, BertModel, Padding, Tokenizer, load_params, read_float_tensors, save_params,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A fresh directory for one target.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` to `path` as a new file. (Rewriting a file in place makes ext4 flush it
/// to disk on close, which slows the run down many times over.)
fn put(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

/// A seed file of `tests/data/fuzz`.
fn seed(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tiny model's configuration: two layers, one of them pruned.
fn tiny_config() -> BertConfig {
    BertConfig::from_json(&json!({
        "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 24, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "prune_layer_intermediate": [24, 10],
        "pruned_heads": {"1": [0]}, "id2label": {"0": "neg", "1": "pos"}
    }))
    .unwrap()
}

/// The tiny model with a pooler, and a classifier when asked.
fn tiny(classifier: bool) -> BertModel<CpuBackend<f32>> {
    BertModel::random(CpuBackend::new(), tiny_config(), true, classifier, 3).unwrap()
}

/// The error's message, which must be one line (checked by the fuzzer for the error a
/// target returns; checked here for the others).
fn message(e: impl std::fmt::Display) -> String {
    let msg = e.to_string();
    assert!(
        !msg.trim().is_empty() && !msg.contains('\n'),
        "not a one-line error: {msg:?}"
    );
    msg
}

#[test]
fn config_json() {
    let dir = scratch("config_json");
    tiny(true).save(&dir).unwrap();
    let config = dir.join("config.json");
    let seeds = vec![std::fs::read(&config).unwrap(), seed("minilm_config.json")];
    fuzz("config_json", seeds, |input| {
        put(&config, input);
        BertConfig::from_file(&config).map_err(message)?;
        if let Err(e) = BertModel::load(CpuBackend::<f32>::new(), &dir) {
            message(e);
        }
        Ok(())
    });
}

/// The tiny model with a classifier saved by `save_params`: the file's bytes.
fn tiny_file(dir: &Path, classifier: bool) -> Vec<u8> {
    let path = dir.join("seed.safetensors");
    save_params(
        &path,
        &tiny(classifier).to_host().unwrap(),
        prune::transformer::Family::Bert,
    )
    .unwrap();
    std::fs::read(path).unwrap()
}

/// Loads the safetensors file at `path` as the tiny model's parameters and as plain
/// tensors; accepted when the parameters load.
fn load_both(path: &Path) -> Result<(), String> {
    if let Err(e) = read_float_tensors(path) {
        message(e);
    }
    load_params(path, &tiny_config()).map(drop).map_err(message)
}

#[test]
fn safetensors_header() {
    let dir = scratch("safetensors_header");
    let file = tiny_file(&dir, true);
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let (header, data) = (file[8..8 + n].to_vec(), file[8 + n..].to_vec());
    // The same tensors under transformers' other spellings: bare names, gamma and beta.
    let text = String::from_utf8(header.clone()).unwrap();
    let bare = text.replace("\"bert.", "\"");
    let old = text
        .replace("LayerNorm.weight", "LayerNorm.gamma")
        .replace("LayerNorm.bias", "LayerNorm.beta");
    let path = dir.join("model.safetensors");
    fuzz(
        "safetensors_header",
        vec![header, bare.into_bytes(), old.into_bytes()],
        |input| {
            let len = (input.len() as u64).to_le_bytes();
            put(&path, &[&len[..], input, &data].concat());
            load_both(&path)
        },
    );
}

#[test]
fn safetensors_file() {
    let dir = scratch("safetensors_file");
    let seeds = vec![tiny_file(&dir, true), tiny_file(&dir, false)];
    let path = dir.join("model.safetensors");
    fuzz("safetensors_file", seeds, |input| {
        put(&path, input);
        load_both(&path)
    });
}

/// The seed `pytorch_model.bin` (written by `torch.save` for the tiny configuration, with a
/// transposed view and an f16 storage), as its pickle and its other entries.
fn torch_seed() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let bytes = seed("pytorch_model.bin");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let (mut pickle, mut rest) = (Vec::new(), Vec::new());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        match entry.name().ends_with("/data.pkl") {
            true => pickle = data,
            false => rest.push((entry.name().to_string(), data)),
        }
    }
    (pickle, rest)
}

/// A `torch.save` archive of `pickle` beside `entries`.
fn torch_archive(pickle: &[u8], entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let pickle_entry = ("pytorch_model/data.pkl".to_string(), pickle.to_vec());
    for (name, data) in std::iter::once(&pickle_entry).chain(entries) {
        zip.start_file(name.as_str(), stored).unwrap();
        std::io::Write::write_all(&mut zip, data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn pytorch_model_bin() {
    let dir = scratch("pytorch_model_bin");
    let path = dir.join("pytorch_model.bin");
    fuzz(
        "pytorch_model_bin",
        vec![seed("pytorch_model.bin")],
        |input| {
            put(&path, input);
            load_params(&path, &tiny_config())
                .map(drop)
                .map_err(message)
        },
    );
}

#[test]
fn pytorch_pickle() {
    let dir = scratch("pytorch_pickle");
    let path = dir.join("pytorch_model.bin");
    let (pickle, entries) = torch_seed();
    fuzz("pytorch_pickle", vec![pickle], |input| {
        put(&path, &torch_archive(input, &entries));
        load_params(&path, &tiny_config())
            .map(drop)
            .map_err(message)
    });
}

#[test]
fn tokenizer_json() {
    let dir = scratch("tokenizer_json");
    let path = dir.join("tokenizer.json");
    let seeds = ["wordpiece", "bpe", "unigram"]
        .map(|kind| seed(&format!("tokenizer_{kind}.json")))
        .to_vec();
    fuzz("tokenizer_json", seeds, |input| {
        put(&path, input);
        let tok = Tokenizer::from_file(&path, 16, Padding::Longest).map_err(message)?;
        let texts = [
            ("good film!", None),
            ("Unbelievable — 中文 é 10", Some("it's not bad, it's good")),
        ];
        if let Err(e) = tok.encode(&texts) {
            message(e);
        }
        Ok(())
    });
}

/// The GLUE seed file of every task.
fn glue_seeds() -> Vec<(Task, Vec<u8>)> {
    Task::ALL
        .iter()
        .map(|&t| (t, seed(&format!("glue/{}.tsv", t.dir_name()))))
        .collect()
}

/// Loads the TSV file at `path` as every task, failing and skipping bad rows; accepted
/// when some task loads it.
fn load_as_any_task(path: &Path) -> Result<(), String> {
    let mut last = String::new();
    for task in Task::ALL {
        for bad in [BadRows::Skip, BadRows::Fail] {
            match load_tsv(path, task.layout(), task.labels().into(), bad) {
                Ok(_) if bad == BadRows::Fail => return Ok(()),
                Ok(_) => {}
                Err(e) => last = message(e),
            }
        }
    }
    Err(last)
}

#[test]
fn tsv_file() {
    let dir = scratch("tsv_file");
    let path = dir.join("train.tsv");
    let seeds = glue_seeds().into_iter().map(|(_, s)| s).collect();
    fuzz("tsv_file", seeds, |input| {
        put(&path, input);
        load_as_any_task(&path)
    });
}

#[test]
fn tsv_row() {
    let dir = scratch("tsv_row");
    let path = dir.join("train.tsv");
    let files = glue_seeds();
    // Each task's header line (empty for CoLA), and every data row of the seeds.
    let headers: Vec<(Task, &[u8])> = files
        .iter()
        .map(|(t, s)| {
            let first = s.split(|&b| b == b'\n').next().unwrap_or_default();
            (
                *t,
                if t.layout().header.is_some() {
                    first
                } else {
                    &[]
                },
            )
        })
        .collect();
    let rows = files
        .iter()
        .flat_map(|(t, s)| {
            let skip = usize::from(t.layout().header.is_some());
            s.split(|&b| b == b'\n')
                .skip(skip)
                .filter(|r| !r.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    fuzz("tsv_row", rows, |row| {
        let mut result = Err(String::new());
        for &(task, header) in &headers {
            put(&path, &[header, b"\n", row, b"\n"].concat());
            if let Err(e) = load_tsv(&path, task.layout(), task.labels().into(), BadRows::Skip) {
                message(e);
            }
            match load_tsv(&path, task.layout(), task.labels().into(), BadRows::Fail) {
                Ok(_) => result = Ok(()),
                Err(e) => result = result.or(Err(message(e))),
            }
        }
        result
    });
}

#[test]
fn config_list() {
    let dir = scratch("config_list");
    let modules = modules_of(&tiny(false));
    let seeds = vec![seed("config_list.json"), seed("config_list.toml")];
    fuzz("config_list", seeds, |input| {
        let mut result = Err(String::new());
        for ext in ["json", "toml"] {
            let path = dir.join(format!("config_list.{ext}"));
            put(&path, input);
            match ConfigList::from_path(&path) {
                Ok(list) => {
                    result = Ok(());
                    if let Err(e) = list.dry_run(&modules) {
                        message(e);
                    }
                }
                Err(e) => result = result.or(Err(message(e))),
            }
        }
        result
    });
}
