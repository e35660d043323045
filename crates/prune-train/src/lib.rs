//! Training: AdamW with decoupled weight decay, warm-up + linear-decay schedules, a `Trainer`
//! with a pluggable objective and callbacks around each optimizer step, an `Evaluator` that
//! returns the task metrics, and atomic, resumable checkpoints.

mod by_ref;
pub mod checkpoint;
mod error;
mod evaluator;
mod log;
pub mod optimizer;
pub mod run_dir;
pub mod schedule;
pub mod state;
mod trainer;

pub use by_ref::ByRef;
pub use error::{Result, TrainError};
pub use evaluator::{Evaluation, Evaluator};
pub use optimizer::{AdamWConfig, Optimizer, clip_grad_norm, clip_to_norm, grad_norm};
pub use run_dir::{RunDir, RunIdentity};
pub use schedule::LinearSchedule;
pub use trainer::{Callback, Objective, StepInfo, TaskLoss, TrainConfig, TrainSummary, Trainer};
