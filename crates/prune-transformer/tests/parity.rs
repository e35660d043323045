//! Parity with the PyTorch + transformers reference dumps in `shared/fixtures/minilm`:
//! hidden states, pooled output, logits, loss and parameter gradients of the default
//! checkpoint with the fixture's classification head (dropout 0).

mod common;

use anyhow::Result;
use common::*;
use prune_tensor::{CpuBackend, Tensor};
use prune_transformer::{
    BertForSequenceClassification, ForwardOptions, Padding, Targets, Tokenizer,
    paths::require_model_dir,
};

fn max_abs(a: &Tensor<f32>, b: &Tensor<f32>) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    a.max_abs_diff(b)
}

#[test]
fn tokenizer_matches_transformers() -> Result<()> {
    let dir = require_model_dir()?;
    let v = inputs()?;
    let max_len = v["max_len"].as_u64().unwrap() as usize;
    let tok = Tokenizer::from_file(
        &dir.join("tokenizer.json"),
        max_len,
        Padding::Fixed(max_len),
    )?;
    let ex = v["examples"].as_array().unwrap();
    let texts: Vec<(&str, Option<&str>)> = ex
        .iter()
        .map(|e| (e["text_a"].as_str().unwrap(), e["text_b"].as_str()))
        .collect();
    let batch = tok.encode(&texts)?;
    let (expected, _) = fixture_batch()?;
    assert_eq!(batch, expected);
    // Padding to the longest: same ids, cut at the longest sequence (32: one pair is truncated).
    let mut longest = tok.clone();
    longest.set_padding(Padding::Longest)?;
    let b2 = longest.encode(&texts[..2])?;
    assert_eq!(b2.seq, 12);
    assert_eq!(&b2.input_ids[..12], &expected.input_ids[..12]);
    assert_eq!(&b2.input_ids[12..22], &expected.input_ids[32..42]);
    assert_eq!(&b2.attention_mask[22..24], &[0, 0]);
    Ok(())
}

#[test]
fn forward_backward_match_transformers() -> Result<()> {
    let model = BertForSequenceClassification::new(fixture_model()?)?;
    let (batch, labels) = fixture_batch()?;
    assert_eq!(reference_i64("labels")?, labels);
    assert_eq!(
        reference_i64("input_ids")?,
        batch
            .input_ids
            .iter()
            .map(|&i| i as i64)
            .collect::<Vec<_>>()
    );
    let r = reference()?;
    let opts = ForwardOptions {
        output_hidden_states: true,
        seed: 0,
    };
    let (loss, out, cache) = model.forward_t(&batch, Targets::Classes(&labels), &opts)?;

    assert_eq!(out.hidden_states.len(), 7);
    for (i, h) in out.hidden_states.iter().enumerate() {
        let e = max_abs(h, &r[&format!("hidden_states.{i}")]);
        println!("hidden_states.{i}: max abs diff {e:.2e}");
        assert!(e <= 1e-4, "hidden_states.{i}: {e}");
    }
    let e = max_abs(out.pooled.as_ref().unwrap(), &r["pooled"]);
    println!("pooled: max abs diff {e:.2e}");
    assert!(e <= 1e-4, "pooled: {e}");
    let e = max_abs(out.logits.as_ref().unwrap(), &r["logits"]);
    println!("logits: max abs diff {e:.2e}");
    assert!(e <= 1e-4, "logits: {e}");
    let ref_loss = r["loss"].data()[0] as f64;
    let rel = (loss - ref_loss).abs() / ref_loss.abs();
    println!("loss {loss:.8} vs {ref_loss:.8}: rel {rel:.2e}");
    assert!(rel <= 1e-5, "loss rel error {rel}");

    // Inference forward gives the same logits.
    let logits = model.logits(&batch)?;
    assert!(max_abs(&logits, out.logits.as_ref().unwrap()) < 1e-6);

    let mut grads = model.bert.zero_grads()?;
    let d_embed = model.backward(cache, 1.0, &mut grads)?;
    assert_eq!(d_embed.dims(), &[4, 32, 384]);
    gradients_match(&r, &grads)?;

    // Without hidden states, the last layer computes each sequence's first token alone
    // after its attention: the same loss, logits and gradients.
    let opts = ForwardOptions {
        output_hidden_states: false,
        seed: 0,
    };
    let (first_loss, first_out, cache) =
        model.forward_t(&batch, Targets::Classes(&labels), &opts)?;
    assert_eq!(first_out.last_hidden_state.dims(), &[4, 1, 384]);
    let e = max_abs(first_out.logits.as_ref().unwrap(), &r["logits"]);
    assert!(e <= 1e-4, "first tokens only: logits {e}");
    assert!(
        (first_loss - loss).abs() <= 1e-6 * loss.abs(),
        "{first_loss} vs {loss}"
    );
    let mut grads = model.bert.zero_grads()?;
    let d_embed = model.backward(cache, 1.0, &mut grads)?;
    assert_eq!(d_embed.dims(), &[4, 32, 384]);
    gradients_match(&r, &grads)
}

/// Every parameter gradient the reference holds matches `grads` (relative to its largest
/// entry).
fn gradients_match(
    r: &std::collections::BTreeMap<String, Tensor<f32>>,
    grads: &prune_transformer::BertParams<Tensor<f32>>,
) -> Result<()> {
    let b = CpuBackend::<f32>::new();
    let mut checked = 0;
    for (name, reference) in r {
        let Some(param) = name.strip_prefix("grad.") else {
            continue;
        };
        if param.ends_with(".rows") {
            continue;
        }
        let ours = grads
            .get(param)
            .unwrap_or_else(|| panic!("no gradient for {param}"));
        let ours = if param.ends_with("word_embeddings.weight") {
            let rows: Vec<usize> = reference_i64(&format!("{name}.rows"))?
                .iter()
                .map(|&i| i as usize)
                .collect();
            prune_tensor::IndexOps::gather_rows_fwd(&b, ours, &rows)?
        } else {
            ours.clone()
        };
        if param.ends_with("attention.self.key.bias") {
            // Exactly zero in exact arithmetic: adding q·b_k to every score of a row leaves
            // the softmax unchanged. Both sides hold rounding noise only.
            println!(
                "grad {param}: ref max {:.2e}, ours max {:.2e} (exactly 0)",
                reference.max_abs(),
                ours.max_abs()
            );
            assert!(reference.max_abs() < 1e-8 && ours.max_abs() < 1e-8);
            checked += 1;
            continue;
        }
        let rel = max_abs(&ours, reference) / reference.max_abs();
        println!("grad {param}: rel error {rel:.2e}");
        assert!(rel <= 1e-3, "grad {param}: rel error {rel}");
        checked += 1;
    }
    assert_eq!(checked, 14);
    Ok(())
}
