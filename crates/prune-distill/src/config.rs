//! `DistillConfig`: the loss weights, the temperature, which tokens the hidden-state loss
//! counts, the layer-mapping rule and the projection settings of a distillation run.
//! Defaults follow NNI's BERT recipe (0.1 · CE + 0.9 · layers + 0.9 · KD at T = 2, NNI's
//! dynamic mapping), except that the hidden-state loss counts real tokens only.

use crate::error::{DistillError, Result};
use crate::mapping::LayerMapping;
use prune_train::AdamWConfig;
use serde::{Deserialize, Serialize};

/// Which tokens the hidden-state MSE averages over.
///
/// The default is [`TokenSelection::Real`]. Padding positions never reach the classifier
/// (no real token attends to them and the pooler reads `[CLS]`), so matching the teacher
/// there teaches the student nothing; with dynamic padding their share also changes from
/// batch to batch, which would re-weight the loss by the batch's padding fraction and tilt
/// the dynamic layer choice. [`TokenSelection::All`] reproduces NNI (`F.mse_loss` over
/// every element, padding included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSelection {
    /// Only tokens whose attention mask is 1.
    #[default]
    Real,
    /// Every position of the padded batch, as NNI does.
    All,
}

/// When a student hidden state goes through a learned projection before it is compared
/// with the teacher's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionMode {
    /// Never; the hidden widths must then be equal.
    Off,
    /// When the student's hidden width differs from the teacher's (NNI's
    /// `Adaptive1dLayerwiseDistiller`, needed once the hidden width is pruned).
    #[default]
    WhenWidthsDiffer,
    /// Always, even at equal widths (CoFi's `layer_transformation`).
    Always,
}

/// How a projection starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionInit {
    /// The affine map that best fits the teacher states from the student states of the
    /// first batch it sees, in the least-squares sense (with a small ridge term).
    #[default]
    LeastSquares,
    /// PyTorch's `nn.Linear` default: weight and bias uniform in `±1/sqrt(d_in)` (NNI).
    Random,
}

/// The learned projections `d_s → d_t` (a linear map with bias) of student hidden states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectionConfig {
    /// When to project.
    pub mode: ProjectionMode,
    /// How to initialise.
    pub init: ProjectionInit,
    /// One projection shared by every student layer (CoFi) instead of one per layer (NNI).
    pub shared: bool,
    /// Relative ridge term of the least-squares fit: `λ = ridge · ‖A‖²_F / (d_s + 1)`, which
    /// keeps the fit well posed when a batch has fewer tokens than the student is wide.
    pub ridge: f64,
    /// Seed of the random initialisation.
    pub seed: u64,
    /// AdamW hyper-parameters of the projections' own optimizer (the learning rate is the
    /// trainer's at each step).
    pub adamw: AdamWConfig,
    /// Clip the projections' global gradient norm to this value (the trainer clips the
    /// student's gradients on their own).
    pub clip_norm: Option<f64>,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        ProjectionConfig {
            mode: ProjectionMode::default(),
            init: ProjectionInit::default(),
            shared: false,
            ridge: 1e-4,
            seed: 0,
            adamw: AdamWConfig::default(),
            clip_norm: Some(1.0),
        }
    }
}

/// Settings of a distillation objective:
/// `α_ce · CE + α_layer · Σ layer losses + α_kd · T² · KL(softmax(z_T/T) ‖ softmax(z_S/T))`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillConfig {
    /// Weight of the task loss (cross-entropy, or MSE for regression) on the gold labels.
    pub alpha_ce: f64,
    /// Weight of the sum of the hidden-state losses of the mapped layer pairs.
    pub alpha_layer: f64,
    /// Weight of the logit distillation loss.
    pub alpha_kd: f64,
    /// Softmax temperature T of the logit loss (the loss carries the usual `T²` factor).
    pub temperature: f64,
    /// Which teacher hidden state each student hidden state is compared with.
    pub mapping: LayerMapping,
    /// Which tokens the hidden-state loss counts.
    pub tokens: TokenSelection,
    /// Learned projections of student hidden states.
    pub projection: ProjectionConfig,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            alpha_ce: 0.1,
            alpha_layer: 0.9,
            alpha_kd: 0.9,
            temperature: 2.0,
            mapping: LayerMapping::Dynamic,
            tokens: TokenSelection::Real,
            projection: ProjectionConfig::default(),
        }
    }
}

impl DistillConfig {
    /// Checks the settings on their own (the mapping is checked against the models when
    /// the distiller is built).
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(DistillError::Config(why));
        for (name, a) in [
            ("alpha_ce", self.alpha_ce),
            ("alpha_layer", self.alpha_layer),
            ("alpha_kd", self.alpha_kd),
        ] {
            if !(a.is_finite() && a >= 0.0) {
                return bad(format!("{name} = {a} must be a finite number >= 0"));
            }
        }
        if self.alpha_ce + self.alpha_layer + self.alpha_kd == 0.0 {
            return bad("every loss weight is 0: nothing to minimise".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature = {} must be finite and > 0",
                self.temperature
            ));
        }
        let p = &self.projection;
        if !(p.ridge.is_finite() && p.ridge >= 0.0) {
            return bad(format!("projection.ridge = {} must be >= 0", p.ridge));
        }
        if p.clip_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return bad("projection.clip_norm must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_nni_and_round_trip() {
        let c = DistillConfig::default();
        assert_eq!((c.alpha_ce, c.alpha_layer, c.alpha_kd), (0.1, 0.9, 0.9));
        assert_eq!(c.temperature, 2.0);
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: DistillConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let nni: DistillConfig =
            serde_json::from_str(r#"{"tokens": "all", "projection": {"init": "random"}}"#).unwrap();
        assert_eq!(nni.tokens, TokenSelection::All);
        assert_eq!(nni.projection.init, ProjectionInit::Random);
        assert!(serde_json::from_str::<DistillConfig>(r#"{"alpha": 1}"#).is_err());
    }

    #[test]
    fn rejects_settings_that_cannot_work() {
        let mut c = DistillConfig {
            temperature: 0.0,
            ..DistillConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        c.temperature = 1.0;
        c.alpha_kd = f64::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("alpha_kd"));
        c.alpha_kd = 0.0;
        c.alpha_ce = 0.0;
        c.alpha_layer = 0.0;
        assert!(c.validate().unwrap_err().to_string().contains("nothing"));
    }
}
