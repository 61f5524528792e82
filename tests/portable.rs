//! The path a CPU without AVX-512 runs (`SENTIMENT_KERNELS=portable`): our
//! 256-bit AVX2 linears, attention products and softmax where the CPU has
//! AVX2 and FMA (the gemm crate's and the scalar softmax elsewhere), and
//! the portable LayerNorm, against HF's goldens within 1e-4, alone and in
//! padded batches, for every architecture; and int8 on our AVX2 int8
//! kernel, at int8's accuracy. CI's machines have AVX-512, so without this
//! file that path would never meet a golden.

mod common;

use candle_core::Device;
use common::*;
use sentiment::unstable_kernels::{kernel_choice, linear_kernel, KernelChoice, LinearKernel};

/// Every test here starts with this: the choice is read once per process,
/// so it is set before any model runs, whichever test comes first.
fn use_portable_kernels() {
    std::env::set_var("SENTIMENT_KERNELS", "portable");
    assert_eq!(kernel_choice(), KernelChoice::Portable);
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_and_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[test]
fn the_portable_path_matches_hf() {
    use_portable_kernels();
    #[cfg(target_arch = "x86_64")]
    let expected = if has_avx2_and_fma() {
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

/// int8 on a CPU without AVX-512 VNNI: the AVX2 int8 kernel where there is
/// AVX2 (its linears are bit-identical to VNNI's, `cpu::tests`), keeping
/// the bundled model's SST-2 dev accuracy within half a point of f32, as
/// `tests/bundled.rs` checks of VNNI.
#[test]
fn portable_int8_runs_the_avx2_kernel_at_int8_accuracy() {
    use_portable_kernels();
    #[cfg(target_arch = "x86_64")]
    {
        use sentiment::unstable_kernels::int8::Kernel;
        let expected = has_avx2_and_fma().then_some(Kernel::Avx2);
        assert_eq!(Kernel::best(), expected);
    }
    let accuracy = bundled_int8_accuracy();
    eprintln!("portable int8: SST-2 dev accuracy {accuracy:.4}");
    assert!(accuracy >= MIN_INT8_DEV_ACCURACY, "{accuracy}");
}
