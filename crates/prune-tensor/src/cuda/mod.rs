//! `CudaBackend` (feature `cuda`): every op of the `Backend` trait on an NVIDIA GPU, in f32.
//!
//! cudarc opens libcuda, libnvrtc and libcublas at run time, so building needs no CUDA
//! toolkit; a machine without them gets a [`TensorError::Device`] from [`CudaBackend::new`].
//! Kernels are the CUDA C of `prune-kernels`, compiled by NVRTC for the device's architecture
//! once per process and device; GEMMs go through cuBLAS (strided-batched for attention).
//! Shape rules are those of [`crate::checks`], so errors match the CPU backend's.

mod activation;
mod compile;
mod device;
mod elementwise;
mod index;
mod launch;
mod loss;
mod matmul;
mod norm;
mod optim;
mod softmax;

pub use compile::compile_ptx;

use crate::error::{Result, TensorError};
use crate::{Shape, Storage, Tensor};
use cudarc::cublas::CudaBlas;
use cudarc::driver::CudaSlice;
use device::Device;
use launch::OrDevice;
use std::sync::Arc;

/// Options of a [`CudaBackend`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Let cuBLAS use TF32 tensor cores for f32 GEMMs (faster, about 1e-3 relative error).
    pub tf32: bool,
}

/// The CUDA backend: a cheap handle (cloning shares the device, its stream, its compiled
/// kernels and its cuBLAS handle).
#[derive(Clone)]
pub struct CudaBackend {
    dev: Arc<Device>,
    blas: Arc<CudaBlas>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.dev)
            .finish_non_exhaustive()
    }
}

/// A tensor in device memory: contiguous row-major f32. The buffer holds at least one
/// element, so that empty tensors need no special allocation.
#[derive(Clone, Debug)]
pub struct CudaTensor {
    shape: Shape,
    data: CudaSlice<f32>,
}

impl CudaTensor {
    /// The tensor's shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

impl CudaBackend {
    /// A backend on GPU `ordinal` with default options (no TF32). Fails with
    /// [`TensorError::Device`] when the driver, NVRTC or cuBLAS cannot be loaded or the device
    /// does not exist, and with [`TensorError::KernelCompile`] when NVRTC refuses a kernel.
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    /// A backend on GPU `ordinal` with `options`.
    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<Self> {
        let dev = Device::shared(ordinal)?;
        let blas = CudaBlas::new(dev.stream.clone()).or_device("CudaBackend::new")?;
        if options.tf32 {
            // SAFETY: the handle is valid (just created) and the mode is a valid enum value.
            unsafe {
                cudarc::cublas::sys::cublasSetMathMode(
                    *blas.handle(),
                    cudarc::cublas::sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
                )
            }
            .result()
            .or_device("CudaBackend::new")?;
        }
        Ok(CudaBackend {
            dev,
            blas: Arc::new(blas),
        })
    }

    /// The device's name and compute capability, e.g. `NVIDIA H100 (sm_90)`.
    pub fn describe(&self) -> String {
        self.dev.describe()
    }

    /// Waits until every queued kernel and copy has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.dev.stream.synchronize().or_device("synchronize")
    }

    /// An uninitialised tensor of `shape` (every element is written by the caller's kernel).
    fn alloc(&self, op: &'static str, shape: Shape) -> Result<CudaTensor> {
        // SAFETY: every caller launches a kernel (or cuBLAS) that writes all `numel` elements
        // before the tensor is read.
        let data = unsafe { self.dev.stream.alloc::<f32>(shape.numel().max(1)) }.or_device(op)?;
        Ok(CudaTensor { shape, data })
    }

    /// A zeroed tensor of `shape`.
    fn zeroed(&self, op: &'static str, shape: Shape) -> Result<CudaTensor> {
        let data = self
            .dev
            .stream
            .alloc_zeros::<f32>(shape.numel().max(1))
            .or_device(op)?;
        Ok(CudaTensor { shape, data })
    }

    /// Copies a host slice to a fresh device buffer (ids, labels, metadata).
    fn to_device<T: cudarc::driver::DeviceRepr>(
        &self,
        op: &'static str,
        host: &[T],
    ) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            return unsafe { self.dev.stream.alloc::<T>(1) }.or_device(op);
        }
        self.dev.stream.clone_htod(host).or_device(op)
    }

    /// Copies the first `len` elements of a device buffer to the host.
    fn to_host<T: cudarc::driver::DeviceRepr + Default + Clone>(
        &self,
        op: &'static str,
        data: &CudaSlice<T>,
        len: usize,
    ) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.dev
            .stream
            .clone_dtoh(&data.slice(0..len))
            .or_device(op)
    }
}

impl Storage for CudaBackend {
    type Tensor = CudaTensor;

    fn shape<'a>(&self, t: &'a CudaTensor) -> &'a Shape {
        &t.shape
    }

    fn upload(&self, t: &Tensor<f32>) -> Result<CudaTensor> {
        Ok(CudaTensor {
            shape: t.shape().clone(),
            data: self.to_device("upload", t.data())?,
        })
    }

    fn download(&self, t: &CudaTensor) -> Result<Tensor<f32>> {
        let data = self.to_host("download", &t.data, t.shape.numel())?;
        Tensor::new(t.shape.clone(), data)
    }

    fn zeros(&self, shape: &Shape) -> Result<CudaTensor> {
        self.zeroed("zeros", shape.clone())
    }

    fn reshape(&self, t: CudaTensor, shape: Shape) -> Result<CudaTensor> {
        if shape.numel() != t.shape.numel() {
            return Err(crate::error::shape_error(
                "reshape",
                &[&t.shape, &shape],
                "element counts differ",
            ));
        }
        Ok(CudaTensor {
            shape,
            data: t.data,
        })
    }
}

/// `n` as a kernel's `int` argument; fails beyond `i32::MAX` (tensors of 2³¹ elements).
fn int(op: &'static str, n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| TensorError::Argument {
        op,
        what: format!("{n} elements exceed the 2^31 a CUDA kernel of this backend indexes"),
    })
}
