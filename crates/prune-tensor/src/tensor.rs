//! `Tensor`: a contiguous row-major host tensor, the CPU backend's storage and the exchange
//! format of every backend (upload / download).

use crate::error::{Result, TensorError};
use crate::{Element, Shape};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};

/// A contiguous, row-major tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<E = f32> {
    shape: Shape,
    data: Vec<E>,
}

impl<E: Element> Tensor<E> {
    /// A tensor over `data`; fails when `data.len()` is not the shape's element count.
    pub fn new(shape: impl Into<Shape>, data: Vec<E>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(TensorError::Length {
                shape,
                len: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Self {
        Self::full(shape, E::zero())
    }

    /// A tensor with every element equal to `value`.
    pub fn full(shape: impl Into<Shape>, value: E) -> Self {
        let shape = shape.into();
        let data = vec![value; shape.numel()];
        Tensor { shape, data }
    }

    /// A tensor whose element at flat (row-major) index `i` is `f(i)`.
    pub fn from_fn(shape: impl Into<Shape>, f: impl FnMut(usize) -> E) -> Self {
        let shape = shape.into();
        let data = (0..shape.numel()).map(f).collect();
        Tensor { shape, data }
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: E) -> Self {
        Tensor {
            shape: Shape::new([]),
            data: vec![value],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[E] {
        &self.data
    }

    /// The elements in row-major order, mutably.
    pub fn data_mut(&mut self) -> &mut [E] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<E> {
        self.data
    }

    /// The same elements under another shape with the same element count.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.data.len() {
            return Err(crate::error::shape_error(
                "reshape",
                &[&self.shape, &shape],
                "element counts differ",
            ));
        }
        Ok(Tensor {
            shape,
            data: self.data,
        })
    }

    /// An ndarray view of the tensor.
    pub fn view(&self) -> ArrayViewD<'_, E> {
        ArrayViewD::from_shape(IxDyn(self.shape.dims()), &self.data)
            .expect("a tensor's data length always matches its shape")
    }

    /// A mutable ndarray view of the tensor.
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, E> {
        ArrayViewMutD::from_shape(IxDyn(self.shape.dims()), &mut self.data)
            .expect("a tensor's data length always matches its shape")
    }

    /// The same values in another element type.
    pub fn cast<F: Element>(&self) -> Tensor<F> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| F::of(x.f64())).collect(),
        }
    }

    /// Largest absolute elementwise difference to `other` (infinite when shapes differ).
    pub fn max_abs_diff(&self, other: &Tensor<E>) -> f64 {
        if self.shape != other.shape {
            return f64::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a.f64() - b.f64()).abs())
            .fold(0.0, f64::max)
    }

    /// Largest absolute element.
    pub fn max_abs(&self) -> f64 {
        self.data.iter().map(|a| a.f64().abs()).fold(0.0, f64::max)
    }
}
