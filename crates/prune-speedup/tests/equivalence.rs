//! The masked dense model and the model cut by the same plan compute the same function:
//! random plans over heads, FFN neurons, hidden width and all of them, including a layer
//! losing every head, on a tiny BERT, a tiny ELECTRA and the MiniLM checkpoint (ELECTRA's
//! embedding width, which no mask simulates, is checked by what surgery keeps). The cut
//! model has the parameter count the report predicts; optimizer-shaped trees and masks are
//! cut alike; plans compose and replay on the dense checkpoint.

mod common;

use anyhow::Result;
use common::{Touch, batch, logits, masked_vs_cut, minilm, random_plan, tiny, tiny_electra};
use prune_graph::{GroupKind, PruningPlan};
use prune_speedup::{apply, mask_model, plan_from_masks, plan_masks};

/// Every kind of random plan a test runs, with a name.
fn touches(layers: usize) -> Vec<(&'static str, Touch)> {
    let t = Touch::default();
    vec![
        ("heads", Touch { heads: true, ..t }),
        ("ffn", Touch { ffn: true, ..t }),
        ("hidden", Touch { hidden: true, ..t }),
        (
            "combined",
            Touch {
                heads: true,
                ffn: true,
                hidden: true,
                ..t
            },
        ),
        (
            "layer without heads",
            Touch {
                ffn: true,
                hidden: true,
                kill_heads_of: Some(layers - 1),
                ..t
            },
        ),
    ]
}

#[test]
fn tiny_masked_equals_cut() -> Result<()> {
    let dense = tiny(3);
    let b = batch(&dense.config, 3, 9, 1);
    let mut worst: f64 = 0.0;
    for seed in 0..4 {
        for (name, touch) in touches(2) {
            let plan = random_plan(&dense.config, touch, 100 * seed + name.len() as u64);
            let err = masked_vs_cut(&dense, &plan, &b)?;
            assert!(err <= 1e-5, "{name}, seed {seed}: {err:e}");
            worst = worst.max(err);
        }
    }
    // Degenerate: no FFN neuron left in layer 0, no head in layer 1, two hidden channels.
    let mut plan = PruningPlan::new();
    plan.keep(GroupKind::Ffn { layer: 0 }, 64, &[])?;
    plan.keep(GroupKind::Heads { layer: 1 }, 4, &[])?;
    plan.keep(GroupKind::Hidden, 32, &[3, 30])?;
    let err = masked_vs_cut(&dense, &plan, &b)?;
    assert!(err <= 1e-5, "degenerate plan: {err:e}");
    worst = worst.max(err);
    println!("tiny: max |masked - cut| over all plans = {worst:.2e}");
    Ok(())
}

#[test]
fn electra_masked_equals_cut() -> Result<()> {
    // The hidden width starts at the projection's output, which the hidden mask zeroes.
    let dense = tiny_electra(4);
    let b = batch(&dense.config, 3, 9, 1);
    for seed in 0..2 {
        for (name, touch) in touches(2) {
            let plan = random_plan(&dense.config, touch, 100 * seed + name.len() as u64);
            let err = masked_vs_cut(&dense, &plan, &b)?;
            assert!(err <= 1e-5, "ELECTRA {name}, seed {seed}: {err:e}");
        }
    }
    Ok(())
}

#[test]
fn electra_embedding_width_is_cut_by_surgery_only() -> Result<()> {
    let dense = tiny_electra(6);
    let keep = [0, 3, 4, 9, 15];
    let mut plan = PruningPlan::new();
    plan.keep(GroupKind::Embedding, 16, &keep)?;
    let e = plan_masks(&dense, &plan).unwrap_err().to_string();
    assert!(
        e.contains("masks cannot simulate a narrower embedding width"),
        "{e}"
    );
    let mut cut = dense.clone();
    apply(&mut cut, &plan, &mut [])?;
    assert_eq!((cut.config.embedding_width(), cut.config.hidden()), (5, 32));
    let columns = |t: &prune_tensor::Tensor<f32>, cols: &[usize]| -> Vec<f32> {
        let n = t.dims()[t.dims().len() - 1];
        (t.data().chunks(n))
            .flat_map(|row| cols.iter().map(|&c| row[c]))
            .collect()
    };
    let (d, c) = (&dense.params, &cut.params);
    assert_eq!(c.embeddings.word.data(), columns(&d.embeddings.word, &keep));
    assert_eq!(
        c.embeddings.norm.weight.data(),
        columns(&d.embeddings.norm.weight, &keep)
    );
    let (dp, cp) = (d.embeddings_project.as_ref(), c.embeddings_project.as_ref());
    assert_eq!(
        cp.unwrap().weight.data(),
        columns(&dp.unwrap().weight, &keep)
    );
    assert_eq!(cp.unwrap().bias.data(), dp.unwrap().bias.data());
    let b = batch(&dense.config, 2, 7, 3);
    assert!(logits(&cut, &b).data().iter().all(|v| v.is_finite()));
    Ok(())
}

#[test]
fn minilm_masked_equals_cut() -> Result<()> {
    let dense = minilm()?;
    let b = batch(&dense.config, 2, 24, 2);
    let mut worst: f64 = 0.0;
    for (name, touch) in touches(dense.config.num_hidden_layers) {
        let plan = random_plan(&dense.config, touch, 7 + name.len() as u64);
        let err = masked_vs_cut(&dense, &plan, &b)?;
        println!("MiniLM, {name}: max |masked - cut| = {err:.2e}");
        assert!(err <= 1e-5, "{name}: {err:e}");
        worst = worst.max(err);
    }
    println!("MiniLM: max |masked - cut| over all plans = {worst:.2e}");
    Ok(())
}

/// Masks made from a plan give the plan back, and its JSON round trip replays on the
/// dense model to the same parameters.
#[test]
fn masks_give_the_plan_back_and_json_replays() -> Result<()> {
    let dense = tiny(5);
    let t = Touch::default();
    let touch = Touch {
        heads: true,
        ffn: true,
        hidden: true,
        ..t
    };
    let plan = random_plan(&dense.config, touch, 42);
    let (masks, _) = plan_masks(&dense, &plan)?;
    let derived = plan_from_masks(&dense, &masks)?;
    for g in &plan.groups {
        match derived.get(g.kind) {
            Some(d) => assert_eq!(d, g),
            None => assert!(g.is_identity(), "{}", g.kind),
        }
    }
    let back = PruningPlan::from_json(&derived.to_json()?)?;
    let (mut a, mut b) = (dense.clone(), dense.clone());
    apply(&mut a, &plan, &mut [])?;
    apply(&mut b, &back, &mut [])?;
    assert_eq!(a.params, b.params);
    assert_eq!(a.config, b.config);
    Ok(())
}

/// Two plans one after the other equal their composition applied to the dense model.
#[test]
fn successive_plans_compose() -> Result<()> {
    let dense = tiny(7);
    let t = Touch {
        heads: true,
        ffn: true,
        hidden: true,
        ..Touch::default()
    };
    let first = random_plan(&dense.config, t, 1);
    let mut once = dense.clone();
    apply(&mut once, &first, &mut [])?;
    let second = random_plan(&once.config, t, 2);
    let mut twice = once.clone();
    apply(&mut twice, &second, &mut [])?;
    let mut direct = dense.clone();
    apply(&mut direct, &first.then(&second)?, &mut [])?;
    assert_eq!(direct.params, twice.params);
    assert_eq!(direct.config, twice.config);
    // A plan made for the dense widths does not fit the cut model.
    let e = apply(&mut twice, &first, &mut []).unwrap_err();
    assert!(e.to_string().contains("the plan was made for"), "{e}");
    Ok(())
}

/// Optimizer moments (trees mirroring the parameters) and the model's masks are cut like
/// the parameters; a masked model stays the same function after the cut.
#[test]
fn moments_and_masks_follow_the_cut() -> Result<()> {
    let dense = tiny(9);
    let t = Touch {
        heads: true,
        ffn: true,
        hidden: true,
        ..Touch::default()
    };
    let plan = random_plan(&dense.config, t, 3);
    let mut m1 = dense.params.clone();
    let mut m2 = dense.params.map(|_, p| {
        let mut p = p.clone();
        p.data_mut().iter_mut().for_each(|v| *v *= 2.0);
        p
    });
    let mut cut = dense.clone();
    apply(&mut cut, &plan, &mut [&mut m1, &mut m2])?;
    assert_eq!(m1, cut.params);
    for ((_, a), (_, b)) in cut.params.named().into_iter().zip(m2.named()) {
        let doubled: Vec<f32> = a.data().iter().map(|v| v * 2.0).collect();
        assert_eq!(b.data(), doubled.as_slice());
    }

    // Masked by another plan, then cut: same function as before the cut, masks cut along
    // (the hidden mask is all ones once its dropped channels are gone).
    let mut masked = dense.clone();
    let extra = random_plan(&dense.config, Touch { ffn: true, ..t }, 11);
    let mut both = extra.clone();
    both.groups
        .retain(|g| matches!(g.kind, GroupKind::Ffn { .. }));
    mask_model(&mut masked, &both)?;
    let hidden_only = PruningPlan {
        groups: plan
            .groups
            .iter()
            .filter(|g| g.kind == GroupKind::Hidden)
            .cloned()
            .collect(),
    };
    mask_model(&mut masked, &hidden_only)?;
    let b = batch(&dense.config, 2, 6, 4);
    let before = logits(&masked, &b);
    apply(&mut masked, &hidden_only, &mut [])?;
    assert!(masked.hidden_mask().is_none());
    assert!(masked.masks().is_some());
    let after = logits(&masked, &b);
    assert!(before.max_abs_diff(&after) <= 1e-5);

    let mut wrong = dense.params.clone();
    wrong.layers.pop();
    let e = apply(&mut dense.clone(), &plan, &mut [&mut wrong]).unwrap_err();
    assert!(e.to_string().contains("extra tree 0"), "{e}");
    Ok(())
}
