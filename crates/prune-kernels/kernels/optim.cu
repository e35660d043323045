// optim.cu: the fused AdamW step, in place on param, m, v (grid-stride over elements, any 1-D
// launch). With a mask (has_mask), the gradient is gated: g = grad ⊙ mask, as on the CPU.
// decay = 1 − lr·wd, step_size = lr / (1 − β1ᵗ), inv_sqrt_bc2 = 1 / sqrt(1 − β2ᵗ).

extern "C" __global__ void adamw_step_f32(float* param, const float* grad, float* m, float* v,
                                          const float* mask, int has_mask, float beta1, float beta2,
                                          float decay, float step_size, float eps, float inv_sqrt_bc2, int n) {
    FOR_EACH(i, n) {
        const float g = grad[i] * (has_mask ? mask[i] : 1.f);
        const float mi = beta1 * m[i] + (1.f - beta1) * g;
        const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}
