// driver.cpp: a CPU emulator of the part of the CUDA driver API (libcuda) that prune's CUDA
// backend uses, so its kernels, launch code and argument passing run and are tested on a
// machine without a GPU. "Device" memory is host memory; a stream runs each operation when it
// is queued, so events and synchronisation are no-ops. Modules are the kernel files compiled
// as C++ (device.h) and looked up by kernel name; a launch runs the blocks one after another,
// and the threads of a block as fibers of the calling thread that switch at __syncthreads and
// at warp shuffles. Launches are serialised process-wide (shared memory is static storage).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "device.h"
#include "fiber.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef void* CUfunction;

enum : CUresult {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
};

// The emulated device: an H100-like compute capability, so NVRTC targets compute_90.
constexpr int CC_MAJOR = 9, CC_MINOR = 0;
constexpr unsigned MAX_THREADS_PER_BLOCK = 1024;
constexpr size_t FIBER_STACK_BYTES = 64 * 1024;

// ---------------------------------------------------------------- the kernel registry

namespace {
std::map<std::string, emu::Entry>& registry() {
    static std::map<std::string, emu::Entry> kernels;
    return kernels;
}
}  // namespace

emu::Registration::Registration(const Kernel* kernels, int count) {
    for (int i = 0; i < count; ++i) registry()[kernels[i].name] = kernels[i].entry;
}

// ---------------------------------------------------------------- memory

namespace {
std::mutex memory_lock;
// Live allocations: start address -> size in bytes.
std::map<uintptr_t, size_t> allocations;

CUresult allocate(CUdeviceptr* out, size_t bytes) {
    if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    void* p = malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    std::lock_guard<std::mutex> guard(memory_lock);
    allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
    *out = reinterpret_cast<uintptr_t>(p);
    return CUDA_SUCCESS;
}

CUresult release(CUdeviceptr p) {
    std::lock_guard<std::mutex> guard(memory_lock);
    auto it = allocations.find(p);
    if (it == allocations.end()) return CUDA_ERROR_INVALID_VALUE;
    allocations.erase(it);
    free(reinterpret_cast<void*>(p));
    return CUDA_SUCCESS;
}

// Whether [p, p + bytes) lies inside one live allocation.
bool in_device_memory(CUdeviceptr p, size_t bytes) {
    std::lock_guard<std::mutex> guard(memory_lock);
    auto it = allocations.upper_bound(p);
    if (it == allocations.begin()) return false;
    --it;
    return p >= it->first && p + bytes <= it->first + it->second;
}

void* host(CUdeviceptr p) { return reinterpret_cast<void*>(p); }
}  // namespace

// ---------------------------------------------------------------- fibers and barriers

dim3 emu::thread_idx, emu::block_idx, emu::block_dim, emu::grid_dim;

namespace {
enum class Wait { None, Block, Warp, Done };

struct Fiber {
    fiber::Context context;
    dim3 index;
    int linear = 0;
    Wait wait = Wait::None;
    unsigned wait_generation = 0;
};

// A barrier over the `live` threads of a block or a warp: once every live thread has arrived
// (or exited), the generation advances and the threads that waited on it may go on.
struct Barrier {
    int live = 0;
    int arrived = 0;
    unsigned generation = 0;

    void release_if_complete() {
        if (arrived > 0 && arrived == live) {
            arrived = 0;
            ++generation;
        }
    }
    void arrive() {
        ++arrived;
        release_if_complete();
    }
    // A thread that exits no longer holds the barrier up.
    void leave() {
        --live;
        release_if_complete();
    }
};

struct Warp {
    Barrier barrier;
    // Values published for the shuffle of generation g live in slot g % 2.
    uint64_t published[2][32] = {};
};

struct Block {
    fiber::Context scheduler;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    std::vector<char> stacks;
    emu::Entry entry = nullptr;
    void** params = nullptr;
    Barrier barrier;
    Fiber* running = nullptr;
    std::string error;
};

std::mutex launch_lock;
Block block;

void fail(const std::string& why) {
    if (block.error.empty()) block.error = why;
}

// Returns control to the scheduler; the fiber resumes when its wait is over.
void suspend() { fiber::swap(block.running->context, block.scheduler); }

// The body of every fiber: runs the kernel for the thread, then leaves for good.
void run_thread() {
    Fiber& f = *block.running;
    block.entry(block.params);
    f.wait = Wait::Done;
    block.barrier.leave();
    block.warps[f.linear / 32].barrier.leave();
    suspend();
}

bool runnable(const Fiber& f) {
    switch (f.wait) {
        case Wait::None: return true;
        case Wait::Block: return f.wait_generation != block.barrier.generation;
        case Wait::Warp: return f.wait_generation != block.warps[f.linear / 32].barrier.generation;
        case Wait::Done: return false;
    }
    return false;
}

// Runs one block to completion; false (with block.error set) on a deadlock.
bool run_block(dim3 dim) {
    const int n = static_cast<int>(dim.x * dim.y * dim.z);
    block.fibers.assign(n, Fiber{});
    block.warps.assign((n + 31) / 32, Warp{});
    if (block.stacks.size() < n * FIBER_STACK_BYTES) block.stacks.resize(n * FIBER_STACK_BYTES);
    block.barrier = Barrier{n, 0, 0};
    for (int i = 0; i < n; ++i) {
        Fiber& f = block.fibers[i];
        f.linear = i;
        f.index = dim3{i % dim.x, (i / dim.x) % dim.y, i / (dim.x * dim.y)};
        ++block.warps[i / 32].barrier.live;
        fiber::prepare(f.context, block.stacks.data() + i * FIBER_STACK_BYTES, FIBER_STACK_BYTES, run_thread);
    }
    while (block.barrier.live > 0) {
        bool progressed = false;
        for (Fiber& f : block.fibers) {
            if (!runnable(f)) continue;
            f.wait = Wait::None;
            block.running = &f;
            emu::thread_idx = f.index;
            fiber::swap(block.scheduler, f.context);
            progressed = true;
        }
        if (!progressed) {
            fail("deadlock: threads wait at a barrier that the rest of their block or warp never reaches");
            return false;
        }
    }
    return true;
}
}  // namespace

void emu::sync_block() {
    Fiber& f = *block.running;
    f.wait = Wait::Block;
    f.wait_generation = block.barrier.generation;
    block.barrier.arrive();
    suspend();
}

int emu::lane() { return block.running->linear % 32; }

void emu::warp_exchange(unsigned mask, const void* mine, void* out, unsigned size, int src_lane) {
    Fiber& f = *block.running;
    Warp& w = block.warps[f.linear / 32];
    const int first = (f.linear / 32) * 32;
    if (mask != 0xffffffffu || first + 32 > static_cast<int>(block.fibers.size()))
        fail("a warp shuffle needs the full mask and a whole warp (blockDim a multiple of 32)");
    const unsigned slot = w.barrier.generation % 2;
    memcpy(&w.published[slot][f.linear % 32], mine, size);
    f.wait = Wait::Warp;
    f.wait_generation = w.barrier.generation;
    w.barrier.arrive();
    suspend();
    if (src_lane < 0 || src_lane >= 32) {
        fail("a warp shuffle reads a lane outside the warp");
        memcpy(out, mine, size);
        return;
    }
    memcpy(out, &w.published[slot][src_lane], size);
}

// ---------------------------------------------------------------- the driver API

namespace {
int context_token;
int stream_token;
int event_token;

struct Module {
    std::vector<std::string> entries;
};

// The `.entry` names of a PTX text.
std::vector<std::string> ptx_entries(const char* ptx) {
    std::vector<std::string> names;
    const std::string text(ptx);
    const std::string key = ".entry ";
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
        size_t start = at + key.size();
        size_t end = text.find_first_of("( \n", start);
        names.push_back(text.substr(start, end - start));
    }
    return names;
}
}  // namespace

EXPORT CUresult cuInit(unsigned) { return CUDA_SUCCESS; }

EXPORT CUresult cuDriverGetVersion(int* version) {
    if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *version = 12080;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int* count) {
    if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
    if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
    if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, static_cast<size_t>(len), "%s", "CPU emulator");
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice device) {
    if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    switch (attribute) {
        case 1: *value = MAX_THREADS_PER_BLOCK; return CUDA_SUCCESS;  // max threads per block
        case 75: *value = CC_MAJOR; return CUDA_SUCCESS;
        case 76: *value = CC_MINOR; return CUDA_SUCCESS;
        case 115: *value = 1; return CUDA_SUCCESS;  // memory pools (stream-ordered allocation)
        default: *value = 0; return CUDA_SUCCESS;
    }
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice device) {
    if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *ctx = &context_token;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return CUDA_SUCCESS; }
EXPORT CUresult cuCtxSetCurrent(CUcontext) { return CUDA_SUCCESS; }

EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) {
    if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *ctx = &context_token;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }

EXPORT CUresult cuStreamCreate(CUstream* stream, unsigned) {
    if (stream == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *stream = &stream_token;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamDestroy_v2(CUstream) { return CUDA_SUCCESS; }
EXPORT CUresult cuStreamSynchronize(CUstream) { return CUDA_SUCCESS; }
EXPORT CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return CUDA_SUCCESS; }

EXPORT CUresult cuEventCreate(CUevent* event, unsigned) {
    if (event == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *event = &event_token;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuEventDestroy_v2(CUevent) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventRecord(CUevent, CUstream) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventSynchronize(CUevent) { return CUDA_SUCCESS; }
EXPORT CUresult cuEventQuery(CUevent) { return CUDA_SUCCESS; }

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) { return allocate(p, bytes); }
EXPORT CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream) { return allocate(p, bytes); }
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { return release(p); }
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return release(p); }

EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
    if (free_bytes) *free_bytes = size_t(1) << 34;
    if (total_bytes) *total_bytes = size_t(1) << 34;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char value, size_t n, CUstream) {
    if (!in_device_memory(p, n)) return CUDA_ERROR_INVALID_VALUE;
    memset(host(p), value, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char value, size_t n) {
    return cuMemsetD8Async(p, value, n, nullptr);
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    if (!in_device_memory(dst, n) || (src == nullptr && n > 0)) return CUDA_ERROR_INVALID_VALUE;
    if (n > 0) memcpy(host(dst), src, n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream) {
    if (!in_device_memory(src, n) || (dst == nullptr && n > 0)) return CUDA_ERROR_INVALID_VALUE;
    if (n > 0) memcpy(dst, host(src), n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    if (!in_device_memory(dst, n) || !in_device_memory(src, n)) return CUDA_ERROR_INVALID_VALUE;
    if (n > 0) memmove(host(dst), host(src), n);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr);
}

EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
}

EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
    if (module == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto* m = new Module{ptx_entries(static_cast<const char*>(image))};
    if (m->entries.empty()) {
        delete m;
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *module = m;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleUnload(CUmodule module) {
    delete static_cast<Module*>(module);
    return CUDA_SUCCESS;
}

// A function handle is the registry's entry for a name that the module's PTX defines.
EXPORT CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
    if (function == nullptr || module == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const auto& entries = static_cast<Module*>(module)->entries;
    bool listed = false;
    for (const auto& e : entries) listed = listed || e == name;
    auto it = registry().find(name);
    if (!listed || it == registry().end()) return CUDA_ERROR_NOT_FOUND;
    *function = reinterpret_cast<void*>(it->second);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned shared_bytes, CUstream, void** params, void** extra) {
    if (f == nullptr || extra != nullptr || shared_bytes != 0) return CUDA_ERROR_INVALID_VALUE;
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return CUDA_ERROR_INVALID_VALUE;
    if (gy > 65535 || gz > 65535 || bz > 64) return CUDA_ERROR_INVALID_VALUE;
    if (static_cast<unsigned long long>(bx) * by * bz > MAX_THREADS_PER_BLOCK) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> guard(launch_lock);
    block.entry = reinterpret_cast<emu::Entry>(f);
    block.params = params;
    block.error.clear();
    emu::grid_dim = dim3{gx, gy, gz};
    emu::block_dim = dim3{bx, by, bz};
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                emu::block_idx = dim3{x, y, z};
                if (!run_block(emu::block_dim) || !block.error.empty()) {
                    fprintf(stderr, "CUDA emulator: launch failed in block (%u, %u, %u): %s\n", x, y, z,
                            block.error.c_str());
                    return CUDA_ERROR_LAUNCH_FAILED;
                }
            }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char** text) {
    if (text == nullptr) return CUDA_ERROR_INVALID_VALUE;
    static thread_local char buffer[64];
    snprintf(buffer, sizeof buffer, "emulated CUDA error %d", error);
    *text = buffer;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult error, const char** text) { return cuGetErrorString(error, text); }
