//! `CpuBackend`: every op on host tensors, row-parallel with rayon, GEMMs through `gemm`.
//!
//! The CPU backend is generic over the element type: `CpuBackend<f32>` for work,
//! `CpuBackend<f64>` for gradient checks of the very same code.

mod activation;
mod amx;
mod attention;
pub mod blas;
mod elementwise;
mod index;
mod lanes;
mod loss;
mod matmul;
mod norm;
mod optim;
mod simd;
mod softmax;

pub use amx::{AmxUnavailable, Bf16Scope, bf16_products, check_bf16_products, set_bf16_products};
pub use matmul::gemm_into;

use crate::error::Result;
use crate::{Element, Shape, Storage, Tensor};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Rows per rayon task below which row-parallel ops run serially.
const PAR_MIN_ELEMENTS: usize = 1 << 14;

/// The CPU backend over element type `E`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend<E = f32> {
    _elem: PhantomData<E>,
}

impl<E: Element> CpuBackend<E> {
    /// A CPU backend; threads come from rayon's global pool.
    pub const fn new() -> Self {
        CpuBackend { _elem: PhantomData }
    }
}

impl<E: Element> Storage for CpuBackend<E> {
    type Tensor = Tensor<E>;

    fn shape<'a>(&self, t: &'a Tensor<E>) -> &'a Shape {
        t.shape()
    }

    fn upload(&self, t: &Tensor<f32>) -> Result<Tensor<E>> {
        Ok(t.cast())
    }

    fn download(&self, t: &Tensor<E>) -> Result<Tensor<f32>> {
        Ok(t.cast())
    }

    fn zeros(&self, shape: &Shape) -> Result<Tensor<E>> {
        Ok(Tensor::zeros(shape.clone()))
    }

    fn reshape(&self, t: Tensor<E>, shape: Shape) -> Result<Tensor<E>> {
        t.reshape(shape)
    }
}

/// Fails unless `a` and `b` have the same shape.
fn same_shape<E: Element>(op: &'static str, a: &Tensor<E>, b: &Tensor<E>) -> Result<()> {
    crate::checks::same_shape(op, a.shape(), b.shape())
}

/// Fails unless `v` is a vector of length `x`'s last dimension.
fn row_vector<E: Element>(op: &'static str, x: &Tensor<E>, v: &Tensor<E>) -> Result<()> {
    crate::checks::row_vector(op, x.shape(), v.shape())
}

/// `Σ f(range)` over the fixed-size ranges that split `0..len`, computed in parallel but
/// added in range order, so that the result depends neither on the number of threads nor
/// on their scheduling (runs are reproducible).
fn ordered_sum_ranges(len: usize, f: impl Fn(Range<usize>) -> f64 + Sync + Send) -> f64 {
    use rayon::prelude::*;
    let partial: Vec<f64> = (0..len.div_ceil(PAR_MIN_ELEMENTS))
        .into_par_iter()
        .map(|i| {
            simd::vectorized(
                #[inline(always)]
                || f(i * PAR_MIN_ELEMENTS..((i + 1) * PAR_MIN_ELEMENTS).min(len)),
            )
        })
        .collect();
    partial.iter().sum()
}

/// `Σ f(chunk)` over fixed-size chunks of `data`, as [`ordered_sum_ranges`].
fn ordered_sum<T: Sync>(data: &[T], f: impl Fn(&[T]) -> f64 + Sync + Send) -> f64 {
    ordered_sum_ranges(
        data.len(),
        #[inline(always)]
        |r| f(&data[r]),
    )
}

/// Element-wise sum of per-task partial vectors, added in task order (reproducible).
fn sum_partials<E: Element>(partials: Vec<Vec<E>>, len: usize) -> Vec<E> {
    let mut acc = vec![E::zero(); len];
    for p in partials {
        acc.iter_mut().zip(&p).for_each(|(a, &b)| *a += b);
    }
    acc
}

/// A vector of `len` elements written chunk by chunk in parallel by `fill(start, chunk)`
/// (`start`: index of the chunk's first element, chunks of `chunk` elements), without being
/// zeroed first: outputs of memory-bound ops then cost one pass instead of two.
///
/// # Safety
/// `fill` must initialise every element of every chunk it is given.
unsafe fn par_build<E: Element>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<E>]) + Sync + Send,
) -> Vec<E> {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| {
            simd::vectorized(
                #[inline(always)]
                || fill(i * chunk, c),
            )
        });
    // SAFETY: the caller's `fill` initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Runs `f(start, chunk)` on consecutive chunks of `x` in parallel (`start`: index of the
/// chunk's first element), each vectorised: the in-place counterpart of [`par_build`].
fn par_update<E: Element>(x: &mut [E], f: impl Fn(usize, &mut [E]) + Sync + Send) {
    use rayon::prelude::*;
    x.par_chunks_mut(PAR_MIN_ELEMENTS)
        .enumerate()
        .for_each(|(i, c)| {
            simd::vectorized(
                #[inline(always)]
                || f(i * PAR_MIN_ELEMENTS, c),
            )
        });
}

/// A pointer that may cross into rayon tasks, for outputs whose tasks write disjoint but
/// interleaved elements (which slices cannot express).
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: users hand each task a disjoint set of elements, and only read shared inputs.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Chunk length (in rows of `row_len`) that splits `rows` rows into rayon tasks of a useful
/// size.
fn rows_per_task(rows: usize, row_len: usize) -> usize {
    let per_task = (PAR_MIN_ELEMENTS / row_len.max(1)).max(1);
    per_task.min(rows.max(1))
}
