//! Surgery against transformers: the heads of `pruned_heads.json` removed by our surgery give
//! the reference logits and query shapes; the cut model saves and loads back with its
//! per-layer widths and identical logits; a zero head mask equals pruning every head.

mod common;

use anyhow::{Context, Result};
use common::{Cpu, Touch, batch, logits, random_plan, tiny};
use prune_speedup::{apply, prune_heads};
use prune_tensor::Tensor;
use prune_transformer::BertModel;
use prune_transformer::fixtures::{fixture_batch, fixture_json, fixture_model};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prune-speedup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn usizes(v: &serde_json::Value) -> Result<Vec<usize>> {
    v.as_array()
        .context("expected a list")?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|x| x as usize)
                .context("expected an integer")
        })
        .collect()
}

#[test]
fn head_pruning_matches_transformers() -> Result<()> {
    let v = fixture_json("pruned_heads.json")?;
    let mut model = fixture_model()?;
    let heads: BTreeMap<usize, Vec<usize>> = v["pruned_heads"]
        .as_object()
        .context("pruned_heads")?
        .iter()
        .map(|(l, h)| Ok((l.parse()?, usizes(h)?)))
        .collect::<Result<_>>()?;
    prune_heads(&mut model, &heads)?;
    for (name, shape) in v["query_weight_shapes"]
        .as_object()
        .context("query_weight_shapes")?
    {
        let found = model.params.get(name).context("no such parameter")?;
        assert_eq!(found.dims(), usizes(shape)?.as_slice(), "{name}");
    }
    assert_eq!(model.config.layer_heads, vec![9, 12, 10, 12, 0, 1]);
    let (batch, _) = fixture_batch()?;
    let ours = logits(&model, &batch);
    let rows = v["logits"].as_array().context("logits")?;
    let expected: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.as_array().into_iter().flatten())
        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
        .collect();
    let err = ours.max_abs_diff(&Tensor::new([4, 2], expected)?);
    println!("pruned heads vs transformers: logits max abs diff {err:.2e}");
    assert!(err <= 1e-4, "{err}");

    // Pruning the same heads again changes nothing; the cut model round-trips through a
    // checkpoint whose config carries transformers' `pruned_heads`.
    prune_heads(&mut model, &heads)?;
    assert_eq!(model.config.layer_heads, vec![9, 12, 10, 12, 0, 1]);
    let dir = scratch("pruned-heads");
    model.save(&dir)?;
    let text = std::fs::read_to_string(dir.join("config.json"))?;
    let saved: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(saved["pruned_heads"]["2"], serde_json::json!([1, 2]));
    let back = BertModel::load(Cpu::new(), &dir)?;
    assert_eq!(logits(&back, &batch), ours);
    std::fs::remove_dir_all(&dir)?;

    let e = prune_heads(&mut model, &BTreeMap::from([(6, vec![0])])).unwrap_err();
    assert!(e.to_string().contains("6 layers"), "{e}");
    let e = prune_heads(&mut model, &BTreeMap::from([(0, vec![12])])).unwrap_err();
    assert!(e.to_string().contains("head 12 out of range"), "{e}");
    Ok(())
}

/// Heads, FFN and hidden width cut, saved, loaded back: per-layer shapes in the config and
/// identical logits.
#[test]
fn cut_model_saves_and_loads_back() -> Result<()> {
    let mut model = tiny(21);
    let t = Touch {
        heads: true,
        ffn: true,
        hidden: true,
        kill_heads_of: Some(0),
    };
    let plan = random_plan(&model.config, t, 5);
    apply(&mut model, &plan, &mut [])?;
    let b = batch(&model.config, 2, 8, 3);
    let dir = scratch("cut");
    model.save(&dir)?;
    let back = BertModel::load(Cpu::new(), &dir)?;
    // Saving adds what transformers needs (class names, architectures); the checkpoint
    // written from the loaded model is the same one.
    assert_eq!(
        back.config.checkpoint_json(true),
        model.config.checkpoint_json(true)
    );
    assert_eq!(back.config.layer_heads, model.config.layer_heads);
    assert_eq!(
        back.config.layer_intermediate,
        model.config.layer_intermediate
    );
    assert_eq!(back.config.layer_heads[0], 0);
    assert!(back.config.hidden() < 32);
    assert_eq!(back.params, model.params);
    assert_eq!(logits(&back, &b), logits(&model, &b));
    let text = std::fs::read_to_string(dir.join("config.json"))?;
    assert!(text.contains("prune_hidden_size"), "{text}");
    assert!(text.contains("prune_layer_intermediate"), "{text}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn zero_head_mask_equals_pruning_all_heads() -> Result<()> {
    let mut masked = tiny(1);
    masked.set_head_mask(Some(vec![vec![1.0; 4], vec![0.0; 4]]))?;
    let mut pruned = tiny(1);
    prune_heads(&mut pruned, &BTreeMap::from([(1, vec![0, 1, 2, 3])]))?;
    assert_eq!(pruned.params.layers[1].query.weight.dims(), &[0, 32]);
    let b = batch(&masked.config, 2, 5, 9);
    let err = logits(&masked, &b).max_abs_diff(&logits(&pruned, &b));
    assert!(err < 1e-6, "{err}");
    Ok(())
}
