//! Pipeline recipes: TOML with a `[common]` table and one table of flags per stage (a
//! stage's value overrides the common one), `--set STAGE.KEY=VALUE` overrides, and the
//! command line of each stage they describe.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;

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

/// A recipe: flags per stage.
pub type Recipe = BTreeMap<String, toml::Table>;

/// The text of the built-in recipe `name`.
pub fn preset(name: &str) -> Result<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .with_context(|| {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            format!("unknown preset {name:?} (known: {})", known.join(", "))
        })
}

/// Parses a recipe's text (a UTF-8 byte-order mark is allowed) and applies `overrides`
/// (`STAGE.KEY=VALUE`, the value in TOML syntax or else taken as a string); stage names
/// are checked.
pub fn parse(text: &str, overrides: &[String]) -> Result<Recipe> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r: Recipe =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("malformed recipe: {}", e.message()))?;
    for o in overrides {
        let (stage, flag, value) = o
            .split_once('=')
            .and_then(|(key, value)| {
                let (stage, flag) = key.split_once('.')?;
                Some((stage, flag, value))
            })
            .filter(|(stage, flag, _)| !stage.is_empty() && !flag.is_empty())
            .with_context(|| format!("--set {o:?}: expected STAGE.KEY=VALUE"))?;
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
        bail!(
            "recipe: unknown stage [{bad}] (stages: common, {})",
            STAGES.join(", ")
        );
    }
    for (stage, table) in &r {
        if let Some((key, _)) = table.iter().find(|(_, v)| !is_flag_value(v)) {
            bail!("recipe [{stage}] {key}: expected a number, a string or true/false");
        }
    }
    Ok(r)
}

/// Whether a recipe value can be a flag's value: a scalar, not a table, list or date.
fn is_flag_value(v: &toml::Value) -> bool {
    matches!(
        v,
        toml::Value::String(_)
            | toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
    )
}

/// `--key value` flags of a recipe table.
fn flags(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Boolean(true) => out.push(format!("--{k}")),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => out.extend([format!("--{k}"), s.clone()]),
            other => out.extend([format!("--{k}"), other.to_string()]),
        }
    }
    out
}

/// Paths and switches a stage's command line gets besides its recipe flags.
pub struct StageIo<'a> {
    /// The input model (`--model`); none for the default checkpoint.
    pub model: Option<&'a Path>,
    /// The teacher (`--teacher`), for the stages that distil.
    pub teacher: Option<&'a Path>,
    /// The data folder (`--data`), when one was given.
    pub data: Option<&'a Path>,
    /// The stage's output folder.
    pub out: &'a Path,
    /// Extra flags (`--device`, `--quiet`, `--resume`).
    pub extra: Vec<String>,
}

/// The command line of `stage` of recipe `r`.
pub fn stage_argv(r: &Recipe, stage: &str, io: &StageIo<'_>) -> Vec<String> {
    let mut argv = vec!["prune".to_string(), stage.to_string()];
    let mut table = r.get("common").cloned().unwrap_or_default();
    table.extend(r.get(stage).cloned().unwrap_or_default());
    argv.extend(flags(&table));
    let path = |p: &Path| p.to_string_lossy().into_owned();
    for (flag, p) in [
        ("--model", io.model),
        ("--teacher", io.teacher),
        ("--data", io.data),
    ] {
        if let Some(p) = p {
            argv.extend([flag.to_string(), path(p)]);
        }
    }
    argv.extend(["--out".into(), path(io.out)]);
    argv.extend(io.extra.iter().cloned());
    argv
}

/// The `prune eval` command line that evaluates `model` on the recipe's task (the common
/// table's task, max-len, eval-batch-size and skip-bad-rows).
pub fn eval_argv(r: &Recipe, model: &Path, data: Option<&Path>) -> Vec<String> {
    let mut argv = vec!["prune".to_string(), "eval".to_string()];
    let common = r.get("common").cloned().unwrap_or_default();
    let source: toml::Table = ["task", "max-len", "eval-batch-size", "skip-bad-rows"]
        .iter()
        .filter_map(|k| common.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    argv.extend(flags(&source));
    argv.extend(["--model".into(), model.to_string_lossy().into_owned()]);
    if let Some(d) = data {
        argv.extend(["--data".into(), d.to_string_lossy().into_owned()]);
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_stage_names_are_checked() {
        let r = parse(
            "\u{feff}[common]\ntask = \"sst2\"\n",
            &["heads.lr=3e-5".into()],
        )
        .unwrap();
        assert_eq!(r["heads"]["lr"].as_float(), Some(3e-5));
        let io = StageIo {
            model: None,
            teacher: None,
            data: None,
            out: Path::new("o"),
            extra: vec!["--quiet".into()],
        };
        let argv = stage_argv(&r, "heads", &io);
        assert_eq!(
            argv[2..],
            ["--lr", "0.00003", "--task", "sst2", "--out", "o", "--quiet"]
        );
        for (bad, why) in [
            ("[x]\n", "unknown stage [x]"),
            ("[heads\n", "malformed recipe"),
            ("[heads]\nlr = [1]\n", "expected a number"),
        ] {
            let e = parse(bad, &[]).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = parse("", &["heads=1".into()]).unwrap_err().to_string();
        assert!(e.contains("STAGE.KEY=VALUE"), "{e}");
        for (_, text) in PRESETS {
            parse(text, &[]).unwrap();
        }
    }
}
