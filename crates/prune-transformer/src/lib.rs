//! A minimal BERT written over the `Backend` trait of `prune-tensor`: `BertConfig` read from
//! Hugging Face `config.json`, parameters named as in the checkpoint, safetensors load/save,
//! the tokenizer, and layers with `forward` / `forward_t` / `backward`.
//!
//! Not built yet: only the crate boundary exists.
