//! Fuzz targets of the pipeline's recipe loader, with the workspace's mutation fuzzer
//! (`tests/fuzzing` at the workspace root): recipe files (text, then every stage's typed
//! options) and `--set` overrides applied to the default recipe.
//! `PRUNE_FUZZ_SECONDS=60 cargo test -p prune-cli --test fuzz_recipe` runs each for a time
//! budget.

#[path = "../../../tests/fuzzing/mod.rs"]
mod fuzzing;

use fuzzing::fuzz;
use prune::pipeline::distill::DistillOptions;
use prune::pipeline::ffn::FfnOptions;
use prune::pipeline::finetune::FinetuneOptions;
use prune::pipeline::heads::HeadsOptions;
use prune::pipeline::recipe::{self, PRESETS, Recipe, stage_options};

/// Every stage's typed options of `r`, as the pipeline reads them: a refusal is an
/// error, never a panic.
fn typed_options(r: &Recipe) -> Result<(), String> {
    let e = |e: prune::pipeline::PipelineError| e.to_string();
    stage_options::<FinetuneOptions>(r, "finetune").map_err(e)?;
    stage_options::<HeadsOptions>(r, "heads").map_err(e)?;
    stage_options::<DistillOptions>(r, "distill").map_err(e)?;
    stage_options::<FfnOptions>(r, "ffn").map_err(e)?;
    recipe::source(r).map_err(e)?;
    Ok(())
}

#[test]
fn recipe_file() {
    let seeds = PRESETS.iter().map(|(_, t)| t.as_bytes().to_vec()).collect();
    fuzz("recipe_file", seeds, |input| {
        // The pipeline reads a recipe file as UTF-8 text first.
        let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
        let r = recipe::parse(text, &[]).map_err(|e| e.to_string())?;
        typed_options(&r)
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
            let r = recipe::parse(&default, &sets).map_err(|e| e.to_string())?;
            typed_options(&r)
        },
    );
}
