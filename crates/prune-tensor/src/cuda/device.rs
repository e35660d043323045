//! One GPU per process and ordinal: its context, its stream, and its kernels, compiled by
//! NVRTC for the device's architecture on first use and cached.

use super::compile::compile_ptx;
use super::launch::OrDevice;
use crate::error::{Result, TensorError};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use prune_kernels::KernelFile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A GPU: context, stream and the cache of loaded kernel files and functions.
pub(super) struct Device {
    ordinal: usize,
    name: String,
    arch: (i32, i32),
    /// The stream every op of every backend on this device runs on (ops are ordered).
    pub(super) stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

/// Fails with a clear message unless the driver, NVRTC and cuBLAS libraries can be opened
/// (cudarc panics on a missing library, so this runs before any other cudarc call).
fn probe_libraries() -> Result<()> {
    // SAFETY: these only try to open the libraries; no symbol is called.
    let found = unsafe {
        [
            (
                "libcuda (the NVIDIA driver)",
                cudarc::driver::sys::is_culib_present(),
            ),
            ("libnvrtc", cudarc::nvrtc::sys::is_culib_present()),
            ("libcublas", cudarc::cublas::sys::is_culib_present()),
        ]
    };
    let missing: Vec<&str> = found.iter().filter(|f| !f.1).map(|f| f.0).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(TensorError::Device {
        op: "CudaBackend::new",
        what: format!(
            "no usable CUDA installation: could not load {} (an NVIDIA GPU with its driver and \
             the CUDA 12 runtime libraries is needed)",
            missing.join(", ")
        ),
    })
}

impl Device {
    /// The device `ordinal`, created on first request and shared by every backend after.
    pub(super) fn shared(ordinal: usize) -> Result<Arc<Device>> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();
        let devices = DEVICES.get_or_init(Default::default);
        let mut devices = devices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dev) = devices.get(&ordinal) {
            return Ok(dev.clone());
        }
        let dev = Arc::new(Device::open(ordinal)?);
        devices.insert(ordinal, dev.clone());
        Ok(dev)
    }

    fn open(ordinal: usize) -> Result<Device> {
        const OP: &str = "CudaBackend::new";
        probe_libraries()?;
        let count = CudaContext::device_count().or_device(OP)?;
        if ordinal >= count.max(0) as usize {
            return Err(TensorError::Device {
                op: OP,
                what: format!("no GPU {ordinal}: the driver sees {count} device(s)"),
            });
        }
        let ctx = CudaContext::new(ordinal).or_device(OP)?;
        let arch = ctx.compute_capability().or_device(OP)?;
        let name = ctx.name().or_device(OP)?;
        Ok(Device {
            ordinal,
            name,
            arch,
            stream: ctx.default_stream(),
            modules: Mutex::default(),
            functions: Mutex::default(),
        })
    }

    /// `NAME (sm_XY)` of this device.
    pub(super) fn describe(&self) -> String {
        format!(
            "GPU {}: {} (sm_{}{})",
            self.ordinal, self.name, self.arch.0, self.arch.1
        )
    }

    /// Kernel `name` of `file`, compiling and loading the file on first use.
    pub(super) fn function(&self, file: &KernelFile, name: &'static str) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = functions.get(name) {
            return Ok(f.clone());
        }
        let module = self.module(file)?;
        let f = module.load_function(name).or_device("load_function")?;
        functions.insert(name, f.clone());
        Ok(f)
    }

    /// The loaded module of `file`, compiled for this device's architecture on first use.
    fn module(&self, file: &KernelFile) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = modules.get(file.name) {
            return Ok(m.clone());
        }
        let ptx = compile_ptx(file, self.arch)?;
        let module = self
            .stream
            .context()
            .load_module(Ptx::from_src(ptx))
            .or_device("load_module")?;
        modules.insert(file.name, module.clone());
        Ok(module)
    }
}
