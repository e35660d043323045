// softmax.cu: softmax over the last axis fused with a scale and an additive mask, and its
// backward. Launch: one block per row (blockDim a multiple of 32, ≤ 1024; threads stride over
// the row of length tk). Contiguous f32 [rows, tk]; outputs written with `=`.

// y = softmax(scale · x + mask[row / rows_per_batch]) per row; mask [B, tk] read only when has_mask.
extern "C" __global__ void softmax_fwd_f32(const float* x, const float* mask, int has_mask, float* y,
                                           int tk, int rows_per_batch, float scale) {
    const size_t row = blockIdx.x;
    const float* xr = x + row * tk;
    const float* mr = mask + (row / rows_per_batch) * tk;
    float* yr = y + row * tk;
    float m = NEG_INF_F;
    for (int i = threadIdx.x; i < tk; i += blockDim.x) {
        const float v = xr[i] * scale + (has_mask ? mr[i] : 0.f);
        yr[i] = v;
        m = fmaxf(m, v);
    }
    m = block_max(m);
    float s = 0.f;
    for (int i = threadIdx.x; i < tk; i += blockDim.x) {
        const float e = expf(yr[i] - m);
        yr[i] = e;
        s += e;
    }
    const float inv = 1.f / block_sum(s);
    for (int i = threadIdx.x; i < tk; i += blockDim.x) yr[i] *= inv;
}

// dx = scale · y ⊙ (dy − Σ dy ⊙ y) per row.
extern "C" __global__ void softmax_bwd_f32(const float* y, const float* dy, float* dx, int tk, float scale) {
    const size_t base = (size_t)blockIdx.x * tk;
    float dot = 0.f;
    for (int i = threadIdx.x; i < tk; i += blockDim.x) dot += dy[base + i] * y[base + i];
    dot = block_sum(dot);
    for (int i = threadIdx.x; i < tk; i += blockDim.x) dx[base + i] = scale * y[base + i] * (dy[base + i] - dot);
}
