// activation.cu: GELU (erf form) and tanh, forward and backward. Parallelised over elements
// (grid-stride, any 1-D launch); contiguous f32; outputs written with `=`.

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); }

extern "C" __global__ void gelu_fwd_f32(const float* x, float* y, int n) {
    FOR_EACH(i, n) y[i] = gelu(x[i]);
}

// The bias add fused with GELU: u = x + bias (x viewed [n / c, c]) is written back into x
// (GELU's backward needs it) and y = gelu(u).
extern "C" __global__ void bias_gelu_fwd_f32(float* x, const float* bias, float* y, int n, int c) {
    FOR_EACH(i, n) {
        const float u = x[i] + bias[i % c];
        x[i] = u;
        y[i] = gelu(u);
    }
}

// dx = dy · (Φ(x) + x · φ(x)).
extern "C" __global__ void gelu_bwd_f32(const float* x, const float* dy, float* dx, int n) {
    FOR_EACH(i, n) {
        const float v = x[i];
        const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

extern "C" __global__ void tanh_fwd_f32(const float* x, float* y, int n) {
    FOR_EACH(i, n) y[i] = tanhf(x[i]);
}

// dx = dy · (1 − y²) given the forward output y.
extern "C" __global__ void tanh_bwd_f32(const float* y, const float* dy, float* dx, int n) {
    FOR_EACH(i, n) dx[i] = dy[i] * (1.f - y[i] * y[i]);
}
