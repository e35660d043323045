// loss.cu: cross-entropy fused with its softmax, and temperature-scaled KL divergence, per row
// of [n, k] logits. Row kernels: one block per row (blockDim a multiple of 32, ≤ 1024, threads
// stride over k). Per-row losses are written (`=`) in double and added on the host in row order.

// probs = softmax(logits); row_loss = logsumexp(row) − row[label] (0 on ignored rows).
extern "C" __global__ void cross_entropy_fwd_f32(const float* logits, const long long* labels,
                                                 long long ignore, float* probs, double* row_loss, int k) {
    const size_t row = blockIdx.x;
    const float* xr = logits + row * k;
    float* pr = probs + row * k;
    float m = NEG_INF_F;
    for (int i = threadIdx.x; i < k; i += blockDim.x) m = fmaxf(m, xr[i]);
    m = block_max(m);
    double s = 0.0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const float e = expf(xr[i] - m);
        pr[i] = e;
        s += exp((double)xr[i] - (double)m);
    }
    s = block_sum(s);
    const float inv = (float)(1.0 / s);
    for (int i = threadIdx.x; i < k; i += blockDim.x) pr[i] *= inv;
    if (threadIdx.x == 0) {
        const long long label = labels[row];
        row_loss[row] = label == ignore ? 0.0 : (double)m + log(s) - (double)xr[label];
    }
}

// d = scale · (probs − onehot(label)), 0 on ignored rows; grid-stride over n · k elements.
extern "C" __global__ void cross_entropy_bwd_f32(const float* probs, const long long* labels, long long ignore,
                                                 float scale, float* d, int n, int k) {
    FOR_EACH(i, n * k) {
        const long long label = labels[i / k];
        d[i] = label == ignore ? 0.f : ((i % k == label) ? probs[i] - 1.f : probs[i]) * scale;
    }
}

// log-sum-exp of row / T, in double, over the block.
__device__ double block_logsumexp(const float* row, int k, double inv_t) {
    double m = NEG_INF_D;
    for (int i = threadIdx.x; i < k; i += blockDim.x) m = fmax(m, row[i] * inv_t);
    m = block_reduce(m, MaxOp(), NEG_INF_D);
    double s = 0.0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) s += exp(row[i] * inv_t - m);
    return m + log(block_sum(s));
}

// row_kl = Σ_j p_t · (log p_t − log p_s), p = softmax(row / T), in double.
extern "C" __global__ void kl_div_fwd_f32(const float* student, const float* teacher, double inv_t,
                                          double* row_kl, int k) {
    const size_t row = blockIdx.x;
    const float* s = student + row * k;
    const float* t = teacher + row * k;
    const double lse_s = block_logsumexp(s, k, inv_t);
    const double lse_t = block_logsumexp(t, k, inv_t);
    double acc = 0.0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const double lt = t[i] * inv_t - lse_t, ls = s[i] * inv_t - lse_s;
        acc += exp(lt) * (lt - ls);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) row_kl[row] = acc;
}

// d = scale · (softmax(s / T) − softmax(t / T)) per row.
extern "C" __global__ void kl_div_bwd_f32(const float* student, const float* teacher, float inv_t, float scale,
                                          float* d, int k) {
    const size_t base = (size_t)blockIdx.x * k;
    float ms = NEG_INF_F, mt = NEG_INF_F;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        ms = fmaxf(ms, student[base + i]);
        mt = fmaxf(mt, teacher[base + i]);
    }
    ms = block_max(ms);
    mt = block_max(mt);
    float ss = 0.f, st = 0.f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        ss += expf((student[base + i] - ms) * inv_t);
        st += expf((teacher[base + i] - mt) * inv_t);
    }
    ss = block_sum(ss);
    st = block_sum(st);
    for (int i = threadIdx.x; i < k; i += blockDim.x)
        d[base + i] = scale * (expf((student[base + i] - ms) * inv_t) / ss - expf((teacher[base + i] - mt) * inv_t) / st);
}
