//! int8 linears (`--precision int8`), the scheme ONNX Runtime's dynamic
//! quantization uses:
//!
//! - weights: symmetric int8 per output channel, `w ≈ scale[o] · q`,
//!   quantized and packed once at load, in panels of 32 outputs like the
//!   f32 weights;
//! - activations: asymmetric uint8 per row, quantized on the fly, `x ≈
//!   x_scale · (q − zero)`, which keeps GELU's lopsided range;
//! - `x·wᵀ = x_scale · scale[o] · (Σ q_x q_w − zero · Σ_k q_w[o])`, the
//!   column sums precomputed; then the f32 epilogue (bias, residual,
//!   activation) of the f32 kernels.
//!
//! Two kernels compute the integer sums, exactly, so they give
//! bit-identical outputs (tested in `cpu::linear`):
//!
//! - [`Kernel::Vnni`] (`vnni.rs`), AVX-512 VNNI: `vpdpbusd` multiplies 64
//!   u8·s8 pairs and adds them into 16 i32 lanes in one instruction, 4x the
//!   multiply-adds of an f32 FMA;
//! - [`Kernel::Avx2`] (`avx2.rs`), AVX2 CPUs without it: both operands
//!   widened to i16 and `vpmaddwd`, 16 multiply-adds per instruction (an
//!   f32 FMA on AVX2 does 8), with no saturation (unlike `vpmaddubsw`,
//!   whose i16 sums of two u8·s8 products overflow).

use super::floor::{drive_linear, Epilogue, OperandError};

mod avx2;
mod packing;
mod vnni;

use packing::{quantize_rows, IntKernel, QuantizedRows};
pub use packing::{Kernel, PackedInt8};

/// `out = epilogue(x · Wᵀ + bias)` with W int8 and x quantized per row on
/// the fly, on the kernel the weights are packed for. An error on a CPU
/// without that kernel's instructions or when the operands do not match.
pub fn linear(
    x: &[f32],
    weights: &PackedInt8,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
) -> Result<Vec<f32>, OperandError> {
    // SAFETY: each kernel's quantize_row and run_block go together, and the
    // weights were packed for weights.kernel, the one passed.
    unsafe {
        match weights.kernel {
            Kernel::Vnni => run(x, weights, bias, rows, &epilogue, parallel, vnni::KERNEL),
            Kernel::Avx2 => run(x, weights, bias, rows, &epilogue, parallel, avx2::KERNEL),
        }
    }
}

/// The linear on one kernel: quantize the rows, then every block of rows
/// against every panel, through the shared driver.
///
/// # Safety
/// `quantize_row` and `run_block` must be the kernel of `weights.kernel`.
#[allow(clippy::too_many_arguments)]
unsafe fn run<T: Sync>(
    x: &[f32],
    weights: &PackedInt8,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: &Epilogue,
    parallel: bool,
    (quantize_row, run_block): IntKernel<T>,
) -> Result<Vec<f32>, OperandError> {
    let refusal = (!weights.kernel.available())
        .then(|| format!("this CPU does not run the {:?} int8 kernel", weights.kernel));
    let k = weights.in_dim;
    // SAFETY: drive_linear prepares only once the CPU runs the kernel (whose
    // quantize_row this is: # Safety) and x is (rows, k).
    let prepare = || unsafe { quantize_rows(x, rows, k, parallel && rows > 1, quantize_row) };
    let block = |quantized: &QuantizedRows<T>, row0, block_rows, panel, out| {
        // SAFETY: drive_linear calls blocks only once the CPU runs the
        // kernel, whose layout the weights have, and the operands match
        // them; its blocks lie inside them and are each handed to one task.
        unsafe {
            run_block(
                quantized,
                weights,
                bias,
                epilogue,
                out,
                (row0, block_rows),
                panel,
            )
        }
    };
    let dims = (weights.in_dim, weights.out_dim);
    // SAFETY: each block is one run_block, which stores every element of
    // its rows x panel block (dequantized, finished) and nothing else.
    unsafe {
        drive_linear(
            refusal, x, dims, bias, rows, epilogue, parallel, prepare, block,
        )
    }
}
