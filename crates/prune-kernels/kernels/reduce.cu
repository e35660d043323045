// reduce.cu: whole-tensor sums in double, and the fold of column-sum partials; deterministic.
// Whole-tensor sums launch a fixed grid of `gridDim.x` blocks (blockDim a multiple of 32);
// each thread strides over the elements in order, each block folds its threads in a fixed
// tree and writes one partial with `=`. The host adds the partials in block order, so a given
// n always gives the same bits.

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

// out[j] = Σ_k partial[k, j] for k = 0 .. chunks in order: the per-chunk partials of a column
// sum (common.cuh's column_sum) folded into [c]. Grid-stride over the c columns; `=` into out.
extern "C" __global__ void column_totals_f32(const float* partial, float* out, int chunks, int c) {
    FOR_EACH(j, c) {
        float total = 0.f;
        for (int k = 0; k < chunks; ++k) total += partial[(size_t)k * c + j];
        out[j] = total;
    }
}
