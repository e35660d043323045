//! `ProjectionSet`: the projections of a distiller, one per student hidden state (NNI) or
//! one shared by all (CoFi), created on the first batch that needs them (least squares on
//! that batch's states, or at random), updated together after each optimizer step with a
//! global gradient-norm clip, cut along with the student's hidden width, and saved with
//! the distiller's state.

use crate::config::{ProjectionConfig, ProjectionInit, ProjectionMode, TokenSelection};
use crate::error::{DistillError, Result};
use crate::lstsq::{AffineFit, fit_affine};
use crate::projection::Projection;
use prune_tensor::rng::mix64;
use prune_tensor::{Backend, Tensor};
use prune_train::state::{read_json, read_tensors, write_json, write_tensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File names inside a state directory.
const TENSORS: &str = "projections.safetensors";
const META: &str = "projections.json";

/// What [`ProjectionSet::save`] writes next to the tensors.
#[derive(Serialize, Deserialize)]
struct Meta {
    shared: Option<u64>,
    per_state: Vec<(usize, u64)>,
}

/// The projections of one distiller.
#[derive(Clone, Debug)]
pub struct ProjectionSet<T> {
    config: ProjectionConfig,
    shared: Option<Projection<T>>,
    per_state: BTreeMap<usize, Projection<T>>,
}

/// Host copies of the rows a fit uses: the student states by index and the teacher
/// states by index.
struct FitData {
    keep: Vec<bool>,
    student: BTreeMap<usize, Tensor<f32>>,
    teacher: BTreeMap<usize, Tensor<f32>>,
}

impl<T: Clone> ProjectionSet<T> {
    /// An empty set under `config`.
    pub fn new(config: ProjectionConfig) -> Self {
        ProjectionSet {
            config,
            shared: None,
            per_state: BTreeMap::new(),
        }
    }

    /// Whether student states of width `d_s` are projected to teacher width `d_t`.
    pub fn wanted(&self, d_s: usize, d_t: usize) -> bool {
        match self.config.mode {
            ProjectionMode::Off => false,
            ProjectionMode::WhenWidthsDiffer => d_s != d_t,
            ProjectionMode::Always => true,
        }
    }

    /// Whether no projection exists yet.
    pub fn is_empty(&self) -> bool {
        self.shared.is_none() && self.per_state.is_empty()
    }

    /// The projection of student hidden state `s`, if any.
    pub fn get(&self, s: usize) -> Option<&Projection<T>> {
        self.shared.as_ref().or_else(|| self.per_state.get(&s))
    }

    /// The projection of student hidden state `s`, mutably.
    pub fn get_mut(&mut self, s: usize) -> Option<&mut Projection<T>> {
        match &mut self.shared {
            Some(p) => Some(p),
            None => self.per_state.get_mut(&s),
        }
    }

    fn all(&self) -> impl Iterator<Item = &Projection<T>> {
        self.shared.iter().chain(self.per_state.values())
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Projection<T>> {
        self.shared.iter_mut().chain(self.per_state.values_mut())
    }

    /// Makes sure every student state in `candidates` (with its candidate teacher states)
    /// has a projection when one is wanted, creating the missing ones from this batch:
    /// `student` and `teacher` are the hidden states (`[B, T, C]`, by index), `mask` the
    /// batch's attention mask. Fails when an existing projection no longer fits the widths.
    pub fn ensure<B: Backend<Tensor = T>>(
        &mut self,
        b: &B,
        candidates: &[(usize, Vec<usize>)],
        student: &[T],
        teacher: &[T],
        mask: &[u32],
        tokens: TokenSelection,
    ) -> Result<()> {
        let width = |states: &[T]| states.first().map_or(0, |t| b.shape(t).last());
        let (d_s, d_t) = (width(student), width(teacher));
        for p in self.all() {
            if p.d_in(b) != d_s || p.d_out(b) != d_t {
                return Err(DistillError::mismatch(
                    "projection",
                    format!(
                        "a projection {} → {} for student states of width {d_s} and teacher \
                         states of width {d_t} (cut it with the student's hidden width)",
                        p.d_in(b),
                        p.d_out(b)
                    ),
                ));
            }
        }
        if !self.wanted(d_s, d_t) {
            if d_s != d_t {
                return Err(DistillError::mismatch(
                    "hidden-state loss",
                    format!(
                        "student width {d_s} differs from teacher width {d_t} and projections are off"
                    ),
                ));
            }
            return Ok(());
        }
        let missing: Vec<&(usize, Vec<usize>)> = if self.config.shared {
            if self.shared.is_some() {
                Vec::new()
            } else {
                candidates.iter().collect()
            }
        } else {
            candidates
                .iter()
                .filter(|(s, _)| !self.per_state.contains_key(s))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        match self.config.init {
            ProjectionInit::Random => {
                let seed = self.config.seed;
                if self.config.shared {
                    self.shared = Some(Projection::random(b, d_s, d_t, seed)?);
                } else {
                    for (s, _) in missing {
                        let p = Projection::random(b, d_s, d_t, mix64(seed ^ *s as u64))?;
                        self.per_state.insert(*s, p);
                    }
                }
            }
            ProjectionInit::LeastSquares => {
                let data = FitData::download(b, &missing, student, teacher, mask, tokens)?;
                let ridge = self.config.ridge;
                let mut best: Vec<(usize, usize, AffineFit)> = Vec::new();
                for (s, cands) in &missing {
                    let (t, fit) = data.best_fit(*s, cands, ridge)?;
                    best.push((*s, t, fit));
                }
                if self.config.shared {
                    let pairs: Vec<(usize, usize)> =
                        best.iter().map(|(s, t, _)| (*s, *t)).collect();
                    let fit = data.stacked_fit(&pairs, ridge)?;
                    self.shared = Some(Projection::from_fit(b, &fit)?);
                } else {
                    for (s, _, fit) in best {
                        self.per_state.insert(s, Projection::from_fit(b, &fit)?);
                    }
                }
            }
        }
        Ok(())
    }

    /// One AdamW update of every projection at `lr`, their global gradient norm clipped to
    /// the configured bound; returns the norm before clipping.
    pub fn step<B: Backend<Tensor = T>>(&mut self, b: &B, lr: f64) -> Result<f64> {
        let mut sq = 0.0;
        for p in self.all() {
            sq += p.grad_sq_norm(b)?;
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(DistillError::mismatch(
                "projection update",
                format!("gradient norm is {norm}"),
            ));
        }
        let scale = match self.config.clip_norm {
            Some(c) if norm > c => c / (norm + 1e-6),
            _ => 1.0,
        };
        let adamw = self.config.adamw;
        for p in self.all_mut() {
            p.step(b, lr, &adamw, scale)?;
        }
        Ok(norm)
    }

    /// Keeps the student hidden channels `keep` in every projection's input.
    pub fn keep_inputs<B: Backend<Tensor = T>>(&mut self, b: &B, keep: &[usize]) -> Result<()> {
        for p in self.all_mut() {
            p.keep_inputs(b, keep)?;
        }
        Ok(())
    }

    /// Writes the projections and their moments into `dir`.
    pub fn save<B: Backend<Tensor = T>>(&self, b: &B, dir: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        if let Some(p) = &self.shared {
            tensors.extend(p.to_host(b, "shared.")?);
        }
        for (s, p) in &self.per_state {
            tensors.extend(p.to_host(b, &format!("state.{s}."))?);
        }
        write_tensors(&dir.join(TENSORS), &tensors)?;
        let meta = Meta {
            shared: self.shared.as_ref().map(Projection::steps),
            per_state: self
                .per_state
                .iter()
                .map(|(s, p)| (*s, p.steps()))
                .collect(),
        };
        Ok(write_json(&dir.join(META), &meta)?)
    }

    /// Replaces the projections by those saved in `dir`.
    pub fn load<B: Backend<Tensor = T>>(&mut self, b: &B, dir: &Path) -> Result<()> {
        let meta: Meta = read_json(&dir.join(META))?;
        let path = dir.join(TENSORS);
        let mut tensors = read_tensors(&path)?;
        let mut get = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| DistillError::file(&path, format!("no tensor `{name}`")))
        };
        self.shared = meta
            .shared
            .map(|steps| Projection::from_host(b, "shared.", steps, &mut get))
            .transpose()?;
        self.per_state = meta
            .per_state
            .iter()
            .map(|&(s, steps)| {
                Ok((
                    s,
                    Projection::from_host(b, &format!("state.{s}."), steps, &mut get)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(())
    }
}

impl FitData {
    /// Host copies of the states a fit of `missing` needs, and the rows it uses.
    fn download<B: Backend>(
        b: &B,
        missing: &[&(usize, Vec<usize>)],
        student: &[B::Tensor],
        teacher: &[B::Tensor],
        mask: &[u32],
        tokens: TokenSelection,
    ) -> Result<Self> {
        let fetch = |states: &[B::Tensor], i: usize, who: &str| -> Result<Tensor<f32>> {
            let t = states.get(i).ok_or_else(|| {
                DistillError::mismatch(
                    "projection fit",
                    format!("{who} has no hidden state {i} ({} in all)", states.len()),
                )
            })?;
            Ok(b.download(t)?)
        };
        let mut s_host = BTreeMap::new();
        let mut t_host = BTreeMap::new();
        for (s, cands) in missing {
            s_host.insert(*s, fetch(student, *s, "the student")?);
            for &t in cands {
                if let std::collections::btree_map::Entry::Vacant(e) = t_host.entry(t) {
                    e.insert(fetch(teacher, t, "the teacher")?);
                }
            }
        }
        let keep = mask
            .iter()
            .map(|&m| tokens == TokenSelection::All || m == 1)
            .collect();
        Ok(FitData {
            keep,
            student: s_host,
            teacher: t_host,
        })
    }

    /// The fit of student state `s` to each of `cands`, keeping the best one.
    fn best_fit(&self, s: usize, cands: &[usize], ridge: f64) -> Result<(usize, AffineFit)> {
        let targets: Vec<&Tensor<f32>> = cands.iter().map(|t| &self.teacher[t]).collect();
        let fits = fit_affine(&self.student[&s], &targets, &self.keep, ridge)
            .map_err(|why| DistillError::LeastSquares { student: s, why })?;
        cands
            .iter()
            .copied()
            .zip(fits)
            .min_by(|a, b| a.1.mse.total_cmp(&b.1.mse))
            .ok_or_else(|| DistillError::LeastSquares {
                student: s,
                why: "no candidate teacher state".into(),
            })
    }

    /// One fit over the rows of every `(student, teacher)` pair stacked.
    fn stacked_fit(&self, pairs: &[(usize, usize)], ridge: f64) -> Result<AffineFit> {
        let stack = |parts: Vec<&Tensor<f32>>| -> Result<Tensor<f32>> {
            let c = parts.first().map_or(0, |t| t.shape().last());
            let data: Vec<f32> = parts
                .iter()
                .flat_map(|t| t.data().iter().copied())
                .collect();
            Ok(Tensor::new([data.len() / c.max(1), c], data)?)
        };
        let x = stack(pairs.iter().map(|(s, _)| &self.student[s]).collect())?;
        let y = stack(pairs.iter().map(|(_, t)| &self.teacher[t]).collect())?;
        let keep: Vec<bool> = pairs
            .iter()
            .flat_map(|_| self.keep.iter().copied())
            .collect();
        let first = pairs.first().map_or(0, |p| p.0);
        let mut fits =
            fit_affine(&x, &[&y], &keep, ridge).map_err(|why| DistillError::LeastSquares {
                student: first,
                why,
            })?;
        fits.pop().ok_or_else(|| DistillError::LeastSquares {
            student: first,
            why: "no fit returned".into(),
        })
    }
}
