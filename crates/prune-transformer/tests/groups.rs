//! The groups the trace analysis finds for BERT, checked member by member against the
//! structure of the architecture: on a tiny config, on the MiniLM checkpoint's config, and
//! on configs left behind by surgery (a layer without heads, a layer with one head), and
//! on ELECTRA, whose embeddings have a width of their own.

use anyhow::{Context, Result};
use prune_graph::{Group, GroupKind, Member, Role};
use prune_transformer::BertConfig;
use prune_transformer::groups::bert_groups;
use prune_transformer::paths::require_model_dir;
use std::collections::BTreeSet;

fn m(param: String, axis: usize, role: Role) -> Member {
    Member { param, axis, role }
}

/// What the hidden group must hold, and nothing else.
fn expected_hidden(layers: usize, pooler: bool) -> BTreeSet<Member> {
    let mut s = BTreeSet::new();
    for t in ["word", "position", "token_type"] {
        s.insert(m(
            format!("embeddings.{t}_embeddings.weight"),
            1,
            Role::Producer,
        ));
    }
    for p in ["weight", "bias"] {
        s.insert(m(format!("embeddings.LayerNorm.{p}"), 0, Role::Norm));
    }
    for l in 0..layers {
        let pre = format!("encoder.layer.{l}.");
        for q in ["query", "key", "value"] {
            s.insert(m(
                format!("{pre}attention.self.{q}.weight"),
                1,
                Role::Consumer,
            ));
        }
        for dense in ["attention.output.dense", "output.dense"] {
            s.insert(m(format!("{pre}{dense}.weight"), 0, Role::Producer));
            s.insert(m(format!("{pre}{dense}.bias"), 0, Role::Producer));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            s.insert(m(format!("{pre}{norm}.weight"), 0, Role::Norm));
            s.insert(m(format!("{pre}{norm}.bias"), 0, Role::Norm));
        }
        s.insert(m(
            format!("{pre}intermediate.dense.weight"),
            1,
            Role::Consumer,
        ));
    }
    if pooler {
        s.insert(m("pooler.dense.weight".into(), 1, Role::Consumer));
    }
    s
}

fn expected_heads(l: usize) -> BTreeSet<Member> {
    let pre = format!("encoder.layer.{l}.attention.");
    let mut s = BTreeSet::new();
    for q in ["query", "key", "value"] {
        s.insert(m(format!("{pre}self.{q}.weight"), 0, Role::Producer));
        s.insert(m(format!("{pre}self.{q}.bias"), 0, Role::Producer));
    }
    s.insert(m(format!("{pre}output.dense.weight"), 1, Role::Consumer));
    s
}

fn expected_ffn(l: usize) -> BTreeSet<Member> {
    let pre = format!("encoder.layer.{l}.");
    BTreeSet::from([
        m(format!("{pre}intermediate.dense.weight"), 0, Role::Producer),
        m(format!("{pre}intermediate.dense.bias"), 0, Role::Producer),
        m(format!("{pre}output.dense.weight"), 1, Role::Consumer),
    ])
}

fn members(g: &Group) -> BTreeSet<Member> {
    let set: BTreeSet<Member> = g.members.iter().cloned().collect();
    assert_eq!(set.len(), g.members.len(), "{}: duplicate members", g.kind);
    set
}

/// Checks every group of `config` against the architecture.
fn check(config: &BertConfig, pooler: bool, classifier: bool) -> Result<Vec<Group>> {
    let groups = bert_groups(config, pooler, classifier)?;
    let layers = config.num_hidden_layers;
    assert_eq!(groups.len(), 1 + 2 * layers);
    let hidden = &groups[0];
    assert_eq!(hidden.kind, GroupKind::Hidden);
    assert_eq!((hidden.channels, hidden.unit), (config.hidden(), 1));
    assert_eq!(members(hidden), expected_hidden(layers, pooler));
    for l in 0..layers {
        let h = &groups[1 + 2 * l];
        assert_eq!(h.kind, GroupKind::Heads { layer: l });
        assert_eq!((h.channels, h.unit), (config.heads(l), config.head_dim()));
        assert_eq!(members(h), expected_heads(l), "layer {l}");
        let f = &groups[2 + 2 * l];
        assert_eq!(f.kind, GroupKind::Ffn { layer: l });
        assert_eq!((f.channels, f.unit), (config.intermediate(l), 1));
        assert_eq!(members(f), expected_ffn(l), "layer {l}");
    }
    Ok(groups)
}

fn tiny() -> BertConfig {
    BertConfig::new(50, 32, 2, 4, 64).unwrap()
}

#[test]
fn tiny_bert_groups() -> Result<()> {
    check(&tiny(), true, true)?;
    check(&tiny(), false, false)?;
    Ok(())
}

/// The real checkpoint: the groups traced from the loaded tensors equal those of its
/// config, and every member axis of the loaded tensors holds `channels · unit` entries.
#[test]
fn minilm_groups() -> Result<()> {
    use prune_tensor::{CpuBackend, Storage};
    use prune_transformer::BertModel;
    use prune_transformer::groups::model_groups;

    let dir = require_model_dir()?;
    let config = BertConfig::from_file(&dir.join("config.json"))
        .with_context(|| format!("config of {}", dir.display()))?;
    let model = BertModel::load(CpuBackend::<f32>::new(), &dir)?;
    let groups = model_groups(&model)?;
    assert_eq!(
        groups,
        check(&config, model.params.pooler.is_some(), false)?
    );
    let b = model.backend();
    for g in &groups {
        for m in &g.members {
            let t = model
                .params
                .get(&m.param)
                .expect("a member names a parameter");
            let size = b.shape(t).dims()[m.axis];
            assert_eq!(size, g.channels * g.unit, "{} axis {}", m.param, m.axis);
        }
    }
    Ok(())
}

/// After surgery: a layer without heads (its Q/K/V are `[0, C]` and still take hidden
/// columns), a layer with one head, narrower FFNs and hidden width.
#[test]
fn groups_of_shrunk_configs() -> Result<()> {
    let mut config = tiny();
    config.layer_heads = vec![0, 1];
    config.pruned_heads.insert(0, (0..4).collect());
    config.pruned_heads.insert(1, (1..4).collect());
    config.layer_intermediate = vec![0, 7];
    config.kept_hidden_size = 20;
    config.validate()?;
    let groups = check(&config, true, true)?;
    assert_eq!(groups[1].channels, 0);
    assert_eq!(groups[3].channels, 1);
    Ok(())
}

/// The backward rules agree with the forward ones: a trace of a training step (forward
/// with dropout and caches, then backward into gradients) gives the same groups.
#[test]
fn training_step_trace_gives_the_same_groups() -> Result<()> {
    use prune_graph::TraceBackend;
    use prune_graph::naming::groups_from_trace;
    use prune_tensor::Shape;
    use prune_transformer::groups::place_of;
    use prune_transformer::{Batch, BertModel, BertParams, ForwardOptions, OutputGrads};

    let mut config = tiny();
    config.layer_heads = vec![3, 4];
    config.pruned_heads.insert(0, [2].into());
    let tb = TraceBackend::new();
    let shapes = BertParams::<Shape>::expected(&config, true, true);
    let params = shapes.map(|name, s| tb.param(name, s.clone()));
    let mut model = BertModel::from_params(tb.clone(), config.clone(), params)?;
    model.set_hidden_mask(Some((0..32).map(|i| f32::from(i % 5 != 0)).collect()))?;
    let batch = Batch::new(
        2,
        3,
        vec![1, 2, 3, 4, 5, 6],
        vec![0, 0, 1, 0, 1, 1],
        vec![1; 6],
    )?;
    let (out, cache) = model.forward_t(&batch, &ForwardOptions::default())?;
    let mut grads = model.zero_grads()?;
    let d = OutputGrads {
        logits: out.logits,
        ..OutputGrads::default()
    };
    model.backward(cache, d, &mut grads)?;
    let trained = groups_from_trace(&tb.trace(), 2, place_of)?;
    assert_eq!(trained, bert_groups(&config, true, true)?);
    Ok(())
}

/// ELECTRA with embeddings of width 16 projected to 32: the projection's output rows lead
/// the hidden group, and the tables, their LayerNorm and the projection's input columns
/// form the embedding group, last.
#[test]
fn electra_groups_split_at_the_projection() -> Result<()> {
    let mut v = tiny().to_json();
    v["model_type"] = "electra".into();
    v["embedding_size"] = 16.into();
    let config = BertConfig::from_json(&v)?;
    let groups = bert_groups(&config, true, true)?;
    assert_eq!(groups.len(), 2 + 2 * 2);
    let mut hidden = expected_hidden(2, true);
    hidden.retain(|m| !m.param.starts_with("embeddings."));
    hidden.insert(m("embeddings_project.weight".into(), 0, Role::Producer));
    hidden.insert(m("embeddings_project.bias".into(), 0, Role::Producer));
    assert_eq!(groups[0].kind, GroupKind::Hidden);
    assert_eq!((groups[0].channels, members(&groups[0])), (32, hidden));
    let mut embedding = expected_hidden(0, false);
    embedding.insert(m("embeddings_project.weight".into(), 1, Role::Consumer));
    let last = groups.last().unwrap();
    assert_eq!(last.kind, GroupKind::Embedding);
    assert_eq!((last.channels, members(last)), (16, embedding));
    for l in 0..2 {
        assert_eq!(members(&groups[1 + 2 * l]), expected_heads(l));
        assert_eq!(members(&groups[2 + 2 * l]), expected_ffn(l));
    }
    Ok(())
}
