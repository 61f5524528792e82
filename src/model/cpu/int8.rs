//! int8 linears on AVX-512 VNNI (`--quantize int8`), the scheme ONNX
//! Runtime's dynamic quantization uses:
//!
//! - weights: symmetric int8 per output channel, `w ≈ scale[o] · q`,
//!   packed once at load into panels of 32 outputs x 4 inputs per 128 bytes,
//!   the operand layout of `vpdpbusd`;
//! - activations: asymmetric uint8 per row, quantized on the fly, `x ≈
//!   x_scale · (q − zero)`, which keeps GELU's lopsided range;
//! - `vpdpbusd` multiplies 64 u8·s8 pairs and adds them into 16 i32 lanes
//!   in one instruction, 4x the multiply-adds of an f32 FMA;
//! - `x·wᵀ = x_scale · scale[o] · (Σ q_x q_w − zero · Σ_k q_w[o])`, the
//!   column sums precomputed; then the f32 epilogue (bias, residual,
//!   activation) of the f32 kernel.

use std::arch::x86_64::*;

use super::avx512::{finish, masks, Output};
use super::{Epilogue, OperandError, PackedWeights, SharedOut, PANEL};

/// Rows per parallel task.
const MC: usize = 96;
/// Rows per register tile (see `MAX_TILE_ROWS`): 14, as in f32, so a
/// 14-token pass reads each panel once; `cargo bench --bench forward --
/// int8`, 2 alternating pairs against 12: bundled 1x16 1.02 -> 0.92 ms,
/// distilbert-base 1x16 3.3-5.4 -> 2.3-2.8 ms, 32x32 alike.
const TILE_ROWS: usize = 14;
/// Inputs per `vpdpbusd` lane.
const QUAD: usize = 4;

/// Whether this CPU has the instructions the kernel uses.
pub fn available() -> bool {
    super::avx512::available()
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// A weight matrix quantized to int8 per output channel and packed for
/// [`linear`].
#[derive(Debug)]
pub struct PackedInt8 {
    /// Panels of PANEL outputs; within one, for each group of 4 inputs,
    /// 4 consecutive bytes per output.
    data: Vec<i8>,
    /// Per output: the dequantization scale and the sum of its int8 weights.
    scales: Vec<f32>,
    column_sums: Vec<i32>,
    in_dim: usize,
    out_dim: usize,
}

impl PackedInt8 {
    /// Quantizes f32 weights packed for the f32 kernel. Both layouts are
    /// panel-major with the same panel width, so each panel converts on
    /// its own, and panels go in parallel: int8 start-up is mostly this.
    pub fn from_f32(weights: &PackedWeights) -> Self {
        let (in_dim, out_dim) = (weights.in_dim, weights.out_dim);
        let quads = in_dim.div_ceil(QUAD);
        let panels = out_dim.div_ceil(PANEL);
        let panel_bytes = PANEL * quads * QUAD;
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
                let quad = &mut block[(k / QUAD) * PANEL * QUAD..][..PANEL * QUAD];
                for (col, (&w, &inverse)) in row.iter().zip(&inverse).enumerate() {
                    // Round half away from zero, as f32::round, without its
                    // libm call (a third of int8 start-up); |w·inverse| <= 127.
                    let scaled = w * inverse;
                    let q = (scaled + 0.5f32.copysign(scaled)) as i8;
                    quad[col * QUAD + k % QUAD] = q;
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
        }
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// Activations quantized to uint8 per row, rows padded to whole quads.
struct QuantizedRows {
    data: Vec<u8>,
    stride: usize,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// Per-row asymmetric quantization: the row's [min, max] (widened to hold
/// 0) maps onto 0..=255. Rows are spread over the pool when there are many.
///
/// # Safety
/// The CPU must support avx512f, and `x` must hold `rows * in_dim` values.
unsafe fn quantize_rows(x: &[f32], rows: usize, in_dim: usize, parallel: bool) -> QuantizedRows {
    let stride = in_dim.div_ceil(QUAD) * QUAD;
    // Uninitialised but for the quad padding, zeroed here; quantize_row
    // writes the rest (see `set_len`).
    let mut data = Vec::<u8>::with_capacity(rows * stride);
    let mut params = vec![(0f32, 0i32); rows];
    let (data_out, params_out) = (SharedOut(data.as_mut_ptr()), SharedOut(params.as_mut_ptr()));
    let quantize = |r: usize| {
        // SAFETY: avx512f is present and x holds rows*in_dim values (this
        // function's contract); row r's bytes (inside the rows*stride
        // capacity) and parameters are written by this call alone.
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
    // SAFETY: every row's bytes, padding included, were written above
    // (rows * stride is the capacity).
    unsafe { data.set_len(rows * stride) };
    QuantizedRows {
        data,
        stride,
        scales: params.iter().map(|p| p.0).collect(),
        zeros: params.iter().map(|p| p.1).collect(),
    }
}

/// Quantizes one row into `out`; returns its (scale, zero point).
///
/// # Safety
/// The CPU must support avx512f, and `out` must be valid for `row.len()`
/// writes.
#[target_feature(enable = "avx512f")]
unsafe fn quantize_row(row: &[f32], out: *mut u8) -> (f32, i32) {
    // SAFETY: the caller upholds # Safety: loads are masked to the row, stores
    // to the row's length.
    unsafe {
        let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for values in row.chunks(16) {
            let mask = ((1u32 << values.len()) - 1) as __mmask16;
            let v = _mm512_maskz_loadu_ps(mask, values.as_ptr());
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
        let (min, max) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero = (-min / scale).round().clamp(0.0, 255.0);
        let (inv_scale, zero_lanes) = (_mm512_set1_ps(1.0 / scale), _mm512_set1_ps(zero));
        for (chunk, values) in row.chunks(16).enumerate() {
            let mask = ((1u32 << values.len()) - 1) as __mmask16;
            let v = _mm512_maskz_loadu_ps(mask, values.as_ptr());
            // Round to nearest even, as ORT; clamped before narrowing to bytes.
            let q = _mm512_cvtps_epi32(_mm512_fmadd_ps(v, inv_scale, zero_lanes));
            let q = _mm512_min_epi32(
                _mm512_max_epi32(q, _mm512_setzero_si512()),
                _mm512_set1_epi32(255),
            );
            _mm512_mask_cvtepi32_storeu_epi8(out.add(16 * chunk) as *mut i8, mask, q);
        }
        (scale, zero as i32)
    }
}

/// `out = epilogue(x · Wᵀ + bias)` with W int8 and x quantized per row
/// here. An error on a CPU without AVX-512 VNNI (see [`available`]) or when
/// the operands do not match.
pub fn linear(
    x: &[f32],
    weights: &PackedInt8,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
) -> Result<Vec<f32>, OperandError> {
    let (k, n) = (weights.in_dim, weights.out_dim);
    if !available() {
        return Err(OperandError("this CPU has no AVX-512 VNNI".into()));
    }
    super::check_linear_operands(x, (k, n), bias, rows, &epilogue)?;
    // SAFETY: avx512f is present and x is (rows, k) (both checked above).
    let quantized = unsafe { quantize_rows(x, rows, k, parallel && rows > 1) };
    let block = |row0, block_rows, panel, out| {
        // SAFETY: the CPU features are present and the operands match the
        // weights (checked above); the block's rows and the panel lie inside
        // them, and no other task writes this block.
        unsafe {
            run_tile(
                &quantized, weights, bias, &epilogue, out, row0, block_rows, panel,
            )
        }
    };
    // SAFETY: each block is one run_tile, which stores every element of its
    // rows x panel block (dequantized) and nothing else.
    Ok(unsafe { super::blocked_output(rows, n, MC, parallel, block) })
}

/// One task of [`linear`]: a block of up to MC rows against one panel,
/// a register tile at a time, each tile dequantized once its sums are in.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni; `x` must hold
/// the quantized rows of a (rows, in) input matching `weights`, `bias` and
/// the residual must match the output, `row0 + rows` and `panel` must lie
/// inside them, and no other thread may write this block of `out`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_tile(
    x: &QuantizedRows,
    weights: &PackedInt8,
    bias: Option<&[f32]>,
    epilogue_of: &Epilogue,
    out: SharedOut,
    row0: usize,
    rows: usize,
    panel: usize,
) {
    // SAFETY: the caller upholds # Safety: every tile below lies inside the
    // block, whose rows and panel are inside x, the weights and `out`.
    unsafe {
        let n = weights.out_dim;
        let quads = x.stride / QUAD;
        let col0 = panel * PANEL;
        let cols = PANEL.min(n - col0);
        let mask = masks(cols);
        let panel_data = weights.data.as_ptr().add(panel * PANEL * quads * QUAD);
        for (row, tile_rows) in super::register_tiles(row0, rows, TILE_ROWS) {
            let output = Output::at(out, n, row, col0, bias, epilogue_of);
            let xs = x.data.as_ptr().add(row * x.stride);
            let at = (
                xs,
                x.stride,
                panel_data,
                quads,
                output.out as *mut i32,
                n,
                mask,
            );
            super::by_tile_rows!(tile_rows, microkernel(at));
            dequantize(&output, x, weights, row, col0, tile_rows, mask);
        }
    }
}

type TileArgs = (
    *const u8,
    usize,
    *const i8,
    usize,
    *mut i32,
    usize,
    [__mmask16; 2],
);

/// R rows x 32 outputs of Σ q_x·q_w, stored as i32 in the output's place.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni. `x` must be
/// valid for R rows of `quads * 4` bytes `x_stride` apart, `panel` for
/// `quads` groups of 128 bytes, and `out` for an R x 32 (masked) tile of
/// i32 `out_stride` apart that no other thread writes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn microkernel<const R: usize>(
    (x, x_stride, panel, quads, out, out_stride, mask): TileArgs,
) {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        let mut x_rows = [x; R];
        for (i, x_row) in x_rows.iter_mut().enumerate() {
            *x_row = x.add(i * x_stride);
        }
        let mut w = panel;
        for q in 0..quads {
            super::avx512::prefetch_panel(w);
            let w0 = _mm512_loadu_si512(w as *const __m512i);
            let w1 = _mm512_loadu_si512(w.add(64) as *const __m512i);
            w = w.add(PANEL * QUAD);
            // Index loops, as in the f32 kernel, so `acc` stays in registers.
            #[allow(clippy::needless_range_loop)]
            for i in 0..R {
                let four = (x_rows[i].add(q * QUAD) as *const i32).read_unaligned();
                let xv = _mm512_set1_epi32(four);
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], xv, w0);
                acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], xv, w1);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (half, lane) in row.iter().enumerate() {
                let at = out.add(i * out_stride + 16 * half);
                _mm512_mask_storeu_epi32(at, mask[half], *lane);
            }
        }
    }
}

/// The i32 sums of a tile back to f32, through the f32 epilogue, in place.
///
/// # Safety
/// The CPU must support avx512f; the `rows` x (masked) tile at `output`,
/// rows `row0..row0 + rows` of `x` and columns `col0..` of the weights' scales
/// and sums (under the masks) must be in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn dequantize(
    output: &Output,
    x: &QuantizedRows,
    weights: &PackedInt8,
    row0: usize,
    col0: usize,
    rows: usize,
    mask: [__mmask16; 2],
) {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        for i in 0..rows {
            let (x_scale, zero) = (x.scales[row0 + i], x.zeros[row0 + i]);
            for (half, &mask) in mask.iter().enumerate() {
                let col = col0 + 16 * half;
                let at = output.out.add(i * output.stride + 16 * half);
                let sums = _mm512_maskz_loadu_epi32(mask, at as *const i32);
                let column_sums =
                    _mm512_maskz_loadu_epi32(mask, weights.column_sums.as_ptr().add(col));
                let centred = _mm512_sub_epi32(
                    sums,
                    _mm512_mullo_epi32(column_sums, _mm512_set1_epi32(zero)),
                );
                let scales = _mm512_maskz_loadu_ps(mask, weights.scales.as_ptr().add(col));
                let scale = _mm512_mul_ps(scales, _mm512_set1_ps(x_scale));
                let value = _mm512_mul_ps(_mm512_cvtepi32_ps(centred), scale);
                _mm512_mask_storeu_ps(at, mask, finish(output, i, half, mask, value));
            }
        }
    }
}
