//! [`Command`]: a command of the `prune` tool as a library call (each stage, the pipeline,
//! and the commands that read or export a checkpoint), and [`execute`], which runs one on
//! its device.

use crate::device::Device;
use crate::error::Result;
use crate::on_device;

/// A command of the `prune` tool as a library call: options checked before anything is
/// read, then run on the backend of its device.
pub trait Command {
    /// Checks the options that can be checked before anything is read.
    fn check(&self) -> Result<()>;

    /// Where the command runs its model.
    fn device(&self) -> Device {
        Device::Cpu
    }

    /// Whether its CPU matrix products run in bf16 on Intel AMX (`--bf16`, refused by
    /// `check` where AMX is unavailable).
    fn bf16(&self) -> bool {
        false
    }

    /// Runs the command with its models on `backend`; returns what it did, in words.
    /// [`execute`] and [`run_in_precision`] call it with its `bf16` setting applied; on its
    /// own it leaves that setting as it finds it.
    fn run<B: prune_tensor::Backend>(&self, backend: B) -> Result<String>;
}

/// Checks `command`'s options and runs it on its device; returns what it did, in words.
pub fn execute(command: &impl Command) -> Result<String> {
    command.check()?;
    on_device!(command.device(), b => run_in_precision(command, b))
}

/// Runs `command` on `backend` with bf16 products on for its duration when it asks for
/// them (the setting before is restored after).
pub fn run_in_precision<B: prune_tensor::Backend>(
    command: &impl Command,
    backend: B,
) -> Result<String> {
    let _bf16 = match prune_tensor::cpu::Bf16Scope::enter(command.bf16()) {
        Ok(scope) => scope,
        Err(e) => crate::refuse!("--bf16: {e}"),
    };
    command.run(backend)
}
