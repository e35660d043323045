//! AdamW over a whole BERT parameter tree: moments mirroring the parameters, decoupled weight
//! decay except on biases and LayerNorm weights (as transformers' recipes), masks applied to
//! the gradients, and clipping by the global gradient norm.

use crate::error::{Result, TrainError};
use prune_tensor::{AdamW, Backend, Tensor};
use prune_transformer::{BertParams, HostParams};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to `sqrt(v̂)`.
    pub eps: f64,
    /// Decoupled weight decay for weight matrices and embeddings.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWConfig {
    /// Checks the hyper-parameters can work: decays in [0, 1), eps > 0, weight decay >= 0,
    /// every value finite.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(TrainError::Config(why));
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(format!("AdamW {name} must be in [0, 1), got {beta}"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!(
                "AdamW eps must be a finite number > 0, got {}",
                self.eps
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay must be a finite number >= 0, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

/// Whether weight decay applies to the parameter `name` (not to biases or LayerNorm).
pub fn decays(name: &str) -> bool {
    !(name.ends_with("bias") || name.contains("LayerNorm"))
}

/// AdamW state: first and second moments mirroring the parameters, and the step count.
#[derive(Clone, Debug)]
pub struct Optimizer<T> {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// First moments, one per parameter.
    pub m: BertParams<T>,
    /// Second moments, one per parameter.
    pub v: BertParams<T>,
    /// Optimizer steps taken.
    pub step: u64,
}

impl<T: Clone> Optimizer<T> {
    /// Fresh zero moments for `params`.
    pub fn new<B: Backend<Tensor = T>>(
        b: &B,
        params: &BertParams<T>,
        config: AdamWConfig,
    ) -> Result<Self> {
        let zeros = params.try_map(|_, p| b.zeros(b.shape(p)))?;
        Ok(Optimizer {
            config,
            m: zeros.clone(),
            v: zeros,
            step: 0,
        })
    }

    /// One AdamW step at learning rate `lr` on every parameter; where a mask is given the
    /// gradient is `grad ⊙ mask` (the raw weight behind a mask keeps its value).
    pub fn step<B: Backend<Tensor = T>>(
        &mut self,
        b: &B,
        params: &mut BertParams<T>,
        grads: &BertParams<T>,
        masks: Option<&BertParams<Option<T>>>,
        lr: f64,
    ) -> Result<()> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(TrainError::Config(format!(
                "learning rate {lr} must be finite and >= 0"
            )));
        }
        self.step += 1;
        let grads = grads.named();
        let masks: Vec<Option<&T>> = match masks {
            Some(m) => m.named().into_iter().map(|(_, m)| m.as_ref()).collect(),
            None => vec![None; grads.len()],
        };
        let (ms, vs) = (self.m.named_mut(), self.v.named_mut());
        if grads.len() != ms.len() || masks.len() != ms.len() {
            return Err(TrainError::Config(
                "gradients, masks and moments differ in structure".into(),
            ));
        }
        let entries = params
            .named_mut()
            .into_iter()
            .zip(grads)
            .zip(ms.into_iter().zip(vs))
            .zip(masks);
        for ((((name, p), (_, g)), ((_, m), (_, v))), mask) in entries {
            let hp = AdamW {
                lr,
                beta1: self.config.beta1,
                beta2: self.config.beta2,
                eps: self.config.eps,
                weight_decay: if decays(&name) {
                    self.config.weight_decay
                } else {
                    0.0
                },
                step: self.step,
            };
            b.adamw_step(p, g, m, v, &hp, mask)?;
        }
        Ok(())
    }

    /// The moments on the host, for checkpoints.
    pub fn to_host<B: Backend<Tensor = T>>(&self, b: &B) -> Result<(HostParams, HostParams)> {
        let down = |t: &BertParams<T>| t.try_map(|_, x| b.download(x));
        Ok((down(&self.m)?, down(&self.v)?))
    }

    /// Moments uploaded from host copies (a resumed checkpoint).
    pub fn from_host<B: Backend<Tensor = T>>(
        b: &B,
        config: AdamWConfig,
        m: &HostParams,
        v: &HostParams,
        step: u64,
    ) -> Result<Self> {
        let up = |t: &HostParams| t.try_map(|_, x: &Tensor<f32>| b.upload(x));
        Ok(Optimizer {
            config,
            m: up(m)?,
            v: up(v)?,
            step,
        })
    }
}

/// The global L2 norm of every gradient. A non-finite norm is an error (the loss diverged).
pub fn grad_norm<B: Backend>(b: &B, grads: &BertParams<B::Tensor>) -> Result<f64> {
    let mut sq = 0.0;
    for (_, g) in grads.named() {
        sq += b.sum_squares(g)?;
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        return Err(TrainError::NonFinite(format!("gradient norm is {norm}")));
    }
    Ok(norm)
}

/// Scales every gradient so that their global L2 norm (`norm`, from [`grad_norm`]) becomes
/// at most `max_norm`.
pub fn clip_to_norm<B: Backend>(
    b: &B,
    grads: &mut BertParams<B::Tensor>,
    norm: f64,
    max_norm: f64,
) -> Result<()> {
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for (_, g) in grads.named_mut() {
            b.scale_assign(g, scale)?;
        }
    }
    Ok(())
}

/// Scales every gradient so that their global L2 norm is at most `max_norm`; returns the
/// norm before clipping. A non-finite norm is an error (the loss diverged).
pub fn clip_grad_norm<B: Backend>(
    b: &B,
    grads: &mut BertParams<B::Tensor>,
    max_norm: f64,
) -> Result<f64> {
    let norm = grad_norm(b, grads)?;
    clip_to_norm(b, grads, norm, max_norm)?;
    Ok(norm)
}
