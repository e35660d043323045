// elementwise.cu: pointwise arithmetic, a bias broadcast over rows, row-group scales, dropout.
// Parallelised over elements with grid-stride loops (any 1-D launch) unless a kernel says
// otherwise. Tensors are contiguous row-major f32; `n` is the element count. Outputs are
// written with `=`, except the `*_assign` kernels, which update in place (`+=`, `*=`).

extern "C" __global__ void add_fwd_f32(const float* a, const float* b, float* y, int n) {
    FOR_EACH(i, n) y[i] = a[i] + b[i];
}

extern "C" __global__ void mul_fwd_f32(const float* a, const float* b, float* y, int n) {
    FOR_EACH(i, n) y[i] = a[i] * b[i];
}

extern "C" __global__ void scale_fwd_f32(const float* x, float s, float* y, int n) {
    FOR_EACH(i, n) y[i] = x[i] * s;
}

// y = s · (a − b) (the MSE gradient).
extern "C" __global__ void scaled_difference_f32(const float* a, const float* b, float s, float* y, int n) {
    FOR_EACH(i, n) y[i] = s * (a[i] - b[i]);
}

extern "C" __global__ void fill_f32(float* y, float v, int n) {
    FOR_EACH(i, n) y[i] = v;
}

extern "C" __global__ void add_assign_f32(float* acc, const float* x, int n) {
    FOR_EACH(i, n) acc[i] += x[i];
}

extern "C" __global__ void scale_assign_f32(float* x, float s, int n) {
    FOR_EACH(i, n) x[i] *= s;
}

// y = x + bias, x viewed [n / c, c], bias [c].
extern "C" __global__ void add_bias_fwd_f32(const float* x, const float* bias, float* y, int n, int c) {
    FOR_EACH(i, n) y[i] = x[i] + bias[i % c];
}

// Partials of db[j] = Σ_r dy[r, j], one row of `partial` [chunks, c] per chunk of rows.
// Launch: block (32, COL_SUM_ROWS), grid (ceil(c / 32), chunks); `=` into partial.
extern "C" __global__ void add_bias_bwd_f32(const float* dy, float* partial, int rows, int c) {
    const int col = blockIdx.x * 32 + threadIdx.x;
    const float total = column_sum(rows, [&](int r) { return col < c ? dy[(size_t)r * c + col] : 0.f; });
    if (threadIdx.y == 0 && col < c) partial[(size_t)blockIdx.y * c + col] = total;
}

// y = x ⊙ s[i / group]: each contiguous group of `group` elements scaled by one factor.
extern "C" __global__ void scale_rows_fwd_f32(const float* x, const float* s, float* y, int n, int group) {
    FOR_EACH(i, n) y[i] = x[i] * s[i / group];
}

// ds[g] = Σ x ⊙ dy over group g. Launch: one block per group (blockDim multiple of 32).
extern "C" __global__ void scale_rows_bwd_ds_f32(const float* x, const float* dy, float* ds, int group) {
    const size_t base = (size_t)blockIdx.x * group;
    float acc = 0.f;
    for (int i = threadIdx.x; i < group; i += blockDim.x) acc += x[base + i] * dy[base + i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) ds[blockIdx.x] = acc;
}

// SplitMix64 finaliser, bit for bit the host's `rng::mix64`.
__device__ __forceinline__ unsigned long long mix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Inverted dropout's factor for element i with the host's counter-based draw:
// u = (mix64(mixed_seed ^ i) >> 11) · 2⁻⁵³ (mixed_seed = mix64(seed), computed on the host);
// 0 when u < p, else `kept`.
__device__ __forceinline__ float dropout_factor(unsigned long long mixed_seed, int i, double p, float kept) {
    const double u = (double)(mix64(mixed_seed ^ (unsigned long long)i) >> 11) * (1.0 / 9007199254740992.0);
    return u < p ? 0.f : kept;
}

// y = x ⊙ keep, keep = 0 or `kept` per element.
extern "C" __global__ void dropout_fwd_f32(const float* x, float* y, float* keep, int n,
                                           unsigned long long mixed_seed, double p, float kept) {
    FOR_EACH(i, n) {
        const float k = dropout_factor(mixed_seed, i, p, kept);
        keep[i] = k;
        y[i] = x[i] * k;
    }
}

// Dropout fused with the residual sum that follows it: y = x ⊙ keep + residual.
extern "C" __global__ void dropout_add_fwd_f32(const float* x, const float* residual, float* y, float* keep,
                                               int n, unsigned long long mixed_seed, double p, float kept) {
    FOR_EACH(i, n) {
        const float k = dropout_factor(mixed_seed, i, p, kept);
        keep[i] = k;
        y[i] = x[i] * k + residual[i];
    }
}
