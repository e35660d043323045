// reduce.cu: whole-tensor sums in double, deterministic. Launch: a fixed grid of
// `gridDim.x` blocks (blockDim multiple of 32); each thread strides over the elements in order,
// each block folds its threads in a fixed tree and writes one partial with `=`. The host adds
// the partials in block order, so a given n always gives the same bits.

// mode 0: Σ x; mode 1: Σ x²; mode 2: Σ (x − y)² (y unused otherwise).
extern "C" __global__ void sum_partials_f32(const float* x, const float* y, int mode, int n, double* partials) {
    double acc = 0.0;
    FOR_EACH(i, n) {
        const double v = mode == 2 ? (double)x[i] - (double)y[i] : (double)x[i];
        acc += mode == 0 ? v : v * v;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}
