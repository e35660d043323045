//! `Spaces`: the index spaces of the analysis in a union-find, where a class may be the
//! product of finer spaces (a head axis `H·D` is heads × head dim).

use crate::error::{GraphError, Result};

/// Index spaces in a union-find; a class may be factored into finer spaces (major first).
#[derive(Default)]
pub(super) struct Spaces {
    parent: Vec<usize>,
    size: Vec<usize>,
    factors: Vec<Option<Vec<usize>>>,
}

/// Factorisations nest at most this deep (a guard against a malformed trace).
const MAX_DEPTH: usize = 32;

impl Spaces {
    /// Channels of space `s`.
    pub(super) fn size(&self, s: usize) -> usize {
        self.size[s]
    }

    /// A new space of `size` channels, in a class of its own.
    pub(super) fn new_space(&mut self, size: usize) -> usize {
        self.parent.push(self.parent.len());
        self.size.push(size);
        self.factors.push(None);
        self.parent.len() - 1
    }

    /// The root of `a`'s class.
    pub(super) fn find(&mut self, mut a: usize) -> usize {
        while self.parent[a] != a {
            self.parent[a] = self.parent[self.parent[a]];
            a = self.parent[a];
        }
        a
    }

    /// Unites the classes of `a` and `b` (their sizes must agree; their factors unite too).
    pub(super) fn union(&mut self, a: usize, b: usize) -> Result<()> {
        let mut work = vec![(a, b)];
        while let Some((x, y)) = work.pop() {
            let (rx, ry) = (self.find(x), self.find(y));
            if rx == ry {
                continue;
            }
            if self.size[rx] != self.size[ry] {
                return Err(GraphError::Analysis(format!(
                    "an op ties index spaces of sizes {} and {}",
                    self.size[rx], self.size[ry]
                )));
            }
            self.parent[ry] = rx;
            let merged = match (self.factors[rx].take(), self.factors[ry].take()) {
                (Some(p), Some(q)) => {
                    work.extend(self.pair_factors(&p, &q)?);
                    Some(p)
                }
                (p, q) => p.or(q),
            };
            self.factors[rx] = merged;
        }
        Ok(())
    }

    /// The factor pairs to unite when two factored classes unite (same sizes, in order).
    fn pair_factors(&self, p: &[usize], q: &[usize]) -> Result<Vec<(usize, usize)>> {
        let sizes = |f: &[usize]| f.iter().map(|&a| self.size[a]).collect::<Vec<_>>();
        if sizes(p) != sizes(q) {
            return Err(GraphError::Analysis(format!(
                "one index space is split two ways: {:?} and {:?}",
                sizes(p),
                sizes(q)
            )));
        }
        Ok(p.iter().copied().zip(q.iter().copied()).collect())
    }

    /// Records that space `a` is the product of `parts` (major first). Size-1 factors after
    /// the first change no block structure and are dropped.
    pub(super) fn factor(&mut self, a: usize, mut parts: Vec<usize>) -> Result<()> {
        let mut first = true;
        parts.retain(|&p| std::mem::replace(&mut first, false) || self.size[p] != 1);
        if parts.is_empty() {
            return Ok(());
        }
        if parts.len() == 1 {
            return self.union(a, parts[0]);
        }
        let r = self.find(a);
        match self.factors[r].clone() {
            Some(existing) => {
                for (x, y) in self.pair_factors(&existing, &parts)? {
                    self.union(x, y)?;
                }
                Ok(())
            }
            None => {
                self.factors[r] = Some(parts);
                Ok(())
            }
        }
    }

    /// The finest factorisation of `a`: class roots, major first.
    pub(super) fn leaves(&mut self, a: usize, depth: usize) -> Result<Vec<usize>> {
        if depth > MAX_DEPTH {
            return Err(GraphError::Analysis(
                "index-space factorisations nest too deep (cyclic?)".into(),
            ));
        }
        let r = self.find(a);
        match self.factors[r].clone() {
            None => Ok(vec![r]),
            Some(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    out.extend(self.leaves(p, depth + 1)?);
                }
                Ok(out)
            }
        }
    }
}
