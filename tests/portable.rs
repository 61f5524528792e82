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
use sentiment::{KernelChoice, KernelOptions, KernelPlan, Precision};

fn portable() -> KernelOptions {
    KernelOptions {
        kernels: KernelChoice::Portable,
        ..KernelOptions::default()
    }
}

#[test]
fn the_portable_plan_rules_out_avx512() {
    let cpu = KernelPlan::resolve(&portable(), true).cpu.unwrap();
    #[cfg(target_arch = "x86_64")]
    let expected = match std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        true => sentiment::unstable_kernels::Isa::Avx2,
        false => sentiment::unstable_kernels::Isa::Portable,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let expected = sentiment::unstable_kernels::Isa::Portable;
    assert_eq!(cpu.linear.kernel, expected);
    assert_eq!(cpu.vector, expected);
    assert!(cpu.bf16.is_none());
}

#[test]
fn the_portable_path_matches_hf() {
    let worst = assert_parity_with(&Device::Cpu, KernelChoice::Portable);
    eprintln!("portable kernels: max |Δlogit| {worst:e}");
}

/// int8 on a CPU without AVX-512 VNNI: the AVX2 int8 kernel (its linears
/// are bit-identical to VNNI's, `cpu::linear`'s tests), within half a
/// point of f32 on SST-2 dev, both measured here.
#[test]
#[cfg_attr(
    not(host_avx2),
    ignore = "this CPU lacks AVX2 and FMA: no int8 kernel of ours"
)]
fn portable_int8_runs_the_avx2_kernel_at_int8_accuracy() {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = KernelPlan::resolve(&portable(), true).cpu.unwrap();
        assert_eq!(
            cpu.int8,
            Some(sentiment::unstable_kernels::Int8Kernel::Avx2)
        );
    }
    let f32 = bundled_accuracy(Precision::F32, &portable());
    let int8 = bundled_accuracy(Precision::Int8, &portable());
    eprintln!("portable: SST-2 dev accuracy f32 {f32:.4}, int8 {int8:.4}");
    assert!(int8 >= f32 - MAX_NARROW_ACCURACY_LOSS, "{int8} vs {f32}");
}
