//! The CPU kernels of the forward pass, called with the tensors' f32
//! buffers directly so each step picks its own parallelism. One room a job:
//!
//! - [`plan`]: which kernel runs each layer type, resolved once at load;
//! - [`linear`](mod@linear): the linear layers' entry points, on the f32
//!   kernels (`avx512.rs`, `avx2.rs`, the gemm crate), `int8/` and `bf16.rs`;
//! - `attention.rs` and `softmax.rs`: attention over the fused projection;
//! - `norm.rs`: LayerNorm rows;
//! - `floor/`: the ground floor the kernels share (operand checks, packed
//!   weights, epilogues, tiles, the pool); kernels import only from it.
//!
//! Every public function here is safe for any input: it checks its
//! operands' lengths against the dimensions it is given, and the CPU
//! features of the kernel it is asked to run, and returns an
//! [`OperandError`] instead of touching memory it does not own. The
//! `unsafe` inner kernels state their preconditions in a `# Safety`
//! section, and each call site says why they hold. Not public API (benches
//! reach it through `sentiment::unstable_kernels`).

use candle_core::{CpuStorage, Layout, Storage, Tensor};

mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
mod floor;
#[cfg(target_arch = "x86_64")]
pub mod int8;
mod isa;
pub mod linear;
mod norm;
pub mod plan;
mod softmax;

pub use attention::{attention, attention_unpadded};
pub use floor::math::{erf, gelu, gelu_tanh};
pub(crate) use floor::pool::{default_threads, start as start_pool};
pub use floor::{Epilogue, OperandError, PackedWeights};
pub use linear::linear_packed;
#[cfg(target_arch = "x86_64")]
pub use linear::{linear_bf16, linear_int8};
pub use norm::layer_norm;
pub use plan::{
    bf16_against_f32, Bf16Kernel, CpuKernels, Int8Kernel, Isa, KernelChoice, KernelOptions,
    KernelPlan, VectorWidth, WidthChoice,
};

/// The index of `tensor`'s first NaN or infinity, if any: read in place on
/// the CPU, copied to f32 elsewhere.
pub fn first_non_finite(tensor: &Tensor) -> candle_core::Result<Option<usize>> {
    let first_bad = |values: &[f32]| values.iter().position(|v| !v.is_finite());
    match with_cpu_f32(tensor, first_bad) {
        Some(bad) => Ok(bad),
        None => Ok(first_bad(
            &tensor
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        )),
    }
}

/// The f32 buffer of a contiguous CPU tensor, passed to `f`; None for any
/// other tensor (callers then take candle's generic ops).
pub fn with_cpu_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout): (_, &Layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Some(f(&data[start..end])),
        _ => None,
    }
}
