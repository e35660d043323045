//! Fuzz targets of the pipeline's recipe loader, with the workspace's mutation fuzzer
//! (`tests/fuzzing` at the workspace root): recipe files (text, then every stage's command
//! line as the pipeline builds it) and `--set` overrides applied to the default recipe.
//! `PRUNE_FUZZ_SECONDS=60 cargo test -p prune-cli --test fuzz_recipe` runs each for a time
//! budget.

#[path = "../../../tests/fuzzing/mod.rs"]
mod fuzzing;

use fuzzing::fuzz;
use prune_cli::recipe::{self, PRESETS, Recipe, STAGES, StageIo};
use std::path::Path;

/// Every stage's command line of `r`, as the pipeline builds it.
fn command_lines(r: &Recipe) {
    let io = StageIo {
        model: Some(Path::new("model")),
        teacher: Some(Path::new("teacher")),
        data: None,
        out: Path::new("out"),
        extra: vec!["--quiet".into()],
    };
    for stage in STAGES {
        let argv = recipe::stage_argv(r, stage, &io);
        assert_eq!(argv[1], stage);
    }
}

#[test]
fn recipe_file() {
    let seeds = PRESETS.iter().map(|(_, t)| t.as_bytes().to_vec()).collect();
    fuzz("recipe_file", seeds, |input| {
        // The pipeline reads a recipe file as UTF-8 text first.
        let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
        let r = recipe::parse(text, &[]).map_err(|e| format!("{e:#}"))?;
        command_lines(&r);
        Ok(())
    });
}

#[test]
fn recipe_overrides() {
    let seeds = [
        "heads.regular-scale=20",
        "common.max-train=2000",
        "ffn.rounds=6\nfinetune.lr=5e-5",
        "distill.mapping=\"ordered\"",
        "common.skip-bad-rows=true",
    ];
    let default = recipe::preset("default").unwrap();
    fuzz(
        "recipe_overrides",
        seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        |input| {
            let text = String::from_utf8_lossy(input);
            let sets: Vec<String> = text.lines().map(str::to_string).collect();
            let r = recipe::parse(default, &sets).map_err(|e| format!("{e:#}"))?;
            command_lines(&r);
            Ok(())
        },
    );
}
