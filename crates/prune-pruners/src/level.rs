//! `LevelPruner`: magnitude pruning, the simplest baseline. Each block's metric is the L1
//! or L2 norm of its weights; masks come from the config's ratios in one shot.

use crate::allocate::generate;
use crate::config::ConfigList;
use crate::error::Result;
use crate::host::download;
use crate::masks::Masks;
use crate::modules::modules_of;
use crate::select::{Selection, Target};
use prune_tensor::Backend;
use prune_transformer::BertModel;

/// The norm of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    /// `Σ |w|`
    #[default]
    L1,
    /// `sqrt(Σ w²)`
    L2,
}

/// Magnitude pruning of the selected weights.
#[derive(Clone, Debug)]
pub struct LevelPruner {
    targets: Vec<Target>,
    norm: Norm,
}

impl LevelPruner {
    /// A pruner of `selection`'s targets with block norm `norm`.
    pub fn new(selection: &Selection, norm: Norm) -> Self {
        LevelPruner {
            targets: selection.targets.clone(),
            norm,
        }
    }

    /// A pruner of the weights `config` selects in `model`.
    pub fn from_config<B: Backend>(
        config: &ConfigList,
        model: &BertModel<B>,
        norm: Norm,
    ) -> Result<Self> {
        Ok(Self::new(&config.select(&modules_of(model))?, norm))
    }

    /// The targets.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The norm of every block of every target, from the model's raw weights.
    pub fn metrics<B: Backend>(&self, model: &BertModel<B>) -> Result<Vec<Vec<f64>>> {
        let names: Vec<String> = self.targets.iter().map(|t| t.param.clone()).collect();
        let weights = download(model.backend(), &model.params, &names)?;
        self.targets
            .iter()
            .zip(&weights)
            .map(|(t, w)| {
                t.blocking.check_len(&t.param, w.len())?;
                Ok(match self.norm {
                    Norm::L1 => t.blocking.reduce(|i| f64::from(w[i]).abs()),
                    Norm::L2 => t
                        .blocking
                        .reduce(|i| f64::from(w[i]).powi(2))
                        .into_iter()
                        .map(f64::sqrt)
                        .collect(),
                })
            })
            .collect()
    }

    /// The masks for the config's full goals.
    pub fn compress<B: Backend>(&self, model: &BertModel<B>) -> Result<Masks> {
        generate(&self.targets, &self.metrics(model)?, 1.0)
    }
}
