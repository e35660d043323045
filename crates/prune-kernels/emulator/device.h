// device.h: what a kernel file needs to compile as plain C++ for the CPU emulator of the CUDA
// driver (see README.md here). Prepended, with the shared constants and common.cuh, to each
// kernel file; the file's text itself is unchanged. Thread and block indices are those of the
// thread being run; __syncthreads and the warp shuffles suspend it until its block (or warp)
// arrives, so every thread of a block runs as a fiber of one OS thread.
#pragma once
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <algorithm>
#include <utility>

struct dim3 {
    unsigned x, y, z;
};

namespace emu {
// The indices of the thread now running (set by the scheduler before it resumes a thread).
extern dim3 thread_idx, block_idx, block_dim, grid_dim;
// Suspends the running thread until every live thread of its block has called it.
void sync_block();
// Publishes `size` bytes at `mine` to the warp, waits for the whole warp, then copies the
// bytes lane `src_lane` published into `out`. `mask` must name every lane of the warp.
void warp_exchange(unsigned mask, const void* mine, void* out, unsigned size, int src_lane);
// The lane of the running thread in its warp.
int lane();

// A kernel's entry as the driver calls it: `params[i]` points at argument i.
using Entry = void (*)(void** params);
// A kernel name and its entry.
struct Kernel {
    const char* name;
    Entry entry;
};
// Adds kernels to the driver's registry (one static object per kernel file).
struct Registration {
    Registration(const Kernel* kernels, int count);
};

template <typename... A, size_t... I>
void invoke(void (*k)(A...), void** params, std::index_sequence<I...>) {
    k(*static_cast<A*>(params[I])...);
}
template <typename... A>
void call(void (*k)(A...), void** params) {
    invoke(k, params, std::index_sequence_for<A...>{});
}
// Calls kernel `K` with its arguments unpacked from `params` by the kernel's own signature
// (as the GPU driver does with the signature in the compiled module).
template <auto K>
void entry(void** params) {
    call(K, params);
}
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

// CUDA's integer min and max.
using std::max;
using std::min;

inline void __syncthreads() { emu::sync_block(); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    T out;
    emu::warp_exchange(mask, &v, &out, sizeof(T), emu::lane() ^ lane_mask);
    return out;
}

inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

inline double __longlong_as_double(long long i) {
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}
