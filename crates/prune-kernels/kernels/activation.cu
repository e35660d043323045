// activation.cu: GELU (erf and tanh forms), ReLU and tanh, forward and backward. Parallelised over elements
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

// GELU's tanh form (transformers' gelu_new): 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))).
__device__ __forceinline__ float gelu_tanh_inner(float v) {
    return 0.79788456080286536f * (v + 0.044715f * v * v * v);
}

extern "C" __global__ void gelu_tanh_fwd_f32(const float* x, float* y, int n) {
    FOR_EACH(i, n) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.f + tanhf(gelu_tanh_inner(v)));
    }
}

// dx = dy · (½(1 + t) + ½·v·(1 − t²)·√(2/π)·(1 + 3·0.044715·v²)), t = tanh(inner(v)).
extern "C" __global__ void gelu_tanh_bwd_f32(const float* x, const float* dy, float* dx, int n) {
    FOR_EACH(i, n) {
        const float v = x[i];
        const float t = tanhf(gelu_tanh_inner(v));
        const float du = 0.79788456080286536f * (1.f + 3.f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du);
    }
}

extern "C" __global__ void relu_fwd_f32(const float* x, float* y, int n) {
    FOR_EACH(i, n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

// dx = dy where the input is positive, 0 elsewhere.
extern "C" __global__ void relu_bwd_f32(const float* x, const float* dy, float* dx, int n) {
    FOR_EACH(i, n) dx[i] = x[i] > 0.f ? dy[i] : 0.f;
}

extern "C" __global__ void tanh_fwd_f32(const float* x, float* y, int n) {
    FOR_EACH(i, n) y[i] = tanhf(x[i]);
}

// dx = dy · (1 − y²) given the forward output y.
extern "C" __global__ void tanh_bwd_f32(const float* y, const float* dy, float* dx, int n) {
    FOR_EACH(i, n) dx[i] = dy[i] * (1.f - y[i] * y[i]);
}
