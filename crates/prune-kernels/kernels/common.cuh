// common.cuh: device helpers shared by every kernel file. The loader prepends this text to each
// `.cu` before NVRTC compiles it (NVRTC has no include path here); it defines no kernels.
//
// Block reductions assume blockDim.x is a multiple of 32 and at most 1024, and that every
// thread of the block calls them. They fold in a fixed tree, so results are reproducible.

#define FULL_MASK 0xffffffffu
// −∞ (NVRTC has no math.h, hence no INFINITY).
#define NEG_INF_F __int_as_float(0xff800000)
#define NEG_INF_D __longlong_as_double(0xfff0000000000000ll)

struct SumOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
    for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(FULL_MASK, v, offset));
    return v;
}

// Reduces `v` over the block; every thread receives the result. `identity` pads missing warps.
template <typename T, typename Op> __device__ T block_reduce(T v, Op op, T identity) {
    __shared__ T partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();  // a previous call may still be reading `partial`
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : identity;
    return warp_reduce(v, op);
}

template <typename T> __device__ __forceinline__ T block_sum(T v) { return block_reduce(v, SumOp(), T(0)); }
__device__ __forceinline__ float block_max(float v) { return block_reduce(v, MaxOp(), NEG_INF_F); }

// Σ_r term(r) for the column of this thread over this block's chunk of rows: block
// (32, COL_SUM_ROWS) covers 32 columns (blockIdx.x) and rows [blockIdx.y · COL_SUM_CHUNK,
// + COL_SUM_CHUNK) ∩ [0, rows); both constants are defined by the loader. Thread row y adds
// the chunk's rows y, y + COL_SUM_ROWS, ... in order, then the partials are added in a fixed
// order: no atomics, reproducible. The total is valid in the threads with threadIdx.y == 0;
// each block writes it to its row of a [gridDim.y, c] partials array, which
// `column_totals_f32` (reduce.cu) folds in chunk order.
template <typename F> __device__ float column_sum(int rows, F term) {
    __shared__ float part[COL_SUM_ROWS][33];
    const int start = blockIdx.y * COL_SUM_CHUNK;
    const int end = min(rows, start + COL_SUM_CHUNK);
    float acc = 0.f;
    for (int r = start + threadIdx.y; r < end; r += COL_SUM_ROWS) acc += term(r);
    __syncthreads();
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    float total = 0.f;
    if (threadIdx.y == 0)
        for (int j = 0; j < COL_SUM_ROWS; ++j) total += part[j][threadIdx.x];
    return total;
}

// Grid-stride loop over `n` elements of a 1-D launch.
#define FOR_EACH(i, n) for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)
