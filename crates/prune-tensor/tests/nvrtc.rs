//! Every kernel file compiles with NVRTC to PTX for Ampere (`compute_80`) and Hopper
//! (`compute_90`), and the PTX defines every kernel the file lists. Needs libnvrtc only, no
//! driver and no GPU: `cargo xtask test` installs NVRTC from PyPI and runs this with the
//! feature `cuda`. A missing libnvrtc is a failure, with a message saying how to get one.
//! Also checks that, without a driver, `CudaBackend::new` fails cleanly.
#![cfg(feature = "cuda")]

use prune_tensor::cuda::compile_ptx;

#[test]
fn every_kernel_file_compiles_to_ptx_for_sm80_and_sm90() {
    for file in prune_kernels::ALL {
        for arch in [(8, 0), (9, 0)] {
            let ptx = compile_ptx(file, arch)
                .unwrap_or_else(|e| panic!("{} for compute_{}{}: {e}", file.name, arch.0, arch.1));
            assert!(
                ptx.contains(&format!(".target sm_{}{}", arch.0, arch.1)),
                "{}",
                file.name
            );
            for kernel in file.kernels {
                assert!(
                    ptx.contains(&format!(".entry {kernel}(")),
                    "{}: no entry {kernel} in the PTX",
                    file.name
                );
            }
        }
    }
}

/// Without a driver `CudaBackend::new` is an error naming what is missing, never a panic;
/// with one it succeeds.
#[test]
fn a_missing_driver_is_a_clear_error_not_a_panic() {
    match prune_tensor::CudaBackend::new(0) {
        Ok(b) => println!("found {}", b.describe()),
        Err(e @ prune_tensor::TensorError::Device { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with("CudaBackend::new"), "{msg}");
            assert!(msg.contains("libcuda"), "{msg}");
        }
        Err(other) => panic!("expected a device error, got {other:?}"),
    }
}
