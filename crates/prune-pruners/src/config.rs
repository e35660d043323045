//! `ConfigList`: NNI's `config_list`, read from JSON (a list of tables, or a table with a
//! `config_list` list) or TOML (`[[config_list]]` tables), with NNI's keys and aliases, and
//! checked entry by entry: unknown keys (with a did-you-mean), types, ranges, regexes.
//! Checks that need the model (names that match nothing, entries that disagree) live in
//! [`crate::select`].

use crate::error::{PrunerError, Result, did_you_mean};
use crate::granularity::Granularity;
use crate::modules::OpType;
use prune_transformer::one_line;
use regex::Regex;
use serde_json::{Map, Value};
use std::path::Path;

/// Every key an entry may have (aliases included).
pub const KEYS: &[&str] = &[
    "op_names",
    "op_names_re",
    "op_partial_names",
    "op_types",
    "exclude_op_names",
    "exclude_op_names_re",
    "exclude_op_types",
    "exclude",
    "sparse_ratio",
    "sparsity",
    "sparsity_per_layer",
    "sparse_threshold",
    "max_sparse_ratio",
    "min_sparse_ratio",
    "global_group_id",
    "dependency_group_id",
    "granularity",
    "target_names",
];

/// Keys that mean `sparse_ratio`.
const RATIO_KEYS: [&str; 3] = ["sparse_ratio", "sparsity", "sparsity_per_layer"];

/// One entry of a `config_list`. An entry selects modules by name and type and says how
/// much of their weights to prune; an `exclude` entry removes modules from the entries
/// before it (NNI: the last entry matching a module decides).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigEntry {
    /// Exact module names (with or without `bert.`).
    pub op_names: Vec<String>,
    /// Regexes matched at the start of module names (Python's `re.match`), against the
    /// `bert.`-prefixed name or the canonical one.
    pub op_names_re: Vec<String>,
    /// Substrings of module names.
    pub op_partial_names: Vec<String>,
    /// Module types; when given, a module must have one of them (and match the names, if
    /// any are given).
    pub op_types: Vec<OpType>,
    /// Exact module names this entry leaves out.
    pub exclude_op_names: Vec<String>,
    /// Regexes of module names this entry leaves out.
    pub exclude_op_names_re: Vec<String>,
    /// Module types this entry leaves out.
    pub exclude_op_types: Vec<OpType>,
    /// An exclude entry: its modules are not pruned by the entries before it.
    pub exclude: bool,
    /// Fraction of the metric blocks to prune, in [0, 1) (aliases `sparsity`,
    /// `sparsity_per_layer`).
    pub sparse_ratio: Option<f64>,
    /// Keep blocks whose metric is at least this (movement: a threshold on σ(score)).
    pub sparse_threshold: Option<f64>,
    /// Upper bound on a module's sparse ratio (global groups, thresholds).
    pub max_sparse_ratio: Option<f64>,
    /// Lower bound on a module's sparse ratio.
    pub min_sparse_ratio: Option<f64>,
    /// Modules of entries with the same id are ranked together (one global ratio).
    pub global_group_id: Option<String>,
    /// Modules of entries with the same id share one mask (coupled channels).
    pub dependency_group_id: Option<String>,
    /// Block shape of the metric and mask.
    pub granularity: Granularity,
}

impl ConfigEntry {
    /// Whether the entry selects anything by name (else: every module of its types).
    pub fn has_names(&self) -> bool {
        !(self.op_names.is_empty()
            && self.op_names_re.is_empty()
            && self.op_partial_names.is_empty())
    }

    /// Whether the entry sets a pruning target.
    pub fn has_target(&self) -> bool {
        self.sparse_ratio.is_some() || self.sparse_threshold.is_some()
    }

    /// A short description of the entry's target, for listings.
    pub fn describe(&self) -> String {
        if self.exclude {
            return "exclude".into();
        }
        let mut parts = Vec::new();
        if let Some(r) = self.sparse_ratio {
            parts.push(format!("sparse_ratio {r}"));
        }
        if let Some(t) = self.sparse_threshold {
            parts.push(format!("sparse_threshold {t}"));
        }
        if let Some(m) = self.min_sparse_ratio {
            parts.push(format!("min {m}"));
        }
        if let Some(m) = self.max_sparse_ratio {
            parts.push(format!("max {m}"));
        }
        if let Some(g) = &self.global_group_id {
            parts.push(format!("global group {g}"));
        }
        if let Some(g) = &self.dependency_group_id {
            parts.push(format!("dependency group {g}"));
        }
        parts.push(format!("granularity {}", self.granularity));
        parts.join(", ")
    }

    /// Checks the entry on its own (index `i` for messages): ranges, required keys,
    /// combinations and regex syntax.
    pub fn validate(&self, i: usize) -> Result<()> {
        let selectors = self.has_names() || !self.op_types.is_empty();
        if !selectors {
            return Err(PrunerError::value(
                i,
                "op_types",
                "an entry needs op_types, op_names, op_names_re or op_partial_names",
            ));
        }
        let ratio = |key: &str, v: Option<f64>, hi_open: bool| -> Result<()> {
            match v {
                Some(x) if !x.is_finite() || x < 0.0 || (hi_open && x >= 1.0) || x > 1.0 => {
                    let range = if hi_open { "[0, 1)" } else { "[0, 1]" };
                    Err(PrunerError::value(
                        i,
                        key,
                        format!("{x} is outside {range}"),
                    ))
                }
                _ => Ok(()),
            }
        };
        ratio("sparse_ratio", self.sparse_ratio, true)?;
        ratio("min_sparse_ratio", self.min_sparse_ratio, false)?;
        ratio("max_sparse_ratio", self.max_sparse_ratio, false)?;
        if let Some(t) = self.sparse_threshold
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(PrunerError::value(
                i,
                "sparse_threshold",
                format!("{t} must be a finite number >= 0"),
            ));
        }
        if let (Some(lo), Some(hi)) = (self.min_sparse_ratio, self.max_sparse_ratio)
            && lo > hi
        {
            return Err(PrunerError::value(
                i,
                "min_sparse_ratio",
                format!("{lo} is above max_sparse_ratio {hi}"),
            ));
        }
        if self.exclude {
            let has_settings = self.has_target()
                || self.min_sparse_ratio.is_some()
                || self.max_sparse_ratio.is_some()
                || self.global_group_id.is_some()
                || self.dependency_group_id.is_some();
            if has_settings {
                return Err(PrunerError::value(
                    i,
                    "exclude",
                    "an exclude entry only selects modules; it takes no sparsity or group keys",
                ));
            }
        } else if !self.has_target() {
            return Err(PrunerError::value(
                i,
                "sparse_ratio",
                "an entry needs sparse_ratio (or sparsity) or sparse_threshold",
            ));
        }
        if self.global_group_id.is_some() && self.dependency_group_id.is_some() {
            return Err(PrunerError::value(
                i,
                "global_group_id",
                "an entry is either in a global group or in a dependency group, not both",
            ));
        }
        let grouped = self.global_group_id.is_some() || self.dependency_group_id.is_some();
        if grouped && self.sparse_ratio.is_none() {
            return Err(PrunerError::value(
                i,
                if self.global_group_id.is_some() {
                    "global_group_id"
                } else {
                    "dependency_group_id"
                },
                "a group allocates a sparse_ratio; the entry has none",
            ));
        }
        for (key, list) in [
            ("op_names_re", &self.op_names_re),
            ("exclude_op_names_re", &self.exclude_op_names_re),
        ] {
            for p in list {
                anchored(p).map_err(|why| PrunerError::value(i, key, why))?;
            }
        }
        Ok(())
    }
}

/// `pattern` compiled to match at the start of a name, as Python's `re.match`.
/// An invalid pattern's error is one line: the regex crate's message without its snippet.
pub(crate) fn anchored(pattern: &str) -> std::result::Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})")).map_err(|e| {
        let text = e.to_string();
        let why = text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(text.trim());
        format!("invalid regex `{}`: {}", one_line(pattern), one_line(why))
    })
}

/// A `config_list`: entries applied in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigList {
    /// The entries.
    pub entries: Vec<ConfigEntry>,
}

impl ConfigList {
    /// A list from entries, each checked with [`ConfigEntry::validate`].
    pub fn new(entries: Vec<ConfigEntry>) -> Result<Self> {
        for (i, e) in entries.iter().enumerate() {
            e.validate(i)?;
        }
        Ok(ConfigList { entries })
    }

    /// Parses JSON: a list of entries, or an object whose `config_list` is one (a leading
    /// UTF-8 byte-order mark is allowed).
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(without_bom(text)).map_err(|e| PrunerError::Parse {
            format: "JSON",
            why: e.to_string(),
        })?;
        Self::from_value(&v, "JSON")
    }

    /// Parses TOML: `[[config_list]]` tables (a leading UTF-8 byte-order mark is allowed).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let text = without_bom(text);
        let v: Value = toml::from_str(text).map_err(|e| PrunerError::Parse {
            format: "TOML",
            why: toml_error(text, &e),
        })?;
        Self::from_value(&v, "TOML")
    }

    /// Reads a `.toml` file as TOML and anything else as JSON.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| PrunerError::file(path, e))?;
        let parsed = if path.extension().is_some_and(|e| e == "toml") {
            Self::from_toml_str(&text)
        } else {
            Self::from_json_str(&text)
        };
        parsed.map_err(|e| match e {
            PrunerError::Parse { .. } => PrunerError::file(path, e),
            other => other,
        })
    }

    /// Builds the list from a parsed document (a list, or a table with `config_list`).
    pub fn from_value(v: &Value, format: &'static str) -> Result<Self> {
        let list = match v {
            Value::Array(a) => a,
            Value::Object(o) => match o.get("config_list") {
                Some(Value::Array(a)) => a,
                _ => {
                    return Err(PrunerError::Parse {
                        format,
                        why: "expected a list of entries or a `config_list` list of tables".into(),
                    });
                }
            },
            _ => {
                return Err(PrunerError::Parse {
                    format,
                    why: "expected a list of entries".into(),
                });
            }
        };
        let entries = list
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                Value::Object(m) => parse_entry(i, m),
                other => Err(PrunerError::value(
                    i,
                    "<entry>",
                    format!("expected a table of keys, got {other}"),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(entries)
    }
}

/// `text` without a leading UTF-8 byte-order mark.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// A TOML parse error of `text` on one line: where, then what (the parser's own message
/// spans several lines, with a snippet of the text).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let what = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(start) = e.span().map(|s| s.start.min(text.len())) else {
        return what;
    };
    let before = &text.as_bytes()[..start];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    format!("line {line}, column {column}: {what}")
}

/// Strings from a list of strings (or one string).
fn strings(i: usize, key: &str, v: &Value) -> Result<Vec<String>> {
    let bad = || PrunerError::value(i, key, format!("expected a list of strings, got {v}"));
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

fn number(i: usize, key: &str, v: &Value) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| PrunerError::value(i, key, format!("expected a number, got {v}")))
}

fn op_types(i: usize, key: &str, v: &Value) -> Result<Vec<OpType>> {
    strings(i, key, v)?
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|why: String| PrunerError::value(i, key, why))
        })
        .collect()
}

fn group_id(i: usize, key: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        _ => Err(PrunerError::value(
            i,
            key,
            format!("expected an integer or a string, got {v}"),
        )),
    }
}

fn granularity(i: usize, v: &Value) -> Result<Granularity> {
    let bad = || {
        PrunerError::value(
            i,
            "granularity",
            format!(
                "expected `out_channel`, `in_channel`, `element`, `default` or a block such as \
                 [64, 64] or [-1, 1], got {v}"
            ),
        )
    };
    match v {
        Value::String(s) => match s.as_str() {
            "default" => Ok(Granularity::Default),
            "element" | "fine" | "finegrained" => Ok(Granularity::Element),
            "out_channel" => Ok(Granularity::OutChannel),
            "in_channel" => Ok(Granularity::InChannel),
            _ => Err(bad()),
        },
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_i64().filter(|&k| k == -1 || k >= 1).ok_or_else(bad))
            .collect::<Result<_>>()
            .map(Granularity::Block),
        _ => Err(bad()),
    }
}

fn parse_entry(i: usize, m: &Map<String, Value>) -> Result<ConfigEntry> {
    let mut e = ConfigEntry::default();
    let mut ratio_key: Option<&str> = None;
    for (key, v) in m {
        match key.as_str() {
            "op_names" => e.op_names = strings(i, key, v)?,
            "op_names_re" => e.op_names_re = strings(i, key, v)?,
            "op_partial_names" => e.op_partial_names = strings(i, key, v)?,
            "op_types" => e.op_types = op_types(i, key, v)?,
            "exclude_op_names" => e.exclude_op_names = strings(i, key, v)?,
            "exclude_op_names_re" => e.exclude_op_names_re = strings(i, key, v)?,
            "exclude_op_types" => e.exclude_op_types = op_types(i, key, v)?,
            "exclude" => {
                e.exclude = v.as_bool().ok_or_else(|| {
                    PrunerError::value(i, key, format!("expected true or false, got {v}"))
                })?
            }
            k if RATIO_KEYS.contains(&k) => {
                if let Some(prev) = ratio_key {
                    return Err(PrunerError::value(
                        i,
                        k,
                        format!("the sparse ratio is already given as `{prev}`"),
                    ));
                }
                ratio_key = Some(k);
                e.sparse_ratio = Some(number(i, k, v)?);
            }
            "sparse_threshold" => e.sparse_threshold = Some(number(i, key, v)?),
            "max_sparse_ratio" => e.max_sparse_ratio = Some(number(i, key, v)?),
            "min_sparse_ratio" => e.min_sparse_ratio = Some(number(i, key, v)?),
            "global_group_id" => e.global_group_id = Some(group_id(i, key, v)?),
            "dependency_group_id" => e.dependency_group_id = Some(group_id(i, key, v)?),
            "granularity" => e.granularity = granularity(i, v)?,
            "target_names" => {
                let names = strings(i, key, v)?;
                if let Some(other) = names.iter().find(|n| n.as_str() != "weight") {
                    return Err(PrunerError::value(
                        i,
                        key,
                        format!(
                            "only `weight` targets are pruned here (got `{}`); biases follow \
                             their weight rows and hidden states follow dependency groups",
                            one_line(other)
                        ),
                    ));
                }
            }
            _ => {
                return Err(PrunerError::UnknownKey {
                    entry: i,
                    key: one_line(key).into_owned(),
                    suggestion: did_you_mean(key, KEYS.iter().copied()),
                });
            }
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nni_json_and_toml_alike() {
        let json = r#"[{"op_types": ["Linear"],
            "op_names_re": ["bert\\.encoder\\.layer\\.[0-9]*\\.attention\\.*"],
            "sparse_threshold": 0.1, "granularity": [64, 64]},
            {"exclude": true, "op_names": ["bert.encoder.layer.0.attention.self.query"]}]"#;
        let toml = r#"
            [[config_list]]
            op_types = ["Linear"]
            op_names_re = ['bert\.encoder\.layer\.[0-9]*\.attention\.*']
            sparse_threshold = 0.1
            granularity = [64, 64]

            [[config_list]]
            exclude = true
            op_names = ["bert.encoder.layer.0.attention.self.query"]
        "#;
        let a = ConfigList::from_json_str(json).unwrap();
        let b = ConfigList::from_toml_str(toml).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.entries[0].granularity, Granularity::Block(vec![64, 64]));
        assert!(a.entries[1].exclude);
        let c = ConfigList::from_json_str(
            r#"{"config_list": [{"op_names": ["x"], "sparsity_per_layer": 0.5}]}"#,
        )
        .unwrap();
        assert_eq!(c.entries[0].sparse_ratio, Some(0.5));
        assert_eq!(c.entries[0].granularity, Granularity::Default);
    }

    #[test]
    fn toml_errors_are_one_line_with_the_position() {
        let e =
            ConfigList::from_toml_str("[[config_list]]\n op_types = [\"Linear\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config_list (TOML): line 2, column 22: unclosed array, expected `]`"
        );
    }

    #[test]
    fn a_byte_order_mark_is_allowed() {
        let json =
            ConfigList::from_json_str("\u{feff}[{\"op_names\": [\"x\"], \"sparsity\": 0.5}]");
        let toml = ConfigList::from_toml_str(
            "\u{feff}[[config_list]]\nop_names = [\"x\"]\nsparsity = 0.5\n",
        );
        assert_eq!(json.unwrap(), toml.unwrap());
    }
}
