//! The library's run from Rust code: two tiny models (a dense one and the same model with
//! heads and FFN neurons cut) measured side by side, exported and reported; the report's
//! figures equal what the saved models give when counted and run again.

use prune_graph::{GroupKind, PruningPlan};
use prune_pipeline::compare::{Measured, check_report_length, compare};
use prune_pipeline::exports;
use prune_pipeline::report::{REPORT_SEQ, Report, StageSummary};
use prune_tensor::CpuBackend;
use prune_transformer::{Batch, BertConfig, BertForSequenceClassification, BertModel};
use std::path::{Path, PathBuf};

type Cpu = CpuBackend<f32>;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prune-pipeline-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(dir: &Path) -> BertForSequenceClassification<Cpu> {
    BertForSequenceClassification::new(BertModel::load(Cpu::new(), dir).unwrap()).unwrap()
}

fn summary(name: &str, m: &Measured<Cpu>) -> StageSummary {
    StageSummary::new(name, &m.stats, m.metric, f64::NAN, 0.0)
}

#[test]
fn two_models_are_measured_exported_and_reported() {
    let root = scratch();
    let config = BertConfig::new(60, 16, 2, 4, 32).unwrap();
    let dense = BertModel::random(Cpu::new(), config, true, true, 3).unwrap();
    let mut cut = dense.clone();
    let mut plan = PruningPlan::new();
    plan.keep(GroupKind::Heads { layer: 0 }, 4, &[1, 3])
        .unwrap();
    plan.keep(GroupKind::Ffn { layer: 1 }, 32, &[0, 5, 6])
        .unwrap();
    prune_speedup::apply(&mut cut, &plan, &mut []).unwrap();
    let (teacher_dir, final_dir) = (root.join("teacher"), root.join("final"));
    dense.save(&teacher_dir).unwrap();
    cut.save(&final_dir).unwrap();

    let t = Measured::new(load(&teacher_dir), 0.75);
    let f = Measured::new(load(&final_dir), 0.70);
    let run = root.join("run");
    let exported = exports::write(&run, &teacher_dir, &final_dir).unwrap();
    let onnx = [
        run.join(&exported.teacher_onnx),
        run.join(&exported.final_onnx),
    ];
    let c = compare(&t, &f, [&onnx[0], &onnx[1]], 0.0).unwrap();
    let report = Report {
        teacher: c.teacher,
        final_model: c.final_model,
        stages: vec![summary("teacher", &t), summary("final", &f)],
        recipe: serde_json::Value::Null,
        exports: exported,
        onnxruntime: c.onnxruntime,
        total_seconds: 1.0,
    };
    report.write(&run).unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let saved = load(&final_dir).bert;
    assert_eq!(json["final"]["params_total"], saved.num_parameters());
    assert_eq!(json["teacher"]["params_total"], dense.num_parameters());
    assert_eq!(json["final"]["heads"], serde_json::json!([2, 4]));
    assert_eq!(json["final"]["intermediate"], serde_json::json!([32, 3]));
    assert_eq!(json["final"]["metric"], 0.70);
    let speedup = json["final"]["speedup_b32"].as_f64().unwrap();
    assert!(speedup.is_finite() && speedup > 0.0);
    assert!(report.markdown().contains("| heads / FFN per layer |"));
    assert!(run.join("report.svg").is_file() && run.join(&onnx[1]).is_file());
    // The transformers export holds the cut model: the same logits.
    let hf = run.join(report.exports.final_hf.as_ref().unwrap());
    let batch = Batch::new(2, 5, (0..10).collect(), vec![0; 10], vec![1; 10]).unwrap();
    let logits = |dir: &Path| load(dir).logits(&batch).unwrap();
    assert_eq!(logits(&hf).data(), logits(&final_dir).data());

    let mut short = BertConfig::new(60, 16, 2, 4, 32).unwrap();
    short.max_position_embeddings = REPORT_SEQ - 1;
    let e = check_report_length(&short).unwrap_err().to_string();
    assert!(e.contains("positions cover only 127"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}
