//! The path a CPU without AVX-512 runs (`SENTIMENT_KERNELS=portable`): our
//! 256-bit AVX2 linears where the CPU has AVX2 and FMA (the gemm crate's
//! elsewhere), the gemm crate's attention products, and the portable
//! LayerNorm and softmax, against HF's goldens within 1e-4, alone and in
//! padded batches, for every architecture. CI's machines have AVX-512, so
//! without this file that path would never meet a golden.

mod common;

use candle_core::Device;
use common::*;
use sentiment::unstable_kernels::{kernel_choice, linear_kernel, KernelChoice, LinearKernel};

#[test]
fn the_portable_path_matches_hf() {
    // Read once per process: set before any model runs.
    std::env::set_var("SENTIMENT_KERNELS", "portable");
    assert_eq!(kernel_choice(), KernelChoice::Portable);
    #[cfg(target_arch = "x86_64")]
    let expected = if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        LinearKernel::Avx2
    } else {
        LinearKernel::Gemm
    };
    #[cfg(not(target_arch = "x86_64"))]
    let expected = LinearKernel::Gemm;
    assert_eq!(linear_kernel(), expected);
    let worst = assert_parity(&Device::Cpu);
    eprintln!("portable kernels ({expected:?}): max |Δlogit| {worst:e}");
}
