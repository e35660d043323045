//! `config_list` validation (one test per kind of error) and the dry-run listing, on the
//! tiny model's modules.

mod common;

use prune_pruners::{ConfigList, Granularity, OpType, PrunerError, modules_of};

fn modules() -> Vec<prune_pruners::Module> {
    modules_of(&common::tiny(1).bert)
}

fn select(json: &str) -> prune_pruners::Result<prune_pruners::Selection> {
    ConfigList::from_json_str(json)?.select(&modules())
}

fn err(json: &str) -> (PrunerError, String) {
    let e = select(json).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn unknown_key_suggests_the_known_one() {
    let (e, msg) = err(r#"[{"op_types": ["Linear"], "sparsty": 0.5}]"#);
    assert!(
        matches!(e, PrunerError::UnknownKey { entry: 0, .. }),
        "{e:?}"
    );
    assert!(
        msg.contains("`sparsty`") && msg.contains("did you mean `sparsity`"),
        "{msg}"
    );
    let (_, msg) = err(r#"[{"op_types": ["Linear"], "sparsity": 0.5}, {"op_name": ["x"]}]"#);
    assert!(
        msg.contains("entry 1") && msg.contains("`op_names`"),
        "{msg}"
    );
    let (_, msg) = err(r#"[{"op_types": ["Linear"], "sparsity": 0.5, "zzz": 1}]"#);
    assert!(!msg.contains("did you mean"), "{msg}");
}

#[test]
fn names_read_from_the_file_are_shown_on_one_line() {
    let (_, msg) = err(r#"[{"op_types": ["Linear"], "sparse_ratio": 0.5, "a\nb": 1}]"#);
    assert_eq!(msg, "config_list entry 0: unknown key `a\\nb`");
    let (_, msg) = err(r#"[{"op_types": ["Lin\tear"], "sparse_ratio": 0.5}]"#);
    assert!(msg.starts_with("config_list entry 0, key `op_types`: unknown op type `Lin\\tear`"));
    let (_, msg) = err(r#"[{"op_names": ["x\ny"], "sparse_ratio": 0.5}]"#);
    assert!(msg.contains("op_names `x\\ny` matches no module"), "{msg}");
}

#[test]
fn sparsity_outside_zero_one_is_refused() {
    for bad in ["1.0", "-0.1", "1.5"] {
        let (e, msg) = err(&format!(
            r#"[{{"op_types": ["Linear"], "sparse_ratio": {bad}}}]"#
        ));
        assert!(
            matches!(&e, PrunerError::InvalidValue { key, .. } if key == "sparse_ratio"),
            "{e:?}"
        );
        assert!(msg.contains("outside [0, 1)"), "{msg}");
    }
    let (_, msg) = err(r#"[{"op_types": ["Linear"], "sparsity_per_layer": "half"}]"#);
    assert!(msg.contains("expected a number"), "{msg}");
    let (_, msg) = err(
        r#"[{"op_types": ["Linear"], "sparse_ratio": 0.5, "min_sparse_ratio": 0.6,
             "max_sparse_ratio": 0.4}]"#,
    );
    assert!(msg.contains("above max_sparse_ratio"), "{msg}");
    let (_, msg) = err(r#"[{"op_types": ["Linear"], "sparse_ratio": 0.5, "sparsity": 0.4}]"#);
    assert!(msg.contains("already given"), "{msg}");
}

#[test]
fn a_regex_or_name_that_matches_nothing_is_refused() {
    let (e, msg) = err(
        r#"[{"op_types": ["Linear"], "op_names_re": ["bert\\.encoder\\.layer\\.9\\..*"],
             "sparse_ratio": 0.5}]"#,
    );
    assert!(
        matches!(
            e,
            PrunerError::NoMatch {
                key: "op_names_re",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("matches no module"), "{msg}");
    let (_, msg) = err(r#"[{"op_names_re": ["(unclosed"], "sparse_ratio": 0.5}]"#);
    assert_eq!(
        msg,
        "config_list entry 0, key `op_names_re`: invalid regex `(unclosed`: unclosed group"
    );
    let (_, msg) =
        err(r#"[{"op_names": ["bert.encoder.layer.0.attention.self.quer"], "sparse_ratio": 0.5}]"#);
    assert!(
        msg.contains("did you mean `bert.encoder.layer.0.attention.self.query`"),
        "{msg}"
    );
    let (_, msg) = err(r#"[{"op_partial_names": ["attn"], "sparse_ratio": 0.5}]"#);
    assert!(msg.contains("op_partial_names `attn`"), "{msg}");
    // names exist, but the type filter leaves nothing
    let (_, msg) = err(
        r#"[{"op_types": ["Embedding"], "op_partial_names": ["attention"], "sparse_ratio": 0.5}]"#,
    );
    assert!(msg.contains("selects no module"), "{msg}");
}

#[test]
fn conflicting_entries_are_refused() {
    let (e, msg) = err(
        r#"[{"op_partial_names": ["attention"], "op_types": ["Linear"], "sparse_ratio": 0.5},
            {"op_names": ["encoder.layer.1.attention.self.key"], "sparse_ratio": 0.2}]"#,
    );
    assert!(
        matches!(
            e,
            PrunerError::Conflict {
                first: 0,
                second: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.contains("bert.encoder.layer.1.attention.self.key"),
        "{msg}"
    );
    let (_, msg) = err(
        r#"[{"op_names": ["encoder.layer.0.intermediate.dense"], "sparse_ratio": 0.5,
             "dependency_group_id": 1},
            {"op_names": ["encoder.layer.1.intermediate.dense"], "sparse_ratio": 0.3,
             "dependency_group_id": 1}]"#,
    );
    assert!(msg.contains("share a sparse_ratio"), "{msg}");
    let (e, _) = err(
        r#"[{"op_names": ["encoder.layer.0.intermediate.dense"], "sparse_ratio": 0.5,
             "dependency_group_id": "d"},
            {"op_names": ["encoder.layer.0.output.dense"], "sparse_ratio": 0.5,
             "dependency_group_id": "d"}]"#,
    );
    assert!(
        matches!(e, PrunerError::Group { .. }),
        "64 rows vs 32 rows: {e:?}"
    );
    let (_, msg) = err(r#"[{"exclude": true, "op_types": ["Linear"], "sparse_ratio": 0.5}]"#);
    assert!(msg.contains("exclude entry"), "{msg}");
    let (_, msg) = err(r#"[{"op_types": ["Linear"]}]"#);
    assert!(msg.contains("needs sparse_ratio"), "{msg}");
    let (_, msg) = err(r#"[{"sparse_ratio": 0.5}]"#);
    assert!(msg.contains("needs op_types"), "{msg}");
    let (e, _) = err(
        r#"[{"op_names": ["encoder.layer.0.intermediate.dense"], "sparse_ratio": 0.5,
             "granularity": [5, 1]}]"#,
    );
    assert!(matches!(e, PrunerError::Granularity { .. }), "{e:?}");
}

#[test]
fn exclude_entries_take_modules_back_from_earlier_entries() {
    let json = r#"[
        {"op_types": ["Linear"], "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\.*"],
         "sparse_threshold": 0.1, "granularity": [8, 8]},
        {"exclude": true, "op_names": ["bert.encoder.layer.0.attention.self.query"]}]"#;
    let sel = select(json).unwrap();
    // Q, K, V, O of two layers, minus one
    assert_eq!(sel.targets.len(), 7);
    assert!(
        sel.target("encoder.layer.0.attention.self.query.weight")
            .is_none()
    );
    let o = sel
        .target("bert.encoder.layer.1.attention.output.dense.weight")
        .unwrap();
    assert_eq!(o.op_type, OpType::Linear);
    assert_eq!(o.blocking.metric_shape(), [4, 4]);
    assert_eq!(o.sparse_threshold, Some(0.1));
    let toml = r#"
        [[config_list]]
        op_types = ["Linear"]
        op_names_re = ['bert\.encoder\.layer\.[0-9]*\.attention\.*']
        sparse_threshold = 0.1
        granularity = [8, 8]
        [[config_list]]
        exclude = true
        op_names = ["bert.encoder.layer.0.attention.self.query"]
    "#;
    assert_eq!(
        ConfigList::from_toml_str(toml)
            .unwrap()
            .select(&modules())
            .unwrap(),
        sel
    );
}

#[test]
fn dry_run_lists_each_entry_with_shapes_and_metric_shapes() {
    let cl = ConfigList::from_json_str(
        r#"[{"op_types": ["Embedding"], "op_names_re": ["bert\\.embeddings.*"],
             "sparse_ratio": 0.5, "dependency_group_id": 1, "granularity": [-1, 1]},
            {"op_names": ["bert.encoder.layer.1.intermediate.dense"], "sparsity": 0.25},
            {"exclude": true, "op_names": ["embeddings.token_type_embeddings"]}]"#,
    )
    .unwrap();
    assert_eq!(cl.entries[0].granularity, Granularity::Block(vec![-1, 1]));
    let text = cl.dry_run(&modules()).unwrap();
    let expected = "\
entry 0 (sparse_ratio 0.5, dependency group 1, granularity [-1, 1]): prunes 2 module(s)
  bert.embeddings.word_embeddings                      Embedding [20, 32] -> metric [1, 32]
  bert.embeddings.position_embeddings                  Embedding [16, 32] -> metric [1, 32]
entry 1 (sparse_ratio 0.25, granularity default): prunes 1 module(s)
  bert.encoder.layer.1.intermediate.dense              Linear    [64, 32] -> metric [64, 1]
entry 2 (exclude): excludes 1 module(s)
  bert.embeddings.token_type_embeddings                Embedding [2, 32]
total: 3 weight(s), 3200 elements";
    assert_eq!(text, expected, "\n{text}");
}
