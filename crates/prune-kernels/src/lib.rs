//! CUDA C sources of prune's GPU kernels, one `.cu` per op family, exposed as `&'static str`
//! and compiled at run time by NVRTC (so building prune needs no CUDA toolkit).
//!
//! Kernels are `extern "C"` and named after the backend method they serve: `<op>_fwd_f32`,
//! `<op>_bwd_f32`, `<op>_bwd_<part>_f32` for a backward in parts (`layer_norm_bwd_dx_f32`),
//! `<method>_f32` for a method without a forward/backward pair (`add_assign_f32`,
//! `permute_f32`, `adamw_step_f32`), or one of [`HELPERS`]; each file opens with a comment
//! saying what is parallelised, the launch shape, the layout it expects and whether outputs
//! are written (`=`) or accumulated (`+=`). [`COMMON`] (block reductions, a column-sum
//! helper, the grid-stride loop) is prepended to every file before compilation.

/// Device helpers shared by every kernel file; prepended to each before compilation.
pub const COMMON: &str = include_str!("../kernels/common.cuh");

/// Rows folded per column by the column-sum helper of [`COMMON`]: column kernels are launched
/// with blocks of `(32, COL_SUM_ROWS)` threads. Defined for the kernels by [`KernelFile::full_source`].
pub const COL_SUM_ROWS: u32 = 16;

/// Rows per block of a column sum: column kernels are launched with a grid of
/// `(ceil(c / 32), ceil(rows / COL_SUM_CHUNK))` blocks, each writing one row of partials,
/// so that tall inputs spread over many blocks. Defined like [`COL_SUM_ROWS`].
pub const COL_SUM_CHUNK: u32 = 64;

/// One kernel file: its name, its CUDA C text and the kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    /// File name, e.g. `softmax.cu`; also the NVRTC program name.
    pub name: &'static str,
    /// The CUDA C source, without [`COMMON`].
    pub source: &'static str,
    /// The `extern "C"` kernels the file defines.
    pub kernels: &'static [&'static str],
}

/// The `#define`s of the constants shared with the host ([`COL_SUM_ROWS`], [`COL_SUM_CHUNK`]).
pub fn constants() -> String {
    format!("#define COL_SUM_ROWS {COL_SUM_ROWS}\n#define COL_SUM_CHUNK {COL_SUM_CHUNK}\n")
}

impl KernelFile {
    /// The text NVRTC compiles: the shared [`constants`], [`COMMON`], then the file's source.
    pub fn full_source(&self) -> String {
        format!("{}{COMMON}\n{}", constants(), self.source)
    }
}

/// Pointwise arithmetic, row-broadcast bias and row-group scales, dropout (alone and fused
/// with a residual sum).
pub const ELEMENTWISE: KernelFile = KernelFile {
    name: "elementwise.cu",
    source: include_str!("../kernels/elementwise.cu"),
    kernels: &[
        "add_fwd_f32",
        "mul_fwd_f32",
        "scale_fwd_f32",
        "scaled_difference_f32",
        "fill_f32",
        "add_assign_f32",
        "scale_assign_f32",
        "add_bias_fwd_f32",
        "add_bias_bwd_f32",
        "scale_rows_fwd_f32",
        "scale_rows_bwd_ds_f32",
        "dropout_fwd_f32",
        "dropout_add_fwd_f32",
    ],
};

/// Deterministic whole-tensor sums (sum, sum of squares, squared difference) and the fold
/// of column-sum partials.
pub const REDUCE: KernelFile = KernelFile {
    name: "reduce.cu",
    source: include_str!("../kernels/reduce.cu"),
    kernels: &["sum_partials_f32", "column_totals_f32"],
};

/// GELU (erf form alone and fused with a bias add; tanh form), ReLU and tanh, forward and
/// backward.
pub const ACTIVATION: KernelFile = KernelFile {
    name: "activation.cu",
    source: include_str!("../kernels/activation.cu"),
    kernels: &[
        "gelu_fwd_f32",
        "bias_gelu_fwd_f32",
        "gelu_bwd_f32",
        "gelu_tanh_fwd_f32",
        "gelu_tanh_bwd_f32",
        "relu_fwd_f32",
        "relu_bwd_f32",
        "tanh_fwd_f32",
        "tanh_bwd_f32",
    ],
};

/// Softmax with fused scale and additive mask, and its backward.
pub const SOFTMAX: KernelFile = KernelFile {
    name: "softmax.cu",
    source: include_str!("../kernels/softmax.cu"),
    kernels: &["softmax_fwd_f32", "softmax_bwd_f32"],
};

/// LayerNorm (optionally over kept channels), forward and backward.
pub const NORM: KernelFile = KernelFile {
    name: "norm.cu",
    source: include_str!("../kernels/norm.cu"),
    kernels: &[
        "layer_norm_fwd_f32",
        "layer_norm_bwd_dx_f32",
        "layer_norm_bwd_params_f32",
    ],
};

/// Row gathers, their scatter-add backward, axis permutations.
pub const INDEX: KernelFile = KernelFile {
    name: "index.cu",
    source: include_str!("../kernels/index.cu"),
    kernels: &["gather_rows_fwd_f32", "gather_rows_bwd_f32", "permute_f32"],
};

/// Cross-entropy fused with softmax, temperature-scaled KL divergence.
pub const LOSS: KernelFile = KernelFile {
    name: "loss.cu",
    source: include_str!("../kernels/loss.cu"),
    kernels: &[
        "cross_entropy_fwd_f32",
        "cross_entropy_bwd_f32",
        "kl_div_fwd_f32",
        "kl_div_bwd_f32",
    ],
};

/// The fused AdamW step.
pub const OPTIM: KernelFile = KernelFile {
    name: "optim.cu",
    source: include_str!("../kernels/optim.cu"),
    kernels: &["adamw_step_f32"],
};

/// Kernels that serve several backend methods rather than one: a fill, the two folds of
/// the deterministic sums, and `s·(a − b)` of the losses' backward.
pub const HELPERS: &[&str] = &[
    "fill_f32",
    "sum_partials_f32",
    "column_totals_f32",
    "scaled_difference_f32",
];

/// Every kernel file, in a fixed order.
pub const ALL: &[KernelFile] = &[
    ELEMENTWISE,
    REDUCE,
    ACTIVATION,
    SOFTMAX,
    NORM,
    INDEX,
    LOSS,
    OPTIM,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_kernel_is_defined_extern_c_in_its_file() {
        for file in ALL {
            assert!(
                file.source.starts_with("// "),
                "{} opens with a comment",
                file.name
            );
            for k in file.kernels {
                let decl = format!("extern \"C\" __global__ void {k}(");
                assert!(file.source.contains(&decl), "{} lacks {k}", file.name);
            }
            let defined = file.source.matches("extern \"C\" __global__").count();
            assert_eq!(
                defined,
                file.kernels.len(),
                "{}: unlisted kernels",
                file.name
            );
        }
    }

    #[test]
    fn kernel_names_follow_the_rule() {
        // Backend methods with their own kernels but no forward/backward pair.
        let methods = ["add_assign", "scale_assign", "permute", "adamw_step"];
        for k in ALL.iter().flat_map(|f| f.kernels) {
            let Some(stem) = k.strip_suffix("_f32") else {
                panic!("{k} lacks the _f32 suffix");
            };
            let paired = stem.ends_with("_fwd")
                || stem.ends_with("_bwd")
                || stem
                    .rsplit_once("_bwd_")
                    .is_some_and(|(_, part)| !part.contains('_'));
            assert!(
                paired || methods.contains(&stem) || HELPERS.contains(k),
                "{k} follows none of the naming rules"
            );
        }
    }
}
