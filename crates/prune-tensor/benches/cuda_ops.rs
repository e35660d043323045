//! Criterion benchmarks `cuda/<op>/<shape>` of the CUDA backend with BERT-base shapes
//! (B=8, T=128, C=768, F=3072, H=12). Every iteration ends with a device synchronisation, so
//! the clock measures finished work. Throughput: FLOPs for GEMMs, bytes read plus written
//! for memory-bound kernels. Two references give the table its "% of peak" column:
//! `cuda/copy_peak/…` (the driver's device-to-device copy, what the memory-bound kernels are
//! held to) and `cuda/sgemm_peak/…` (cuBLAS on a large square SGEMM, what the GEMMs are).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prune_tensor::rng::Rng;
use prune_tensor::{
    ActivationOps, CudaBackend, CudaTensor, MatmulOps, NormOps, SoftmaxOps, Storage, Tensor,
    Transpose,
};

const B: usize = 8;
const T: usize = 128;
const C: usize = 768;
const F: usize = 3072;
const H: usize = 12;

fn random(b: &CudaBackend, dims: &[usize], rng: &mut Rng) -> CudaTensor {
    let t = Tensor::from_fn(dims, |_| rng.range(-1.0, 1.0) as f32);
    b.upload(&t).unwrap()
}

/// Benchmarks `f` as `cuda/<op>/<shape>`, synchronising after each call.
fn bench(c: &mut Criterion, b: &CudaBackend, id: &str, work: Throughput, mut f: impl FnMut()) {
    let mut group = c.benchmark_group("cuda");
    group.throughput(work);
    group.bench_function(id, |bencher| {
        bencher.iter(|| {
            f();
            b.synchronize().unwrap();
        })
    });
    group.finish();
}

/// Elements of the copy reference (256 MiB each way: far beyond the L2 cache).
const COPY_ELEMENTS: usize = 64 << 20;
/// Side of the square SGEMM reference.
const PEAK_SIDE: usize = 4096;

fn peaks(c: &mut Criterion) {
    let b = CudaBackend::new(0).expect("the CUDA benchmarks need a GPU");
    let mut rng = Rng::new(2);
    let big = random(&b, &[COPY_ELEMENTS], &mut rng);
    let bytes = Throughput::Bytes((2 * COPY_ELEMENTS * 4) as u64);
    // Cloning a device tensor is one device-to-device copy by the driver.
    bench(c, &b, "copy_peak/64Mi_f32", bytes, || {
        drop(big.clone());
    });
    drop(big);
    let a = random(&b, &[PEAK_SIDE, PEAK_SIDE], &mut rng);
    let flops = Throughput::Elements((2 * PEAK_SIDE * PEAK_SIDE * PEAK_SIDE) as u64);
    bench(c, &b, "sgemm_peak/4096x4096x4096", flops, || {
        b.matmul_fwd(&a, &a, Transpose::NN).unwrap();
    });
}

fn ops(c: &mut Criterion) {
    let b = CudaBackend::new(0).expect("the CUDA benchmarks need a GPU");
    let mut rng = Rng::new(1);
    let n = B * T;
    let x = random(&b, &[n, C], &mut rng);
    let w_up = random(&b, &[F, C], &mut rng);
    let flops = |m: usize, n: usize, k: usize| Throughput::Elements((2 * m * n * k) as u64);
    bench(c, &b, "matmul_nt/up_1024x768x3072", flops(n, F, C), || {
        b.matmul_fwd(&x, &w_up, Transpose::NT).unwrap();
    });
    let tf32 = CudaBackend::with_options(0, prune_tensor::CudaOptions { tf32: true }).unwrap();
    bench(
        c,
        &tf32,
        "matmul_nt_tf32/up_1024x768x3072",
        flops(n, F, C),
        || {
            tf32.matmul_fwd(&x, &w_up, Transpose::NT).unwrap();
        },
    );
    let q = random(&b, &[B, H, T, C / H], &mut rng);
    bench(
        c,
        &b,
        "matmul_batched_nt/scores_96x128x64x128",
        flops(B * H * T, T, C / H),
        || {
            b.matmul_fwd(&q, &q, Transpose::NT).unwrap();
        },
    );
    let bytes = |elements: usize| Throughput::Bytes((elements * 4) as u64);
    let h = random(&b, &[n, F], &mut rng);
    bench(c, &b, "gelu_fwd/1024x3072", bytes(2 * n * F), || {
        b.gelu_fwd(&h).unwrap();
    });
    let s = random(&b, &[B, H, T, T], &mut rng);
    let mask = b.zeros(&[B, T].into()).unwrap();
    bench(
        c,
        &b,
        "softmax_fwd/8x12x128x128",
        bytes(2 * B * H * T * T),
        || {
            b.softmax_fwd(&s, 0.125, Some(&mask)).unwrap();
        },
    );
    let (g, beta) = (random(&b, &[C], &mut rng), random(&b, &[C], &mut rng));
    bench(c, &b, "layer_norm_fwd/1024x768", bytes(2 * n * C), || {
        b.layer_norm_fwd(&x, &g, &beta, 1e-12).unwrap();
    });
    let (_, stats) = b.layer_norm_fwd(&x, &g, &beta, 1e-12).unwrap();
    bench(c, &b, "layer_norm_bwd/1024x768", bytes(3 * n * C), || {
        b.layer_norm_bwd(&x, &g, &stats, &x).unwrap();
    });
}

criterion_group!(benches, peaks, ops);
criterion_main!(benches);
