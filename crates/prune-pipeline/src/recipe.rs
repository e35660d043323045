//! Pipeline recipes: TOML with a `[common]` table and one table of options per stage (a
//! stage's value overrides the common one), `--set STAGE.KEY=VALUE` overrides, and each
//! stage's typed options they describe.

use crate::error::{PipelineError, Result};
use crate::refuse;
use crate::source::Source;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// The stages a recipe may configure, in the order they run.
pub const STAGES: [&str; 4] = ["finetune", "heads", "distill", "ffn"];

/// Recipes built into the binary.
pub const PRESETS: [(&str, &str); 2] = [
    ("default", include_str!("../recipes/default.toml")),
    (
        "nni-bert-base-mnli",
        include_str!("../recipes/nni-bert-base-mnli.toml"),
    ),
];

/// A recipe: option values per stage (and `common`), keyed by the stage's flag names.
pub type Recipe = BTreeMap<String, toml::Table>;

/// Built-in recipes that change another: (name, base preset, tables that replace the base's).
pub const VARIANTS: [(&str, &str, &str); 1] = [(
    "keep-width",
    "default",
    include_str!("../recipes/keep-width.toml"),
)];

/// The text of the built-in recipe `name` (a variant: its base with the variant's tables in
/// place of the base's).
pub fn preset(name: &str) -> Result<String> {
    if let Some((_, base, tables)) = VARIANTS.iter().find(|(n, ..)| *n == name) {
        let mut r = parse(&preset(base)?, &[])?;
        r.extend(parse(tables, &[])?);
        return toml::to_string(&r).map_err(|e| PipelineError::Input(e.to_string()));
    }
    match PRESETS.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => Ok(text.to_string()),
        None => {
            let known: Vec<&str> = (PRESETS.iter().map(|(n, _)| *n))
                .chain(VARIANTS.iter().map(|(n, ..)| *n))
                .collect();
            refuse!("unknown preset {name:?} (known: {})", known.join(", "))
        }
    }
}

/// Parses a recipe's text (a UTF-8 byte-order mark is allowed) and applies `overrides`
/// (`STAGE.KEY=VALUE`, the value in TOML syntax or else taken as a string); stage names
/// are checked.
pub fn parse(text: &str, overrides: &[String]) -> Result<Recipe> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r: Recipe = toml::from_str(text)
        .map_err(|e| PipelineError::Input(format!("malformed recipe: {}", e.message())))?;
    for o in overrides {
        let Some((stage, flag, value)) = o
            .split_once('=')
            .and_then(|(key, value)| {
                let (stage, flag) = key.split_once('.')?;
                Some((stage, flag, value))
            })
            .filter(|(stage, flag, _)| !stage.is_empty() && !flag.is_empty())
        else {
            refuse!("--set {o:?}: expected STAGE.KEY=VALUE");
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        r.entry(stage.to_string())
            .or_default()
            .insert(flag.to_string(), value);
    }
    if let Some(bad) = r
        .keys()
        .find(|k| *k != "common" && !STAGES.contains(&k.as_str()))
    {
        refuse!(
            "recipe: unknown stage [{bad}] (stages: common, {})",
            STAGES.join(", ")
        );
    }
    for (stage, table) in &r {
        if let Some((key, _)) = table.iter().find(|(_, v)| !is_flag_value(v)) {
            refuse!("recipe [{stage}] {key}: expected a number, a string or true/false");
        }
    }
    Ok(r)
}

/// Whether a recipe value can be an option's value: a scalar, not a table, list or date.
fn is_flag_value(v: &toml::Value) -> bool {
    matches!(
        v,
        toml::Value::String(_)
            | toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
    )
}

/// Options the pipeline sets for every stage (the input and output folders, the device,
/// resuming); a recipe may not.
pub const SET_BY_PIPELINE: [&str; 6] = ["model", "teacher", "data", "out", "device", "resume"];

/// The long flag names of the options `T`.
fn flag_names<T: clap::Args>() -> Vec<String> {
    T::augment_args(clap::Command::new("recipe"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// Refuses a key of table `[table]` that the pipeline sets itself or that is not one of
/// `stage`'s flags (`known`).
fn check_keys(table: &str, keys: &toml::Table, stage: &str, known: &[String]) -> Result<()> {
    for key in keys.keys() {
        if SET_BY_PIPELINE.contains(&key.as_str()) {
            refuse!("recipe [{table}] {key}: the pipeline sets it for every stage");
        }
        if !known.contains(key) {
            refuse!(
                "recipe [{table}] {key}: not an option of the {stage} stage (see `prune {stage} --help`)"
            );
        }
    }
    Ok(())
}

/// The options `T` of `stage` from `table` (its keys checked), the rest at their
/// defaults; a value of the wrong type is named by its key.
fn typed<T: clap::Args + DeserializeOwned>(stage: &str, table: toml::Table) -> Result<T> {
    let parse = |t: toml::Table| toml::Value::Table(t).try_into::<T>();
    parse(table.clone()).map_err(|e| {
        let key = table.iter().find(|(k, v)| {
            let alone = toml::Table::from_iter([((*k).clone(), (*v).clone())]);
            parse(alone).is_err()
        });
        let at = key.map_or(String::new(), |(k, _)| format!(" {k}"));
        PipelineError::Input(format!("recipe [{stage}]{at}: {}", e.message()))
    })
}

/// The values `r` sets for `stage`: its table over the common one.
pub fn stage_table(r: &Recipe, stage: &str) -> toml::Table {
    let mut table = r.get("common").cloned().unwrap_or_default();
    table.extend(r.get(stage).cloned().unwrap_or_default());
    table
}

/// The options of `stage` in `r` ([`stage_table`]; the rest take their defaults). Every
/// key of `[common]` must be an option of every stage.
pub fn stage_options<T: clap::Args + DeserializeOwned>(r: &Recipe, stage: &str) -> Result<T> {
    let known = flag_names::<T>();
    for table in ["common", stage] {
        check_keys(
            table,
            &r.get(table).cloned().unwrap_or_default(),
            stage,
            &known,
        )?;
    }
    typed(stage, stage_table(r, stage))
}

/// The task and how it is read, as the common table sets them (its other keys are
/// training options).
pub fn source(r: &Recipe) -> Result<Source> {
    let known = flag_names::<Source>();
    let mut table = r.get("common").cloned().unwrap_or_default();
    table.retain(|k, _| known.iter().any(|n| n == k) || SET_BY_PIPELINE.contains(&k));
    check_keys("common", &table, "eval", &known)?;
    typed("common", table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::{DistillLoss, DistillOptions};
    use crate::ffn::FfnOptions;
    use crate::finetune::FinetuneOptions;
    use crate::heads::HeadsOptions;
    use clap::Parser;

    /// Options `T` as a command line parses them.
    #[derive(Parser)]
    struct Flags<T: clap::Args> {
        #[command(flatten)]
        options: T,
    }

    /// `T` from the command line `args` and from an empty recipe table, as `Debug` text.
    fn both<T: clap::Args + DeserializeOwned + std::fmt::Debug>(
        stage: &str,
        args: &[&str],
        clear: impl Fn(&mut T),
    ) -> (String, String) {
        let mut flags = Flags::<T>::try_parse_from(args).unwrap().options;
        clear(&mut flags);
        let recipe = parse(&format!("[{stage}]\n"), &[]).unwrap();
        let typed: T = stage_options(&recipe, stage).unwrap();
        (format!("{flags:?}"), format!("{typed:?}"))
    }

    #[test]
    fn a_flag_and_a_recipe_key_left_out_take_the_same_default() {
        let out = ["x", "--out", "o"];
        let with_teacher = ["x", "--out", "o", "--teacher", "t"];
        let (a, b) = both::<FinetuneOptions>("finetune", &out, |o| o.stage.out = "".into());
        assert_eq!(a, b);
        let (a, b) = both::<HeadsOptions>("heads", &out, |o| o.stage.out = "".into());
        assert_eq!(a, b);
        let (a, b) = both::<DistillOptions>("distill", &with_teacher, |o| {
            (o.stage.out, o.teacher) = ("".into(), "".into())
        });
        assert_eq!(a, b);
        let (a, b) = both::<FfnOptions>("ffn", &with_teacher, |o| {
            (o.stage.out, o.teacher) = ("".into(), "".into())
        });
        assert_eq!(a, b);
    }

    #[test]
    fn the_distillation_loss_is_set_per_stage() {
        let r = parse("[ffn]\nalpha-layer = 0\nmapping = \"ordered\"\n", &[]).unwrap();
        let ffn: FfnOptions = stage_options(&r, "ffn").unwrap();
        assert_eq!(ffn.loss.alpha_layer, 0.0);
        assert!(matches!(ffn.loss.mapping, crate::distill::Mapping::Ordered));
        let distill: DistillOptions = stage_options(&r, "distill").unwrap();
        assert_eq!(distill.loss.alpha_layer, DistillLoss::default().alpha_layer);
    }

    #[test]
    fn overrides_stage_names_and_keys_are_checked() {
        let r = parse(
            "\u{feff}[common]\ntask = \"rte\"\nmax-train = 9\n",
            &["heads.lr=3e-5".into(), "heads.regular-scale=20".into()],
        )
        .unwrap();
        assert_eq!(r["heads"]["lr"].as_float(), Some(3e-5));
        let heads: HeadsOptions = stage_options(&r, "heads").unwrap();
        assert_eq!(heads.stage.train.lr, 3e-5);
        assert_eq!(heads.regular_scale, 20.0, "an integer is taken as a float");
        assert_eq!(heads.stage.train.max_train, Some(9), "common applies");
        assert_eq!(heads.stage.source.task, prune_data::Task::Rte);
        assert_eq!(heads.warmup_steps, HeadsOptions::default().warmup_steps);
        assert_eq!(source(&r).unwrap().task, prune_data::Task::Rte);
        for (bad, why) in [
            ("[x]\n", "unknown stage [x]"),
            ("[heads\n", "malformed recipe"),
            ("[heads]\nlr = [1]\n", "expected a number"),
        ] {
            let e = parse(bad, &[]).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        for (set, why) in [
            (
                "heads.no-such-flag=1",
                "recipe [heads] no-such-flag: not an option",
            ),
            ("heads.out=\"x\"", "the pipeline sets it"),
            ("heads.lr=\"fast\"", "recipe [heads]"),
            ("heads.warmup-steps=-1", "recipe [heads]"),
        ] {
            let r = parse("", &[set.into()]).unwrap();
            let e = stage_options::<HeadsOptions>(&r, "heads")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{set}: {e}");
        }
        let e = parse("", &["heads=1".into()]).unwrap_err().to_string();
        assert!(e.contains("STAGE.KEY=VALUE"), "{e}");
        for (_, text) in PRESETS {
            parse(text, &[]).unwrap();
        }
    }

    #[test]
    fn a_variant_replaces_only_its_tables() {
        let base = parse(&preset("default").unwrap(), &[]).unwrap();
        let variant = parse(&preset("keep-width").unwrap(), &[]).unwrap();
        for stage in ["common", "finetune", "heads", "distill"] {
            assert_eq!(base[stage], variant[stage], "{stage}");
        }
        let (b, v): (FfnOptions, FfnOptions) = (
            stage_options(&base, "ffn").unwrap(),
            stage_options(&variant, "ffn").unwrap(),
        );
        assert!(b.target_params.is_some() && v.target_params.is_none());
        assert_eq!(v.loss.alpha_layer, DistillLoss::default().alpha_layer);
        assert_eq!(v.stage.train.max_steps, Some(900));
        let e = preset("no-such").unwrap_err().to_string();
        assert!(e.contains("keep-width"), "{e}");
    }
}
