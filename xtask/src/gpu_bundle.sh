#!/usr/bin/env bash
# Runs prune's CUDA checks from a bundle made by `cargo xtask gpu-bundle`, on a machine with an
# NVIDIA GPU, its driver and the CUDA libraries (libnvrtc, libcublas) but no Rust toolchain:
# the CUDA tests (NVRTC, every op, the MiniLM parity), then the kernel and training-step
# benchmarks. Logs and criterion's results go to $OUT (default ./gpu-out); on the build
# machine, `cargo xtask gpu-table <that dir>` turns them into gpu-check's table.
# BENCH_FILTER (a criterion filter) limits the benchmarks; SKIP_TRAIN_STEP=1 skips BERT-base;
# CUDA_SEARCH replaces the folders searched for the CUDA libraries.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"

# cudarc opens libnvrtc.so and libcublas.so (or their .so.12/.so.11 names): point those names
# at the newest installed copies, and put their folders on the path for their own needs.
search=${CUDA_SEARCH:-$(echo /usr/local/cuda*/ /usr/lib /usr/local/lib /opt)}
links=$(mktemp -d)
paths=$links
for lib in libnvrtc libcublas; do
    # shellcheck disable=SC2086 # the folders are separate words
    found=$(find $search -name "$lib.so.[0-9]*" 2>/dev/null | sort -V | tail -1)
    if [ -z "$found" ]; then
        echo "no $lib.so.* under $search" >&2
        exit 1
    fi
    echo "$lib: $found"
    ln -sf "$found" "$links/$lib.so"
    paths="$paths:$(dirname "$found")"
done
export LD_LIBRARY_PATH="$paths${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PRUNE_MODEL_DIR="$here/model" PRUNE_FIXTURES="$here/fixtures" CRITERION_HOME="$out/criterion"

status=0
for test in nvrtc ops attention cuda_parity; do
    echo "== test $test"
    "$here/bin/$test" 2>&1 | tee "$out/test-$test.log" || status=1
done
quick=(--warm-up-time 1 --measurement-time 2)
echo "== bench cuda_ops"
"$here/bin/cuda_ops" --bench "${quick[@]}" ${BENCH_FILTER:-} 2>&1 | tee "$out/bench-cuda_ops.log" || status=1
if [ "${SKIP_TRAIN_STEP:-0}" != 1 ]; then
    echo "== bench cuda_train_step"
    "$here/bin/cuda_train_step" --bench "${quick[@]}" 2>&1 | tee "$out/bench-train_step.log" || status=1
fi
echo "== done (status $status); results in $out"
exit $status
