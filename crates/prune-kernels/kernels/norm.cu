// norm.cu: LayerNorm over the last axis, optionally over the kept channels only (keep [c] of
// 0/1, read when has_keep; inv_n = 1 / kept count). Contiguous f32 x [rows, c]; outputs `=`.
// Forward and dx: one block per row (blockDim a multiple of 32, ≤ 1024, threads stride over c),
// two-pass statistics. dγ, dβ: column sums by chunks of rows (common.cuh's column_sum),
// folded after by `column_totals_f32`.

#define KEEP(i) (has_keep ? keep[i] : 1.f)

extern "C" __global__ void layer_norm_fwd_f32(const float* x, const float* gamma, const float* beta,
                                              const float* keep, int has_keep, float inv_n, float eps,
                                              float* y, float* mean, float* rstd, int c) {
    const size_t row = blockIdx.x;
    const float* xr = x + row * c;
    float* yr = y + row * c;
    float s = 0.f;
    for (int i = threadIdx.x; i < c; i += blockDim.x) s += KEEP(i) * xr[i];
    const float mu = block_sum(s) * inv_n;
    float q = 0.f;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        const float d = xr[i] - mu;
        q += KEEP(i) * d * d;
    }
    const float r = 1.f / sqrtf(block_sum(q) * inv_n + eps);
    for (int i = threadIdx.x; i < c; i += blockDim.x) yr[i] = KEEP(i) * ((xr[i] - mu) * r * gamma[i] + beta[i]);
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

// dx = k · rstd · (dy·γ − mean(dyk·γ) − x̂ · mean(dyk·γ·x̂)), dyk = dy · k (docs/backward.md).
extern "C" __global__ void layer_norm_bwd_dx_f32(const float* x, const float* gamma, const float* keep,
                                                 int has_keep, float inv_n, const float* mean,
                                                 const float* rstd, const float* dy, float* dx, int c) {
    const size_t row = blockIdx.x;
    const size_t base = row * c;
    const float mu = mean[row], rs = rstd[row];
    float gg = 0.f, ggx = 0.f;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        const float t = dy[base + i] * KEEP(i) * gamma[i];
        gg += t;
        ggx += t * (x[base + i] - mu) * rs;
    }
    const float mean_gg = block_sum(gg) * inv_n;
    const float mean_ggx = block_sum(ggx) * inv_n;
    for (int i = threadIdx.x; i < c; i += blockDim.x) {
        const float xhat = (x[base + i] - mu) * rs;
        dx[base + i] = KEEP(i) * rs * (dy[base + i] * gamma[i] - mean_gg - xhat * mean_ggx);
    }
}

// Partials, per chunk of rows, of dγ[j] = Σ_r dyk[r, j] · x̂[r, j] and dβ[j] = Σ_r dyk[r, j]
// ([chunks, c] each). Launch: block (32, COL_SUM_ROWS), grid (ceil(c / 32), chunks).
extern "C" __global__ void layer_norm_bwd_params_f32(const float* x, const float* keep, int has_keep,
                                                     const float* mean, const float* rstd, const float* dy,
                                                     float* dgamma, float* dbeta, int rows, int c) {
    const int col = blockIdx.x * 32 + threadIdx.x;
    const bool in = col < c;
    const float k = in ? KEEP(col) : 0.f;
    const float dg = column_sum(rows, [&](int r) {
        const size_t at = (size_t)r * c + col;
        return in ? dy[at] * k * (x[at] - mean[r]) * rstd[r] : 0.f;
    });
    const float db = column_sum(rows, [&](int r) { return in ? dy[(size_t)r * c + col] * k : 0.f; });
    if (threadIdx.y == 0 && in) {
        dgamma[(size_t)blockIdx.y * c + col] = dg;
        dbeta[(size_t)blockIdx.y * c + col] = db;
    }
}
