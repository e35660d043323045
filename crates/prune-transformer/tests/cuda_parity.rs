//! The whole model on the GPU against the CPU (feature `cuda`; a missing GPU is a failure):
//! MiniLM with the fixture's head, logits within 1e-3 and every parameter gradient within 1e-3
//! relative to its largest magnitude.
#![cfg(feature = "cuda")]

use anyhow::Result;
use prune_tensor::{Backend, CpuBackend, CudaBackend, Tensor};
use prune_transformer::fixtures::{fixture_batch, fixture_model_on};
use prune_transformer::{BertForSequenceClassification, BertParams, ForwardOptions, Targets};

/// Logits and parameter gradients of one training step (dropout 0) on backend `b`.
fn step<B: Backend>(b: B) -> Result<(Tensor<f32>, f64, BertParams<Tensor<f32>>)> {
    let model = BertForSequenceClassification::new(fixture_model_on(b.clone())?)?;
    let (batch, labels) = fixture_batch()?;
    let opts = ForwardOptions {
        output_hidden_states: false,
        seed: 0,
    };
    let (loss, out, cache) = model.forward_t(&batch, Targets::Classes(&labels), &opts)?;
    let logits = b.download(out.logits.as_ref().expect("the fixture model has a head"))?;
    let mut grads = model.bert.zero_grads()?;
    model.backward(cache, 1.0, &mut grads)?;
    let grads = grads.try_map(|_, g| b.download(g))?;
    Ok((logits, loss, grads))
}

#[test]
fn minilm_logits_and_gradients_match_the_cpu() -> Result<()> {
    let gpu = CudaBackend::new(0).expect("the feature `cuda` needs a GPU");
    let (cpu_logits, cpu_loss, cpu_grads) = step(CpuBackend::<f32>::new())?;
    let (gpu_logits, gpu_loss, gpu_grads) = step(gpu)?;
    let e = gpu_logits.max_abs_diff(&cpu_logits);
    println!("logits: max abs diff {e:.2e}; loss {gpu_loss} vs {cpu_loss}");
    assert!(e <= 1e-3, "logits differ by {e}");
    assert!((gpu_loss - cpu_loss).abs() <= 1e-3 * cpu_loss.abs().max(1.0));
    for (name, want) in cpu_grads.named() {
        let got = gpu_grads.get(&name).expect("same parameters on both");
        // Relative to the largest entry; the floor covers gradients that are 0 up to rounding
        // (the key biases: softmax ignores a per-row shift).
        let rel = got.max_abs_diff(want) / want.max_abs().max(1e-6);
        assert!(rel <= 1e-3, "grad {name}: rel error {rel:.2e}");
    }
    Ok(())
}
