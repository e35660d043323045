//! `--device cpu|cuda[:N]`: where a command runs its model, and [`on_device!`], which runs a
//! generic body with the backend of that device.

use crate::error::Result;

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The CPU backend (f32).
    #[default]
    Cpu,
    /// The CUDA backend on GPU `N` (needs a build with the feature `cuda`).
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The `--device` flag.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct DeviceArgs {
    /// Where the model runs: cpu, cuda (GPU 0) or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
}

/// The `--bf16` flag of the inference commands (training stages take it among their
/// training options).
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct PrecisionArgs {
    /// Run the matrix products in bf16 on Intel AMX (inputs rounded to bf16, sums in f32):
    /// faster at a small loss of precision; CPU only
    #[arg(long)]
    pub bf16: bool,
}

impl PrecisionArgs {
    /// Refuses `--bf16` on a device other than the CPU, or on a CPU or OS without AMX.
    pub fn check(&self, device: Device) -> Result<()> {
        if self.bf16 {
            if device != Device::Cpu {
                crate::refuse!("--bf16 runs on the CPU only, not on --device {device}");
            }
            if let Err(e) = prune_tensor::cpu::check_bf16_products() {
                crate::refuse!("--bf16: {e}");
            }
        }
        Ok(())
    }
}

/// The CUDA backend on GPU `ordinal`, or an error saying this build has none.
#[cfg(feature = "cuda")]
pub fn cuda_backend(ordinal: usize) -> Result<prune_tensor::CudaBackend> {
    Ok(prune_tensor::CudaBackend::new(ordinal)?)
}

/// The CUDA backend on GPU `ordinal`, or an error saying this build has none.
#[cfg(not(feature = "cuda"))]
pub fn cuda_backend(ordinal: usize) -> Result<prune_tensor::CpuBackend> {
    crate::refuse!(
        "--device cuda:{ordinal}: this `prune` was built without the CUDA backend; rebuild \
         with `cargo build --release -p prune-cli --features cuda`"
    )
}

/// Evaluates `$body` with `$b` bound to the backend of `$device` (a [`Device`]); `$body` is
/// compiled once per backend, so it may call generic code. The enclosing function returns
/// the error of a device this build cannot run on.
#[macro_export]
macro_rules! on_device {
    ($device:expr, $b:ident => $body:expr) => {
        match $device {
            $crate::device::Device::Cpu => {
                let $b = $crate::device::CpuBackend::<f32>::new();
                $body
            }
            $crate::device::Device::Cuda(ordinal) => {
                let $b = $crate::device::cuda_backend(ordinal)?;
                $body
            }
        }
    };
}

pub use prune_tensor::CpuBackend;
