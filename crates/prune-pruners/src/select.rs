//! Resolving a `config_list` against a model's modules: which weight each entry prunes,
//! at which granularity and with which targets ([`Target`]), the checks that need the model
//! (names that match nothing, entries that disagree, groups that cannot share a mask) and a
//! dry-run listing of the selection.

use crate::config::{ConfigEntry, ConfigList, anchored};
use crate::error::{PrunerError, Result, did_you_mean};
use crate::granularity::Blocking;
use crate::modules::{Module, OpType};
use prune_graph::Group;
use prune_transformer::canonical_name;
use regex::Regex;
use std::collections::BTreeMap;
use std::fmt;

/// One weight to prune, with everything its entry says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Canonical module name (`encoder.layer.0.attention.self.query`).
    pub module: String,
    /// Canonical name of the weight (`encoder.layer.0.attention.self.query.weight`).
    pub param: String,
    /// The module type.
    pub op_type: OpType,
    /// How the weight is cut into metric blocks.
    pub blocking: Blocking,
    /// Index of the `config_list` entry that selected it.
    pub entry: usize,
    /// Fraction of the blocks to prune.
    pub sparse_ratio: Option<f64>,
    /// Keep blocks whose metric is at least this.
    pub sparse_threshold: Option<f64>,
    /// Lower bound of the module's sparse ratio.
    pub min_sparse_ratio: Option<f64>,
    /// Upper bound of the module's sparse ratio.
    pub max_sparse_ratio: Option<f64>,
    /// Global group: ranked together with the other members.
    pub global_group: Option<String>,
    /// Dependency group: one mask shared with the other members.
    pub dependency_group: Option<String>,
    /// How the blocks of a dependency-group member map to the group's channels: `None`
    /// numbers the channels by metric block (a `config_list` group), `Some` along an axis
    /// (a traced [`Group`]).
    pub channels: Option<ChannelAxis>,
}

/// Channel `k` of a coupled group is the slice `[k·unit, (k+1)·unit)` of a member weight
/// along `axis` (0: rows, 1: columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelAxis {
    /// The weight axis the channels run along.
    pub axis: usize,
    /// Elements per channel along that axis.
    pub unit: usize,
}

impl Target {
    /// The group channel of each metric block: its block index for a flat group, the
    /// channel its slice along the axis belongs to otherwise.
    pub fn block_channels(&self) -> Vec<usize> {
        let n = self.blocking.metric_numel();
        match self.channels {
            None => (0..n).collect(),
            Some(ChannelAxis { axis, unit }) => {
                let metric = self.blocking.metric_shape();
                let cols = if metric.len() == 2 { metric[1] } else { n };
                let block = self.blocking.block()[axis];
                (0..n)
                    .map(|j| {
                        let pos = if axis == 0 && metric.len() == 2 {
                            j / cols
                        } else {
                            j % cols
                        };
                        pos * block / unit
                    })
                    .collect()
            }
        }
    }

    /// Number of group channels the target's blocks map to.
    pub fn channel_count(&self) -> usize {
        match self.channels {
            None => self.blocking.metric_numel(),
            Some(ChannelAxis { axis, unit }) => self.blocking.shape()[axis] / unit,
        }
    }

    /// Whether this target prunes whole slices along `axis` in units of `unit` (its block
    /// divides the unit along `axis` and spans the other axis), so a group running along
    /// `axis` can drive its mask.
    pub fn fits_channels(&self, axis: usize, unit: usize) -> bool {
        let (shape, block) = (self.blocking.shape(), self.blocking.block());
        axis < shape.len()
            && unit > 0
            && unit % block[axis] == 0
            && shape[axis] % unit == 0
            && (0..shape.len()).all(|d| d == axis || block[d] == shape[d])
    }
}

/// What one entry selected, for the dry run.
#[derive(Clone, Debug, PartialEq)]
pub struct EntrySelection {
    /// Index of the entry.
    pub entry: usize,
    /// The entry's target in words (`sparse_ratio 0.5, granularity out_channel`).
    pub description: String,
    /// Whether it is an exclude entry.
    pub exclude: bool,
    /// Modules the entry prunes (for an exclude entry: the modules it removes), as
    /// `(full name, op type, weight shape, metric shape)`.
    pub modules: Vec<(String, OpType, Vec<usize>, Vec<usize>)>,
}

/// The result of resolving a `config_list`: the weights to prune and the per-entry listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// One target per selected weight, in the model's parameter order.
    pub targets: Vec<Target>,
    /// What each entry selected, in entry order.
    pub entries: Vec<EntrySelection>,
}

/// An entry's regexes, compiled.
struct Compiled {
    names_re: Vec<Regex>,
    exclude_re: Vec<Regex>,
}

fn compile(i: usize, e: &ConfigEntry) -> Result<Compiled> {
    let comp = |key: &str, list: &[String]| -> Result<Vec<Regex>> {
        list.iter()
            .map(|p| anchored(p).map_err(|why| PrunerError::value(i, key, why)))
            .collect()
    };
    Ok(Compiled {
        names_re: comp("op_names_re", &e.op_names_re)?,
        exclude_re: comp("exclude_op_names_re", &e.exclude_op_names_re)?,
    })
}

/// Whether `name` (with or without `bert.`) names `m`.
fn same_name(name: &str, m: &Module) -> bool {
    canonical_name(name) == m.name || name == m.full_name()
}

/// Whether `re` matches the start of `m`'s full or canonical name.
fn re_matches(re: &Regex, m: &Module) -> bool {
    re.is_match(&m.full_name()) || re.is_match(&m.name)
}

/// Whether entry `e` selects module `m` (NNI: names and types both, then exclusions).
fn selects(e: &ConfigEntry, c: &Compiled, m: &Module) -> bool {
    let type_ok = e.op_types.is_empty() || e.op_types.contains(&m.op_type);
    let name_ok = !e.has_names()
        || e.op_names.iter().any(|n| same_name(n, m))
        || c.names_re.iter().any(|r| re_matches(r, m))
        || e.op_partial_names
            .iter()
            .any(|p| m.full_name().contains(p.as_str()));
    let excluded = e.exclude_op_names.iter().any(|n| same_name(n, m))
        || c.exclude_re.iter().any(|r| re_matches(r, m))
        || e.exclude_op_types.contains(&m.op_type);
    type_ok && name_ok && !excluded
}

/// Checks that every name, pattern and partial name of entry `i` matches some module.
fn check_names_exist(i: usize, e: &ConfigEntry, c: &Compiled, modules: &[Module]) -> Result<()> {
    let full: Vec<String> = modules.iter().map(Module::full_name).collect();
    let no_match = |key: &'static str, pattern: &str| PrunerError::NoMatch {
        entry: i,
        key,
        pattern: prune_transformer::one_line(pattern).into_owned(),
        suggestion: did_you_mean(pattern, full.iter().map(String::as_str)),
    };
    for (key, list) in [
        ("op_names", &e.op_names),
        ("exclude_op_names", &e.exclude_op_names),
    ] {
        if let Some(n) = list
            .iter()
            .find(|n| !modules.iter().any(|m| same_name(n, m)))
        {
            return Err(no_match(key, n));
        }
    }
    for (key, pats, res) in [
        ("op_names_re", &e.op_names_re, &c.names_re),
        ("exclude_op_names_re", &e.exclude_op_names_re, &c.exclude_re),
    ] {
        if let Some((p, _)) = pats
            .iter()
            .zip(res)
            .find(|(_, r)| !modules.iter().any(|m| re_matches(r, m)))
        {
            return Err(no_match(key, p));
        }
    }
    if let Some(p) = e
        .op_partial_names
        .iter()
        .find(|p| !full.iter().any(|f| f.contains(p.as_str())))
    {
        return Err(no_match("op_partial_names", p));
    }
    Ok(())
}

/// Which entry prunes each module, and which modules each exclude entry took back.
struct Owners {
    /// Per module, the entry pruning it.
    owner: Vec<Option<usize>>,
    /// Per entry, the modules it excluded from earlier entries.
    removed: Vec<Vec<usize>>,
}

/// The entry that prunes each module (NNI: the last entry matching a module decides, and an
/// exclude entry un-selects it); two pruning entries on one module are a conflict.
fn owners(config: &ConfigList, compiled: &[Compiled], modules: &[Module]) -> Result<Owners> {
    let mut owner: Vec<Option<usize>> = vec![None; modules.len()];
    let mut removed: Vec<Vec<usize>> = vec![Vec::new(); config.entries.len()];
    for (mi, m) in modules.iter().enumerate() {
        let mut pruner: Option<usize> = None;
        for (i, (e, c)) in config.entries.iter().zip(compiled).enumerate() {
            if !selects(e, c, m) {
                continue;
            }
            if e.exclude {
                if pruner.take().is_some() {
                    removed[i].push(mi);
                }
            } else if let Some(first) = pruner {
                return Err(PrunerError::Conflict {
                    first,
                    second: i,
                    name: m.full_name(),
                    why: "both entries prune this module; narrow one of them or add \
                          exclude_op_names"
                        .into(),
                });
            } else {
                pruner = Some(i);
            }
        }
        owner[mi] = pruner;
    }
    Ok(Owners { owner, removed })
}

/// Checks that the entries of each group agree on the sparse ratio and that the members of
/// a dependency group have metrics of one size.
fn check_groups(targets: &[Target]) -> Result<()> {
    let mut by_group: BTreeMap<(bool, &str), Vec<&Target>> = BTreeMap::new();
    for t in targets {
        if let Some(g) = &t.dependency_group {
            by_group.entry((true, g)).or_default().push(t);
        }
        if let Some(g) = &t.global_group {
            by_group.entry((false, g)).or_default().push(t);
        }
    }
    for ((dependency, group), members) in by_group {
        let first = members[0];
        for t in &members[1..] {
            if t.sparse_ratio != first.sparse_ratio {
                return Err(PrunerError::Conflict {
                    first: first.entry,
                    second: t.entry,
                    name: format!("group {group}"),
                    why: format!(
                        "members of one group share a sparse_ratio ({:?} vs {:?})",
                        first.sparse_ratio, t.sparse_ratio
                    ),
                });
            }
            if dependency && t.channel_count() != first.channel_count() {
                return Err(PrunerError::Group {
                    group: group.to_string(),
                    why: format!(
                        "members share one mask, but `{}` has {} channels and `{}` {}",
                        first.param,
                        first.channel_count(),
                        t.param,
                        t.channel_count()
                    ),
                });
            }
        }
    }
    Ok(())
}

impl ConfigList {
    /// Resolves the list against `modules` (see [`crate::modules::modules_of`]): checks every
    /// name and pattern, finds the weights each entry prunes, resolves their granularity
    /// and checks the groups.
    pub fn select(&self, modules: &[Module]) -> Result<Selection> {
        let compiled = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| compile(i, e))
            .collect::<Result<Vec<_>>>()?;
        for (i, (e, c)) in self.entries.iter().zip(&compiled).enumerate() {
            check_names_exist(i, e, c, modules)?;
        }
        let Owners { owner, removed } = owners(self, &compiled, modules)?;
        let mut targets = Vec::new();
        let mut entries: Vec<EntrySelection> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| EntrySelection {
                entry: i,
                description: e.describe(),
                exclude: e.exclude,
                modules: Vec::new(),
            })
            .collect();
        for (mi, m) in modules.iter().enumerate() {
            let Some(i) = owner[mi] else { continue };
            let e = &self.entries[i];
            let param = m.weight_name();
            let blocking = e.granularity.blocking(&param, m.op_type, m.weight.dims())?;
            entries[i].modules.push((
                m.full_name(),
                m.op_type,
                m.weight.dims().to_vec(),
                blocking.metric_shape(),
            ));
            targets.push(Target {
                module: m.name.clone(),
                param,
                op_type: m.op_type,
                blocking,
                entry: i,
                sparse_ratio: e.sparse_ratio,
                sparse_threshold: e.sparse_threshold,
                min_sparse_ratio: e.min_sparse_ratio,
                max_sparse_ratio: e.max_sparse_ratio,
                global_group: e.global_group_id.clone(),
                dependency_group: e.dependency_group_id.clone(),
                channels: None,
            });
        }
        for (i, list) in removed.iter().enumerate() {
            for &mi in list {
                let m = &modules[mi];
                entries[i].modules.push((
                    m.full_name(),
                    m.op_type,
                    m.weight.dims().to_vec(),
                    Vec::new(),
                ));
            }
        }
        if let Some(empty) = entries.iter().find(|s| !s.exclude && s.modules.is_empty()) {
            return Err(PrunerError::value(
                empty.entry,
                "op_types",
                "the entry selects no module: its names and types select none together, or \
                 later exclude entries remove all of them",
            ));
        }
        check_groups(&targets)?;
        Ok(Selection { targets, entries })
    }

    /// The dry-run listing of [`ConfigList::select`] (what each entry prunes).
    pub fn dry_run(&self, modules: &[Module]) -> Result<String> {
        Ok(self.select(modules)?.to_string())
    }
}

impl Selection {
    /// Puts the targets coupled by each traced [`Group`] into one dependency group, as
    /// NNI's `auto_set_denpendency_group_ids` does from a traced graph: a target joins a
    /// group when it is one of its members and prunes whole slices along the member's
    /// axis (see [`Target::fits_channels`]); members this selection does not prune are
    /// ignored. Fails when a target fits two groups, already has a dependency group from
    /// the `config_list`, sits in a global group, or when a group mixes ratios.
    pub fn with_groups(mut self, groups: &[Group]) -> Result<Self> {
        for group in groups {
            let id = format!("traced {}", group.kind);
            for m in &group.members {
                let Some(t) = self.targets.iter_mut().find(|t| t.param == m.param) else {
                    continue;
                };
                if !t.fits_channels(m.axis, group.unit)
                    || t.blocking.shape().get(m.axis) != Some(&group.width())
                {
                    continue;
                }
                let clash = match (&t.dependency_group, &t.global_group) {
                    (Some(g), _) => Some(format!("dependency group {g}")),
                    (None, Some(g)) => Some(format!("global group {g}")),
                    _ => None,
                };
                if let Some(other) = clash {
                    return Err(PrunerError::Group {
                        group: id,
                        why: format!("`{}` is a member but already in {other}", t.param),
                    });
                }
                t.dependency_group = Some(id.clone());
                t.channels = Some(ChannelAxis {
                    axis: m.axis,
                    unit: group.unit,
                });
            }
        }
        check_groups(&self.targets)?;
        Ok(self)
    }

    /// The target for weight `param` (canonical or with `bert.`).
    pub fn target(&self, param: &str) -> Option<&Target> {
        let p = canonical_name(param);
        self.targets.iter().find(|t| t.param == p)
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.entries {
            let verb = if s.exclude { "excludes" } else { "prunes" };
            writeln!(
                f,
                "entry {} ({}): {verb} {} module(s)",
                s.entry,
                s.description,
                s.modules.len()
            )?;
            for (name, op, shape, metric) in &s.modules {
                if s.exclude {
                    writeln!(f, "  {name:<52} {op:<9} {shape:?}")?;
                } else {
                    writeln!(f, "  {name:<52} {op:<9} {shape:?} -> metric {metric:?}")?;
                }
            }
        }
        let elements: usize = self.targets.iter().map(|t| t.blocking.numel()).sum();
        write!(
            f,
            "total: {} weight(s), {elements} elements",
            self.targets.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::modules;
    use prune_graph::{GroupKind, Member, Role};
    use prune_transformer::{BertConfig, BertParams};

    fn heads_group(layer: usize) -> Group {
        let p = format!("encoder.layer.{layer}.attention");
        let member = |param: String, axis, role| Member { param, axis, role };
        Group {
            kind: GroupKind::Heads { layer },
            channels: 4,
            unit: 8,
            members: vec![
                member(format!("{p}.self.query.weight"), 0, Role::Producer),
                member(format!("{p}.self.key.weight"), 0, Role::Producer),
                member(format!("{p}.output.dense.weight"), 1, Role::Consumer),
            ],
        }
    }

    fn selection(json: &str) -> Result<Selection> {
        let cfg = BertConfig::new(50, 32, 2, 4, 64).unwrap();
        ConfigList::from_json_str(json)?.select(&modules(&BertParams::expected(&cfg, true, true)))
    }

    #[test]
    fn traced_groups_attach_only_to_targets_cutting_whole_channels() {
        let sel = selection(
            r#"[{"op_names_re": ["encoder\\.layer\\.0\\.attention\\.self\\.(query|key)"],
                 "sparse_ratio": 0.5},
                {"op_names": ["encoder.layer.0.attention.output.dense"], "sparse_ratio": 0.5,
                 "granularity": "in_channel"},
                {"op_names": ["encoder.layer.1.attention.self.query"], "sparse_ratio": 0.5,
                 "granularity": [8, 8]}]"#,
        )
        .unwrap()
        .with_groups(&[heads_group(0), heads_group(1)])
        .unwrap();
        let q = sel
            .target("encoder.layer.0.attention.self.query.weight")
            .unwrap();
        assert_eq!(q.channels, Some(ChannelAxis { axis: 0, unit: 8 }));
        assert_eq!(q.channel_count(), 4);
        assert_eq!(&q.block_channels()[..10], &[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        let o = sel
            .target("encoder.layer.0.attention.output.dense.weight")
            .unwrap();
        assert_eq!(
            o.dependency_group.as_deref(),
            Some("traced heads of layer 0")
        );
        assert_eq!(o.block_channels()[9], 1);
        // [8, 8] blocks do not span the columns: not a whole-head cut, left alone
        let q1 = sel
            .target("encoder.layer.1.attention.self.query.weight")
            .unwrap();
        assert_eq!(q1.dependency_group, None);
    }

    #[test]
    fn traced_groups_refuse_targets_already_grouped_or_with_other_ratios() {
        let clash = selection(
            r#"[{"op_names": ["encoder.layer.0.attention.self.query"], "sparse_ratio": 0.5,
                 "global_group_id": "g"}]"#,
        )
        .unwrap()
        .with_groups(&[heads_group(0)]);
        assert!(matches!(clash, Err(PrunerError::Group { .. })), "{clash:?}");
        let ratios = selection(
            r#"[{"op_names": ["encoder.layer.0.attention.self.query"], "sparse_ratio": 0.5},
                {"op_names": ["encoder.layer.0.attention.self.key"], "sparse_ratio": 0.25}]"#,
        )
        .unwrap()
        .with_groups(&[heads_group(0)]);
        assert!(
            matches!(ratios, Err(PrunerError::Conflict { .. })),
            "{ratios:?}"
        );
    }
}
