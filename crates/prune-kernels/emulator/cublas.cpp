// cublas.cpp: a CPU emulator of the cuBLAS calls prune's CUDA backend makes (handle set-up,
// SGEMM and strided-batched SGEMM), with cuBLAS's column-major semantics and its argument
// rules, so the backend's GEMM geometry is tested on a machine without a GPU. Products are
// accumulated in double; beta = 0 overwrites C without reading it, as cuBLAS does.
#include <cstddef>
#include <cstdint>
#include <vector>

#define EXPORT extern "C" __attribute__((visibility("default")))

typedef int cublasStatus_t;
typedef void* cublasHandle_t;

enum : cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
};
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

namespace {
struct Handle {
    int math_mode = 0;
};

int max1(int v) { return v > 1 ? v : 1; }

// cuBLAS's checks for one GEMM: non-negative sizes, known operations and leading dimensions
// at least the stored operands' row counts.
bool valid(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
    if (m < 0 || n < 0 || k < 0) return false;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T)) return false;
    if (lda < max1(ta == CUBLAS_OP_N ? m : k)) return false;
    if (ldb < max1(tb == CUBLAS_OP_N ? k : n)) return false;
    return ldc >= max1(m);
}

// C = alpha · op(A) · op(B) + beta · C, column-major, op(A) m×k, op(B) k×n. Rows of op(A) and
// columns of op(B) are first copied out contiguously, so each entry is one running dot product.
void gemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
          float beta, float* c, int ldc) {
    std::vector<float> rows(static_cast<size_t>(m) * k), cols(static_cast<size_t>(n) * k);
    for (int i = 0; i < m; ++i)
        for (int l = 0; l < k; ++l)
            rows[static_cast<size_t>(i) * k + l] =
                ta == CUBLAS_OP_N ? a[i + static_cast<int64_t>(l) * lda] : a[l + static_cast<int64_t>(i) * lda];
    for (int j = 0; j < n; ++j)
        for (int l = 0; l < k; ++l)
            cols[static_cast<size_t>(j) * k + l] =
                tb == CUBLAS_OP_N ? b[l + static_cast<int64_t>(j) * ldb] : b[j + static_cast<int64_t>(l) * ldb];
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            const float* r = &rows[static_cast<size_t>(i) * k];
            const float* q = &cols[static_cast<size_t>(j) * k];
            double acc = 0.0;
            for (int l = 0; l < k; ++l) acc += static_cast<double>(r[l]) * q[l];
            float& out = c[i + static_cast<int64_t>(j) * ldc];
            const double prior = beta == 0.f ? 0.0 : static_cast<double>(beta) * out;
            out = static_cast<float>(alpha * acc + prior);
        }
}
}  // namespace

EXPORT cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new Handle();
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete static_cast<Handle*>(handle);
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, void*) {
    return handle == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasSetMathMode(cublasHandle_t handle, int mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    static_cast<Handle*>(handle)->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, int ta, int tb, int m, int n, int k, const float* alpha,
                                     const float* a, int lda, const float* b, int ldb, const float* beta, float* c,
                                     int ldc) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid(ta, tb, m, n, k, lda, ldb, ldc) || alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    gemm(ta, tb, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, int ta, int tb, int m, int n, int k,
                                                const float* alpha, const float* a, int lda, long long stride_a,
                                                const float* b, int ldb, long long stride_b, const float* beta,
                                                float* c, int ldc, long long stride_c, int batch) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid(ta, tb, m, n, k, lda, ldb, ldc) || batch < 0 || alpha == nullptr || beta == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; ++i)
        gemm(ta, tb, m, n, k, *alpha, a + i * stride_a, lda, b + i * stride_b, ldb, *beta, c + i * stride_c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
