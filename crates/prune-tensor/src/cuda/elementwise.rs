//! Elementwise arithmetic, bias and row-group scales, deterministic reductions and dropout on
//! the GPU (`elementwise.cu`, `reduce.cu`).

use super::launch::{self, OrDevice, launch};
use super::{CudaBackend, CudaTensor, int};
use crate::checks;
use crate::error::{Result, TensorError, shape_error};
use crate::rng::mix64;
use crate::{ElementwiseOps, Shape};
use cudarc::driver::CudaSlice;
use prune_kernels::{ELEMENTWISE, KernelFile, REDUCE};

/// What a whole-tensor reduction adds up (the `mode` of `sum_partials_f32`).
#[derive(Clone, Copy)]
pub(super) enum Reduction {
    /// Σ x
    Sum = 0,
    /// Σ x²
    SumSquares = 1,
    /// Σ (x − y)²
    SquaredDifference = 2,
}

/// The kernel arguments of a dropout draw over a tensor.
struct DropoutDraw {
    /// Elements.
    n: i32,
    /// `mix64(seed)`, as the host's draw starts.
    mixed_seed: u64,
    /// The factor of a kept element, `1 / (1 − p)`.
    kept: f32,
}

impl CudaBackend {
    /// `y = kernel(x)` for a kernel `(const float* x, float* y, int n)` of `file`.
    pub(super) fn unary(
        &self,
        op: &'static str,
        file: KernelFile,
        kernel: &'static str,
        x: &CudaTensor,
    ) -> Result<CudaTensor> {
        let n = int(op, x.shape.numel())?;
        let mut y = self.alloc(op, x.shape.clone())?;
        launch!(self, op, file, kernel, launch::elementwise(n as usize); &x.data, &mut y.data, &n)?;
        Ok(y)
    }

    /// `y = kernel(a, b)` for a kernel `(const float* a, const float* b, float* y, int n)` of
    /// `file`, over two same-shaped tensors.
    pub(super) fn binary(
        &self,
        op: &'static str,
        file: KernelFile,
        kernel: &'static str,
        a: &CudaTensor,
        b: &CudaTensor,
    ) -> Result<CudaTensor> {
        checks::same_shape(op, &a.shape, &b.shape)?;
        let n = int(op, a.shape.numel())?;
        let mut y = self.alloc(op, a.shape.clone())?;
        launch!(self, op, file, kernel, launch::elementwise(n as usize);
            &a.data, &b.data, &mut y.data, &n)?;
        Ok(y)
    }

    /// A tensor of `shape` filled with `v`.
    fn full(&self, op: &'static str, shape: &Shape, v: f32) -> Result<CudaTensor> {
        let n = int(op, shape.numel())?;
        let mut y = self.alloc(op, shape.clone())?;
        launch!(self, op, ELEMENTWISE, "fill_f32", launch::elementwise(n as usize);
            &mut y.data, &v, &n)?;
        Ok(y)
    }

    /// The whole-tensor sum `what` of `x` (and `y` for a difference), in f64: per-block
    /// partials on the GPU, added on the host in block order (reproducible).
    pub(super) fn reduce(
        &self,
        op: &'static str,
        what: Reduction,
        x: &CudaTensor,
        y: &CudaTensor,
    ) -> Result<f64> {
        let n = int(op, x.shape.numel())?;
        if n == 0 {
            return Ok(0.0);
        }
        let blocks = launch::REDUCE_BLOCKS as usize;
        // SAFETY: the kernel writes one partial per block, all `blocks` of them.
        let mut partials: CudaSlice<f64> =
            unsafe { self.dev.stream.alloc(blocks) }.or_device(op)?;
        let mode = what as i32;
        launch!(self, op, REDUCE, "sum_partials_f32", launch::reduction();
            &x.data, &y.data, &mode, &n, &mut partials)?;
        Ok(self.to_host(op, &partials, blocks)?.iter().sum())
    }

    /// Checks `p` and sizes the dropout draw over `x` with `seed`.
    fn dropout_draw(
        &self,
        op: &'static str,
        x: &CudaTensor,
        p: f64,
        seed: u64,
    ) -> Result<DropoutDraw> {
        checks::drop_probability(op, p)?;
        Ok(DropoutDraw {
            n: int(op, x.shape.numel())?,
            mixed_seed: mix64(seed),
            kept: (1.0 / (1.0 - p)) as f32,
        })
    }

    /// An uninitialised `[chunks, c]` buffer for the partials of a column sum over `rows`
    /// rows (one row per chunk of rows, written by the column kernel).
    pub(super) fn column_partials(
        &self,
        op: &'static str,
        rows: usize,
        c: usize,
    ) -> Result<CudaTensor> {
        self.alloc(op, Shape::from([launch::column_chunks(rows), c]))
    }

    /// The `[c]` column totals of `partial` (`[chunks, c]`), added in chunk order.
    pub(super) fn column_totals(
        &self,
        op: &'static str,
        partial: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (chunks, c) = (partial.shape.rows(), partial.shape.last());
        let mut out = self.alloc(op, Shape::from([c]))?;
        let (chunks_i, c_i) = (int(op, chunks)?, int(op, c)?);
        launch!(self, op, REDUCE, "column_totals_f32", launch::elementwise(c);
            &partial.data, &mut out.data, &chunks_i, &c_i)?;
        Ok(out)
    }
}

impl ElementwiseOps for CudaBackend {
    fn add_fwd(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.binary("add_fwd", ELEMENTWISE, "add_fwd_f32", a, b)
    }

    fn mul_fwd(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        self.binary("mul_fwd", ELEMENTWISE, "mul_fwd_f32", a, b)
    }

    fn mul_bwd(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        dy: &CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor)> {
        checks::same_shape("mul_bwd", &a.shape, &dy.shape)?;
        Ok((
            self.binary("mul_bwd", ELEMENTWISE, "mul_fwd_f32", dy, b)?,
            self.binary("mul_bwd", ELEMENTWISE, "mul_fwd_f32", dy, a)?,
        ))
    }

    fn scale_fwd(&self, x: &CudaTensor, s: f64) -> Result<CudaTensor> {
        let n = int("scale_fwd", x.shape.numel())?;
        let s = s as f32;
        let mut y = self.alloc("scale_fwd", x.shape.clone())?;
        launch!(self, "scale_fwd", ELEMENTWISE, "scale_fwd_f32", launch::elementwise(n as usize);
            &x.data, &s, &mut y.data, &n)?;
        Ok(y)
    }

    fn add_bias_fwd(&self, x: &CudaTensor, bias: &CudaTensor) -> Result<CudaTensor> {
        const OP: &str = "add_bias_fwd";
        checks::row_vector(OP, &x.shape, &bias.shape)?;
        let (n, c) = (int(OP, x.shape.numel())?, int(OP, x.shape.last())?);
        let mut y = self.alloc(OP, x.shape.clone())?;
        launch!(self, OP, ELEMENTWISE, "add_bias_fwd_f32", launch::elementwise(n as usize);
            &x.data, &bias.data, &mut y.data, &n, &c)?;
        Ok(y)
    }

    fn add_bias_bwd(&self, dy: &CudaTensor) -> Result<CudaTensor> {
        const OP: &str = "add_bias_bwd";
        if dy.shape.rank() == 0 {
            return Err(shape_error(OP, &[&dy.shape], "dy needs a last axis"));
        }
        let (rows, c) = (dy.shape.rows(), dy.shape.last());
        let mut partial = self.column_partials(OP, rows, c)?;
        let (rows_i, c_i) = (int(OP, rows)?, int(OP, c)?);
        launch!(self, OP, ELEMENTWISE, "add_bias_bwd_f32", launch::per_columns(rows, c);
            &dy.data, &mut partial.data, &rows_i, &c_i)?;
        self.column_totals(OP, &partial)
    }

    fn scale_rows_fwd(
        &self,
        x: &CudaTensor,
        s: &CudaTensor,
        rows_per_group: usize,
    ) -> Result<CudaTensor> {
        const OP: &str = "scale_rows_fwd";
        checks::row_groups(OP, &x.shape, &s.shape, rows_per_group)?;
        let n = int(OP, x.shape.numel())?;
        let group = int(OP, (rows_per_group * x.shape.last()).max(1))?;
        let mut y = self.alloc(OP, x.shape.clone())?;
        launch!(self, OP, ELEMENTWISE, "scale_rows_fwd_f32", launch::elementwise(n as usize);
            &x.data, &s.data, &mut y.data, &n, &group)?;
        Ok(y)
    }

    fn scale_rows_bwd(
        &self,
        x: &CudaTensor,
        s: &CudaTensor,
        rows_per_group: usize,
        dy: &CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor)> {
        const OP: &str = "scale_rows_bwd";
        checks::row_groups(OP, &x.shape, &s.shape, rows_per_group)?;
        checks::same_shape(OP, &x.shape, &dy.shape)?;
        let dx = self.scale_rows_fwd(dy, s, rows_per_group)?;
        let group = rows_per_group * x.shape.last();
        let mut ds = self.zeroed(OP, s.shape.clone())?;
        if group > 0 {
            let g = int(OP, group)?;
            launch!(self, OP, ELEMENTWISE, "scale_rows_bwd_ds_f32",
                launch::per_row(s.shape.numel(), group);
                &x.data, &dy.data, &mut ds.data, &g)?;
        }
        Ok((dx, ds))
    }

    fn add_assign(&self, acc: &mut CudaTensor, x: &CudaTensor) -> Result<()> {
        checks::same_shape("add_assign", &acc.shape, &x.shape)?;
        let n = int("add_assign", x.shape.numel())?;
        launch!(self, "add_assign", ELEMENTWISE, "add_assign_f32", launch::elementwise(n as usize);
            &mut acc.data, &x.data, &n)
    }

    fn scale_assign(&self, x: &mut CudaTensor, s: f64) -> Result<()> {
        let n = int("scale_assign", x.shape.numel())?;
        let s = s as f32;
        launch!(self, "scale_assign", ELEMENTWISE, "scale_assign_f32", launch::elementwise(n as usize);
            &mut x.data, &s, &n)
    }

    fn sum_fwd(&self, x: &CudaTensor) -> Result<f64> {
        self.reduce("sum_fwd", Reduction::Sum, x, x)
    }

    fn mean_fwd(&self, x: &CudaTensor) -> Result<f64> {
        let n = x.shape.numel();
        if n == 0 {
            return Err(TensorError::Argument {
                op: "mean_fwd",
                what: "mean of an empty tensor".into(),
            });
        }
        Ok(self.sum_fwd(x)? / n as f64)
    }

    fn sum_bwd(&self, shape: &Shape, dl: f64) -> Result<CudaTensor> {
        self.full("sum_bwd", shape, dl as f32)
    }

    fn mean_bwd(&self, shape: &Shape, dl: f64) -> Result<CudaTensor> {
        let n = shape.numel().max(1) as f64;
        self.full("mean_bwd", shape, (dl / n) as f32)
    }

    fn sum_squares(&self, x: &CudaTensor) -> Result<f64> {
        self.reduce("sum_squares", Reduction::SumSquares, x, x)
    }

    fn dropout_fwd(&self, x: &CudaTensor, p: f64, seed: u64) -> Result<(CudaTensor, CudaTensor)> {
        const OP: &str = "dropout_fwd";
        let d = self.dropout_draw(OP, x, p, seed)?;
        let (mut y, mut keep) = (
            self.alloc(OP, x.shape.clone())?,
            self.alloc(OP, x.shape.clone())?,
        );
        launch!(self, OP, ELEMENTWISE, "dropout_fwd_f32", launch::elementwise(d.n as usize);
            &x.data, &mut y.data, &mut keep.data, &d.n, &d.mixed_seed, &p, &d.kept)?;
        Ok((y, keep))
    }

    fn dropout_add_fwd(
        &self,
        x: &CudaTensor,
        residual: &CudaTensor,
        p: f64,
        seed: u64,
    ) -> Result<(CudaTensor, CudaTensor)> {
        const OP: &str = "dropout_add_fwd";
        checks::same_shape(OP, &x.shape, &residual.shape)?;
        let d = self.dropout_draw(OP, x, p, seed)?;
        let (mut y, mut keep) = (
            self.alloc(OP, x.shape.clone())?,
            self.alloc(OP, x.shape.clone())?,
        );
        launch!(self, OP, ELEMENTWISE, "dropout_add_fwd_f32", launch::elementwise(d.n as usize);
            &x.data, &residual.data, &mut y.data, &mut keep.data, &d.n, &d.mixed_seed, &p,
            &d.kept)?;
        Ok((y, keep))
    }
}
