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

    /// Runs the command with its models on `backend`; returns what it did, in words.
    fn run<B: prune_tensor::Backend>(&self, backend: B) -> Result<String>;
}

/// Checks `command`'s options and runs it on its device; returns what it did, in words.
pub fn execute(command: &impl Command) -> Result<String> {
    command.check()?;
    on_device!(command.device(), b => command.run(b))
}
