//! Criterion benchmarks of the CPU backend's ops at BERT-base and MiniLM shapes, named
//! `cpu/<op>/<shape>`.
//!
//! Throughput convention (read by `cargo xtask bench`, which prints the table):
//! `Throughput::Elements` is the FLOP count of a matmul (`2·M·N·K`), `Throughput::Bytes` the
//! nominal traffic of a memory-bound op: every input read once plus every output written once.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use prune::tensor::rng::Rng;
use prune::tensor::{
    ActivationOps, AdamW, CpuBackend, ElementwiseOps, IndexOps, LossOps, MatmulOps, NormOps,
    OptimOps, SoftmaxOps, Tensor, Transpose,
};
use std::time::Duration;

/// Bytes per f32 element.
const F32: usize = 4;
/// Bytes per token id or label on the host.
const ID: usize = 8;
/// BERT's WordPiece vocabulary size (embedding table rows, MLM classes).
const VOCAB: usize = 30522;

/// Dimensions of one model at the benchmark batch: B batch, T tokens, C hidden,
/// F intermediate, H heads, D head dim.
struct Model {
    name: &'static str,
    b: usize,
    t: usize,
    c: usize,
    f: usize,
    h: usize,
    d: usize,
}

impl Model {
    /// Rows of a token-major activation, `B·T`.
    fn n(&self) -> usize {
        self.b * self.t
    }
}

/// all-MiniLM-L6-v2 at batch 8 × 128 tokens.
const MINILM: Model = Model {
    name: "minilm",
    b: 8,
    t: 128,
    c: 384,
    f: 1536,
    h: 12,
    d: 32,
};

/// BERT-base at batch 8 × 128 tokens.
const BERT: Model = Model {
    name: "bert",
    b: 8,
    t: 128,
    c: 768,
    f: 3072,
    h: 12,
    d: 64,
};

/// A tensor of standard normal draws.
fn randn(dims: &[usize], seed: u64) -> Tensor<f32> {
    let mut rng = Rng::new(seed);
    Tensor::from_fn(dims.to_vec(), |_| rng.normal() as f32)
}

/// `n` ids uniform in `0..below`.
fn random_ids(n: usize, below: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(below)).collect()
}

/// Benchmarks `f` as `cpu/<op>/<shape>`. Flat sampling (the same iteration count in every
/// sample) keeps the runs short when one iteration takes tens of milliseconds.
fn bench<R>(c: &mut Criterion, op: &str, shape: &str, work: Throughput, mut f: impl FnMut() -> R) {
    let mut group = c.benchmark_group(format!("cpu/{op}"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(work);
    group.bench_function(shape, |b| b.iter(&mut f));
    group.finish();
}

/// FLOP throughput of `count` multiply-adds.
fn flops(count: usize) -> Throughput {
    Throughput::Elements(2 * count as u64)
}

/// Byte throughput of `count` bytes.
fn bytes(count: usize) -> Throughput {
    Throughput::Bytes(count as u64)
}

/// The FMA units' peak: multiply-adds on registers only (no loads), on every thread of the
/// pool at once, the ceiling of any f32 product on this CPU and the yardstick of the others.
/// Skipped where the CPU has neither AVX-512 F nor FMA.
fn fma_peak(c: &mut Criterion) {
    let Some((run, flops_per_step)) = fma_kernel() else {
        eprintln!("cpu/fma_peak skipped: this CPU has neither AVX-512 F nor FMA");
        return;
    };
    let (threads, steps) = (rayon::current_num_threads(), 1 << 20);
    let work = Throughput::Elements((threads * steps * flops_per_step) as u64);
    bench(c, "fma_peak", &format!("{threads}_threads"), work, || {
        rayon::broadcast(|_| run(steps))
    });
}

/// A function running `steps` rounds of twelve independent FMAs (twelve chains cover the
/// latency of both FMA ports) on the vector registers named `$r` (`"zmm"` or `"ymm"`), on
/// zeros so that no value goes denormal.
#[cfg(target_arch = "x86_64")]
macro_rules! fma_loop {
    ($r:literal) => {
        fma_loop!(@ $r; "0" "1" "2" "3" "4" "5" "6" "7" "8" "9" "10" "11")
    };
    (@ $r:literal; $($i:literal)*) => {{
        fn run(steps: usize) {
            // SAFETY: chosen only where the CPU has these registers and FMAs; touches only
            // the registers it declares (the C ABI's caller-saved set); `steps` ≥ 1.
            unsafe {
                std::arch::asm!(
                    concat!("vxorps ", $r, "12, ", $r, "12, ", $r, "12"),
                    concat!("vmovaps ", $r, "13, ", $r, "12"),
                    $(concat!("vmovaps ", $r, $i, ", ", $r, "12"),)*
                    "2:",
                    $(concat!("vfmadd231ps ", $r, $i, ", ", $r, "12, ", $r, "13"),)*
                    "dec rcx",
                    "jnz 2b",
                    "vzeroupper",
                    inout("rcx") steps.max(1) => _,
                    clobber_abi("C"),
                    options(nostack, nomem),
                )
            }
        }
        run as fn(usize)
    }};
}

/// The widest register-only FMA loop this CPU runs, and the FLOPs of one step of it.
#[cfg(target_arch = "x86_64")]
fn fma_kernel() -> Option<(fn(usize), usize)> {
    if is_x86_feature_detected!("avx512f") {
        Some((fma_loop!("zmm"), 12 * 16 * 2))
    } else if is_x86_feature_detected!("fma") {
        Some((fma_loop!("ymm"), 12 * 8 * 2))
    } else {
        None
    }
}

/// No register-only FMA loop off x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn fma_kernel() -> Option<(fn(usize), usize)> {
    None
}

/// The machine's sgemm peak: one large square NN product.
fn sgemm_peak(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    let n = 2048;
    let (a, b) = (randn(&[n, n], 1), randn(&[n, n], 2));
    bench(c, "sgemm_peak", &n.to_string(), flops(n * n * n), || {
        cpu.matmul_fwd(&a, &b, Transpose::NN).unwrap()
    });
}

/// Linear layers `[B·T, K] · [N, K]ᵀ` (PyTorch `[out, in]` weights) forward and backward, at
/// the shapes of one Q/K/V (or attention output) projection, FFN up and FFN down.
fn linear(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    for m in [&MINILM, &BERT] {
        let rows = m.n();
        for (role, k, out) in [("qkv", m.c, m.c), ("up", m.c, m.f), ("down", m.f, m.c)] {
            let (x, w, dy) = (
                randn(&[rows, k], 1),
                randn(&[out, k], 2),
                randn(&[rows, out], 3),
            );
            let shape = format!("{}_{role}_{rows}x{k}x{out}", m.name);
            let macs = rows * k * out;
            bench(c, "matmul_nt", &shape, flops(macs), || {
                cpu.matmul_fwd(&x, &w, Transpose::NT).unwrap()
            });
            bench(c, "matmul_bwd", &shape, flops(2 * macs), || {
                cpu.matmul_bwd(&x, &w, Transpose::NT, &dy).unwrap()
            });
            if prune_tensor::cpu::set_bf16_products(true).is_ok() {
                bench(c, "matmul_nt_bf16", &shape, flops(macs), || {
                    cpu.matmul_fwd(&x, &w, Transpose::NT).unwrap()
                });
                bench(c, "matmul_bwd_bf16", &shape, flops(2 * macs), || {
                    cpu.matmul_bwd(&x, &w, Transpose::NT, &dy).unwrap()
                });
                prune_tensor::cpu::set_bf16_products(false).unwrap();
            }
        }
    }
}

/// Batched attention products over `[B, H, T, D]`: scores `Q · Kᵀ` and context `P · V`.
fn attention(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    for m in [&MINILM, &BERT] {
        let head_dims = [m.b, m.h, m.t, m.d];
        let (q, k, v) = (
            randn(&head_dims, 1),
            randn(&head_dims, 2),
            randn(&head_dims, 3),
        );
        let p = randn(&[m.b, m.h, m.t, m.t], 4);
        let shape = format!("{}_{}x{}x{}x{}", m.name, m.b, m.h, m.t, m.d);
        let macs = m.b * m.h * m.t * m.t * m.d;
        bench(c, "attn_scores", &shape, flops(macs), || {
            cpu.matmul_fwd(&q, &k, Transpose::NT).unwrap()
        });
        bench(c, "attn_context", &shape, flops(macs), || {
            cpu.matmul_fwd(&p, &v, Transpose::NN).unwrap()
        });
    }
}

/// Pointwise and row-wise ops on activations: GELU on `[B·T, F]`, bias add on `[B·T, F]`,
/// dropout on `[B·T, F]`, LayerNorm on `[B·T, C]`, masked softmax on `[B, H, T, T]` and the
/// head permutation `[B, T, H, D] → [B, H, T, D]`.
fn activations(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    for m in [&MINILM, &BERT] {
        let n = m.n();
        let wide = format!("{}_{n}x{}", m.name, m.f);
        let (h, dh, bias) = (randn(&[n, m.f], 1), randn(&[n, m.f], 2), randn(&[m.f], 3));
        let numel = n * m.f;
        bench(c, "gelu_fwd", &wide, bytes(2 * numel * F32), || {
            cpu.gelu_fwd(&h).unwrap()
        });
        bench(c, "gelu_bwd", &wide, bytes(3 * numel * F32), || {
            cpu.gelu_bwd(&h, &dh).unwrap()
        });
        bench(
            c,
            "add_bias_fwd",
            &wide,
            bytes((2 * numel + m.f) * F32),
            || cpu.add_bias_fwd(&h, &bias).unwrap(),
        );
        bench(c, "add_bias_bwd", &wide, bytes((numel + m.f) * F32), || {
            cpu.add_bias_bwd(&dh).unwrap()
        });
        bench(c, "dropout_fwd", &wide, bytes(3 * numel * F32), || {
            cpu.dropout_fwd(&h, 0.1, 7).unwrap()
        });

        let narrow = format!("{}_{n}x{}", m.name, m.c);
        let (x, dy) = (randn(&[n, m.c], 4), randn(&[n, m.c], 5));
        let (gamma, beta) = (randn(&[m.c], 6), randn(&[m.c], 7));
        let stats = cpu.layer_norm_fwd(&x, &gamma, &beta, 1e-12).unwrap().1;
        let numel = n * m.c;
        bench(
            c,
            "layer_norm_fwd",
            &narrow,
            bytes((2 * numel + 2 * m.c + 2 * n) * F32),
            || cpu.layer_norm_fwd(&x, &gamma, &beta, 1e-12).unwrap(),
        );
        bench(
            c,
            "layer_norm_bwd",
            &narrow,
            bytes((3 * numel + 3 * m.c + 2 * n) * F32),
            || cpu.layer_norm_bwd(&x, &gamma, &stats, &dy).unwrap(),
        );

        let scores = format!("{}_{}x{}x{}x{}", m.name, m.b, m.h, m.t, m.t);
        let s = randn(&[m.b, m.h, m.t, m.t], 8);
        let ds = randn(&[m.b, m.h, m.t, m.t], 9);
        // Batch entry i has its last 8·i positions padded.
        let mask = Tensor::from_fn([m.b, m.t], |i| {
            let (b, t) = (i / m.t, i % m.t);
            if t + 8 * b >= m.t { -10_000.0 } else { 0.0 }
        });
        let scale = 1.0 / (m.d as f64).sqrt();
        let y = cpu.softmax_fwd(&s, scale, Some(&mask)).unwrap();
        let numel = s.shape().numel();
        bench(
            c,
            "softmax_fwd",
            &scores,
            bytes((2 * numel + m.b * m.t) * F32),
            || cpu.softmax_fwd(&s, scale, Some(&mask)).unwrap(),
        );
        bench(c, "softmax_bwd", &scores, bytes(3 * numel * F32), || {
            cpu.softmax_bwd(&y, &ds, scale).unwrap()
        });

        let heads = format!("{}_{}x{}x{}x{}", m.name, m.b, m.t, m.h, m.d);
        let split = randn(&[m.b, m.t, m.h, m.d], 10);
        bench(c, "permute_heads", &heads, bytes(2 * n * m.c * F32), || {
            cpu.permute(&split, &[0, 2, 1, 3]).unwrap()
        });
    }
}

/// Embedding lookup of `B·T` ids in a `[V, C]` table, and its scatter-add backward into a
/// fresh `[V, C]` gradient.
fn embedding(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    for m in [&MINILM, &BERT] {
        let n = m.n();
        let table = randn(&[VOCAB, m.c], 1);
        let ids = random_ids(n, VOCAB, 2);
        let dy = randn(&[n, m.c], 3);
        let shape = format!("{}_{n}x{VOCAB}x{}", m.name, m.c);
        bench(
            c,
            "gather_rows_fwd",
            &shape,
            bytes(2 * n * m.c * F32 + n * ID),
            || cpu.gather_rows_fwd(&table, &ids).unwrap(),
        );
        bench(
            c,
            "gather_rows_bwd",
            &shape,
            bytes((VOCAB * m.c + n * m.c) * F32 + n * ID),
            || cpu.gather_rows_bwd(&dy, &ids, VOCAB).unwrap(),
        );
    }
}

/// Cross-entropy over the vocabulary for `B·T` tokens (masked-LM sized), forward and backward.
fn cross_entropy(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    let n = MINILM.n();
    let logits = randn(&[n, VOCAB], 1);
    let labels: Vec<i64> = random_ids(n, VOCAB, 2)
        .into_iter()
        .map(|l| l as i64)
        .collect();
    let probs = cpu.cross_entropy_fwd(&logits, &labels, -100).unwrap().1;
    let shape = format!("mlm_{n}x{VOCAB}");
    let traffic = bytes(2 * n * VOCAB * F32 + n * ID);
    bench(c, "cross_entropy_fwd", &shape, traffic.clone(), || {
        cpu.cross_entropy_fwd(&logits, &labels, -100).unwrap()
    });
    bench(c, "cross_entropy_bwd", &shape, traffic, || {
        cpu.cross_entropy_bwd(&probs, &labels, -100, 1.0).unwrap()
    });
}

/// One AdamW step on an FFN weight `[F, C]`: reads param, grad and both moments, writes param
/// and moments.
fn adamw(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    let hp = AdamW {
        lr: 1e-5,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 10,
    };
    for m in [&MINILM, &BERT] {
        let dims = [m.f, m.c];
        let (mut w, grad) = (randn(&dims, 1), randn(&dims, 2));
        let (mut m1, mut v1) = (Tensor::zeros(dims), Tensor::zeros(dims));
        let shape = format!("{}_{}x{}", m.name, m.f, m.c);
        bench(c, "adamw_step", &shape, bytes(7 * m.f * m.c * F32), || {
            cpu.adamw_step(&mut w, &grad, &mut m1, &mut v1, &hp, None)
                .unwrap()
        });
    }
}

/// Short runs: the whole suite should take a few minutes on two cores.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! {
    name = cpu_ops;
    config = config();
    targets = fma_peak, sgemm_peak, linear, attention, activations, embedding, cross_entropy, adamw
}
criterion_main!(cpu_ops);
