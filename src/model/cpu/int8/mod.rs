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
//! bit-identical outputs (tested in `cpu::tests`):
//!
//! - [`Kernel::Vnni`] (`vnni.rs`), AVX-512 VNNI: `vpdpbusd` multiplies 64
//!   u8·s8 pairs and adds them into 16 i32 lanes in one instruction, 4x the
//!   multiply-adds of an f32 FMA;
//! - [`Kernel::Avx2`] (`avx2.rs`), AVX2 CPUs without it: both operands
//!   widened to i16 and `vpmaddwd`, 16 multiply-adds per instruction (an
//!   f32 FMA on AVX2 does 8), with no saturation (unlike `vpmaddubsw`,
//!   whose i16 sums of two u8·s8 products overflow).

use super::{Epilogue, OperandError, PackedWeights, SharedOut, PANEL};

mod avx2;
mod vnni;

/// Inputs per group of the packed weights and of a quantized row, which is
/// padded with zeros to whole groups: `vpdpbusd` takes 4 inputs per lane.
const QUAD: usize = 4;

/// Which instructions compute the integer sums; the packed weights are laid
/// out for one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI: 4 inputs per i32 lane.
    Vnni,
    /// AVX2 and FMA: 2 inputs per i32 lane.
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs, if any: VNNI unless
    /// `SENTIMENT_KERNELS=portable` rules AVX-512 out, then AVX2 (which
    /// `portable` keeps, as it stands for a CPU without AVX-512).
    pub fn best() -> Option<Self> {
        [Self::Vnni, Self::Avx2].into_iter().find(|k| k.available())
    }

    /// Whether this CPU runs the kernel (std caches the detection).
    pub fn available(self) -> bool {
        match self {
            Self::Vnni => vnni::available(),
            Self::Avx2 => avx2::available(),
        }
    }

    /// Where the weight of input `k` for output `col` goes in a panel's
    /// bytes, the inputs padded to `padded_in` (whole quads). VNNI: per
    /// quad of inputs, 4 bytes per output (a lane of `vpdpbusd`). AVX2: the
    /// panel's two 16-output halves one after the other (a register tile
    /// reads one half, contiguously), and within a half, per pair of
    /// inputs, 2 bytes per output (a lane of `vpmaddwd` once widened).
    fn packed_offset(self, k: usize, col: usize, padded_in: usize) -> usize {
        match self {
            Self::Vnni => (k / QUAD) * PANEL * QUAD + col * QUAD + k % QUAD,
            Self::Avx2 => {
                let half = PANEL / 2;
                (col / half) * padded_in * half + (k / 2) * half * 2 + (col % half) * 2 + k % 2
            }
        }
    }
}

/// A weight matrix quantized to int8 per output channel and packed for
/// one [`Kernel`].
#[derive(Debug)]
pub struct PackedInt8 {
    /// Panels of PANEL outputs over the inputs padded to whole quads, each
    /// laid out for the kernel (see `Kernel::packed_offset`).
    data: Vec<i8>,
    /// Per output: the dequantization scale and the sum of its int8 weights.
    scales: Vec<f32>,
    column_sums: Vec<i32>,
    in_dim: usize,
    out_dim: usize,
    kernel: Kernel,
}

impl PackedInt8 {
    /// Quantizes f32 weights packed for the f32 kernel, laid out for
    /// `kernel`. Both layouts are panel-major with the same panel width, so
    /// each panel converts on its own, and panels go in parallel: int8
    /// start-up is mostly this.
    pub fn from_f32(weights: &PackedWeights, kernel: Kernel) -> Self {
        let (in_dim, out_dim) = (weights.in_dim, weights.out_dim);
        let padded_in = in_dim.div_ceil(QUAD) * QUAD;
        let panels = out_dim.div_ceil(PANEL);
        let panel_bytes = PANEL * padded_in;
        let mut data = vec![0i8; panels * panel_bytes];
        let mut scales = vec![1f32; panels * PANEL];
        let mut column_sums = vec![0i32; panels * PANEL];
        let (data_out, scales_out, sums_out) = (
            SharedOut(data.as_mut_ptr()),
            SharedOut(scales.as_mut_ptr()),
            SharedOut(column_sums.as_mut_ptr()),
        );
        super::parallel_for(panels, |panel| {
            // (in, PANEL) f32, zero-padded past out_dim.
            let source = &weights.data[panel * PANEL * in_dim..(panel + 1) * PANEL * in_dim];
            // SAFETY: the three buffers hold `panels` blocks of panel_bytes,
            // PANEL and PANEL values; each panel index makes slices of its
            // own block and columns only, which no other task touches.
            let (block, scales, sums) = unsafe {
                (
                    std::slice::from_raw_parts_mut(
                        data_out.ptr().add(panel * panel_bytes),
                        panel_bytes,
                    ),
                    std::slice::from_raw_parts_mut(scales_out.ptr().add(panel * PANEL), PANEL),
                    std::slice::from_raw_parts_mut(sums_out.ptr().add(panel * PANEL), PANEL),
                )
            };
            for (col, scale) in scales.iter_mut().enumerate() {
                let max = (0..in_dim).fold(0f32, |m, k| m.max(source[k * PANEL + col].abs()));
                if max > 0.0 {
                    *scale = max / 127.0;
                }
            }
            let inverse: Vec<f32> = scales.iter().map(|s| 1.0 / s).collect();
            for (k, row) in source.chunks_exact(PANEL).enumerate() {
                for (col, (&w, &inverse)) in row.iter().zip(&inverse).enumerate() {
                    // Round half away from zero, as f32::round, without its
                    // libm call (a third of int8 start-up); |w·inverse| <= 127.
                    let scaled = w * inverse;
                    let q = (scaled + 0.5f32.copysign(scaled)) as i8;
                    block[kernel.packed_offset(k, col, padded_in)] = q;
                    sums[col] += q as i32;
                }
            }
        });
        scales.truncate(out_dim);
        column_sums.truncate(out_dim);
        Self {
            data,
            scales,
            column_sums,
            in_dim,
            out_dim,
            kernel,
        }
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The kernel these weights are laid out for.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

/// One row's quantization from its range: (scale, zero point), the range
/// widened to hold 0 mapping onto 0..=255. Both kernels take it from here,
/// so they quantize every value alike.
fn row_parameters(min: f32, max: f32) -> (f32, f32) {
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    (scale, (-min / scale).round().clamp(0.0, 255.0))
}

/// Activations quantized per row, each padded with zeros to whole quads:
/// bytes for VNNI, 16-bit for AVX2 (whose `vpmaddwd` multiplies i16).
struct QuantizedRows<T> {
    data: Vec<T>,
    stride: usize,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// Per-row asymmetric quantization by `quantize_row` (one kernel's, which
/// writes a row's values and returns its (scale, zero point)). Rows are
/// spread over the pool when `parallel`.
///
/// # Safety
/// The CPU must support `quantize_row`'s target features, and `x` must hold
/// `rows * in_dim` values.
unsafe fn quantize_rows<T>(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    parallel: bool,
    quantize_row: unsafe fn(&[f32], *mut T) -> (f32, i32),
) -> QuantizedRows<T> {
    let stride = in_dim.div_ceil(QUAD) * QUAD;
    // Uninitialised but for the quad padding, zeroed here; quantize_row
    // writes the rest (see `set_len`).
    let mut data = Vec::<T>::with_capacity(rows * stride);
    let mut params = vec![(0f32, 0i32); rows];
    let (data_out, params_out) = (SharedOut(data.as_mut_ptr()), SharedOut(params.as_mut_ptr()));
    let quantize = |r: usize| {
        // SAFETY: the CPU runs quantize_row and x holds rows*in_dim values
        // (this function's contract); row r's values (inside the
        // rows*stride capacity) and parameters are written by this call alone.
        unsafe {
            let out = data_out.ptr().add(r * stride);
            out.add(in_dim).write_bytes(0, stride - in_dim);
            *params_out.ptr().add(r) = quantize_row(&x[r * in_dim..(r + 1) * in_dim], out);
        }
    };
    if parallel {
        super::parallel_for(rows, quantize);
    } else {
        (0..rows).for_each(quantize);
    }
    // SAFETY: every row's values, padding included, were written above
    // (rows * stride is the capacity).
    unsafe { data.set_len(rows * stride) };
    QuantizedRows {
        data,
        stride,
        scales: params.iter().map(|p| p.0).collect(),
        zeros: params.iter().map(|p| p.1).collect(),
    }
}

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
    if !weights.kernel.available() {
        return Err(OperandError(format!(
            "this CPU does not run the {:?} int8 kernel",
            weights.kernel
        )));
    }
    let (k, n) = (weights.in_dim, weights.out_dim);
    super::check_linear_operands(x, (k, n), bias, rows, &epilogue)?;
    let operands = (x, weights, bias, rows, &epilogue, parallel);
    // SAFETY: `run`'s contract: the CPU runs the kernel the weights are
    // packed for (checked above), whose quantize_row and run_block are
    // passed, and the operands match the weights' dimensions (checked above).
    Ok(unsafe {
        match weights.kernel {
            Kernel::Vnni => run(operands, vnni::quantize_row, vnni::run_block),
            Kernel::Avx2 => run(operands, avx2::quantize_row, avx2::run_block),
        }
    })
}

/// Rows per parallel task of either kernel.
const MC: usize = 96;

/// A kernel's task: the block of rows (first, count) against one panel of
/// PANEL outputs, from the quantized rows to the finished f32 outputs.
///
/// # Safety
/// The CPU must support the kernel; `x` must hold the quantized rows of a
/// (rows, in) input matching `weights`, laid out for this kernel; `bias`
/// and the epilogue's residual must match the output; the block's rows and
/// panel must lie inside them; and no other thread may write the block.
type BlockFn<T> = unsafe fn(
    &QuantizedRows<T>,
    &PackedInt8,
    Option<&[f32]>,
    &Epilogue,
    SharedOut,
    (usize, usize),
    usize,
);

/// The linear on one kernel: quantize the rows, then every block of MC
/// rows against every panel, spread over the pool when `parallel`.
///
/// # Safety
/// The CPU must support `quantize_row` and `run_block` (one kernel's), the
/// weights must be laid out for that kernel, and `x`, `bias` and the
/// epilogue must match the weights' dimensions (`check_linear_operands`).
unsafe fn run<T: Sync>(
    (x, weights, bias, rows, epilogue, parallel): (
        &[f32],
        &PackedInt8,
        Option<&[f32]>,
        usize,
        &Epilogue,
        bool,
    ),
    quantize_row: unsafe fn(&[f32], *mut T) -> (f32, i32),
    run_block: BlockFn<T>,
) -> Vec<f32> {
    let (k, n) = (weights.in_dim, weights.out_dim);
    // SAFETY: the CPU runs quantize_row and x is (rows, k) (# Safety).
    let quantized = unsafe { quantize_rows(x, rows, k, parallel && rows > 1, quantize_row) };
    let block = |row0, block_rows, panel, out| {
        // SAFETY: the CPU runs the kernel, whose layout the weights have,
        // and the operands match them (# Safety); blocked_output's blocks
        // lie inside them and are each handed to one task.
        unsafe {
            run_block(
                &quantized,
                weights,
                bias,
                epilogue,
                out,
                (row0, block_rows),
                panel,
            )
        }
    };
    // SAFETY: each block is one run_block, which stores every element of
    // its rows x panel block (dequantized, finished) and nothing else.
    unsafe { super::blocked_output(rows, n, MC, parallel, block) }
}
