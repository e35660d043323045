// index.cu: row gathers (embeddings), their scatter-add backward, and axis permutations.
// Contiguous f32; outputs written with `=` except the scatter-add (`+=` into a zeroed table).

// y[i, :] = table[ids[i], :]; y [n_ids, c]. Grid-stride over n_ids · c elements.
extern "C" __global__ void gather_rows_fwd_f32(const float* table, const int* ids, float* y, int n_ids, int c) {
    FOR_EACH(i, n_ids * c) y[i] = table[(size_t)ids[i / c] * c + i % c];
}

// dt[rows[u], :] += Σ_{p in positions[starts[u]..starts[u+1]]} dy[p, :]. The host groups the
// positions of each distinct id (CSR), so every output row has one owner and the additions run
// in position order: no atomics, reproducible. Launch: one block per distinct id, threads over c.
extern "C" __global__ void gather_rows_bwd_f32(const float* dy, const int* rows, const int* starts,
                                               const int* positions, float* dt, int c) {
    const int u = blockIdx.x;
    float* out = dt + (size_t)rows[u] * c;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        float acc = 0.f;
        for (int q = starts[u]; q < starts[u + 1]; ++q) acc += dy[(size_t)positions[q] * c + j];
        out[j] += acc;
    }
}

// y = x with axes permuted. meta = [out_dims[0..rank], in_strides[perm[0..rank]]]: output
// coordinate d steps the input by in_strides[perm[d]]. Grid-stride over the n outputs.
extern "C" __global__ void permute_f32(const float* x, float* y, const int* meta, int rank, int n) {
    FOR_EACH(i, n) {
        int rest = i;
        size_t offset = 0;
        for (int d = rank - 1; d >= 0; --d) {
            offset += (size_t)(rest % meta[d]) * meta[rank + d];
            rest /= meta[d];
        }
        y[i] = x[offset];
    }
}
