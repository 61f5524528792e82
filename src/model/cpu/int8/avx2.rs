//! The int8 kernel for x86 CPUs with AVX2 and FMA but without AVX-512 VNNI
//! (see the scheme in `mod.rs`), where int8 otherwise took candle's Q8_0,
//! whose AVX2 tier ran at a quarter to a sixth of our f32's speed (docs/benchmarks.md).
//!
//! AVX2's byte multiply, `vpmaddubsw`, adds two u8·s8 products into an i16
//! that saturates (2 · 255 · 127 > 32767), so instead both operands are
//! 16-bit: activations are quantized straight to u16 (0..=255) and weights
//! widened from int8 with `vpmovsxbw` as they are loaded, then `vpmaddwd`
//! multiplies 16 pairs and adds each pair into an i32 lane: 16
//! multiply-adds per instruction, exact, so the sums equal VNNI's. Register
//! tiles are 6 rows by 16 outputs: 12 ymm accumulators, two widened weight
//! vectors, the broadcast pair and the product (all 16 registers).

use std::arch::x86_64::*;

use super::packing::{row_parameters, IntKernel, PackedInt8, QuantizedRows, QUAD};
use crate::model::cpu::floor::ymm::{column_masks, finish_row};
use crate::model::cpu::floor::zmm::prefetch_panel;
use crate::model::cpu::floor::{by_tile_rows, register_tiles, Epilogue, SharedOut, PANEL};

/// Rows per register tile (see the module's register count).
const TILE_ROWS: usize = 6;
/// Outputs per register tile: two 8-lane vectors, half a panel.
const HALF: usize = 16;
/// Inputs per i32 lane of `vpmaddwd`.
const PAIR: usize = 2;

const _: () = assert!(PANEL == 2 * HALF, "a panel is two register tiles wide");
const _: () = assert!(
    QUAD.is_multiple_of(2 * PAIR),
    "rows hold whole pairs of pairs"
);

/// Quantizes one row into `out` as 16-bit values; returns its (scale, zero
/// point). Every step is the VNNI kernel's at half the width (same range,
/// parameters, FMA and round-to-even conversion), so the values are the
/// same.
///
/// # Safety
/// The CPU must support avx2 and fma, and `out` must be valid for
/// `row.len()` writes.
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row(row: &[f32], out: *mut u16) -> (f32, i32) {
    // SAFETY: the caller upholds # Safety: loads are masked to the row,
    // stores go to the row's length.
    unsafe {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let load = |values: &[f32]| {
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(values.len() as i32), lanes);
            _mm256_maskload_ps(values.as_ptr(), mask)
        };
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for values in row.chunks(8) {
            let v = load(values);
            lo = _mm256_min_ps(lo, v);
            hi = _mm256_max_ps(hi, v);
        }
        let (mut low, mut high) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(low.as_mut_ptr(), lo);
        _mm256_storeu_ps(high.as_mut_ptr(), hi);
        let min = low.iter().fold(0f32, |m, &v| m.min(v));
        let max = high.iter().fold(0f32, |m, &v| m.max(v));
        let (scale, zero) = row_parameters(min, max);
        let (inv_scale, zero_lanes) = (_mm256_set1_ps(1.0 / scale), _mm256_set1_ps(zero));
        for (chunk, values) in row.chunks(8).enumerate() {
            let q = _mm256_cvtps_epi32(_mm256_fmadd_ps(load(values), inv_scale, zero_lanes));
            let q = _mm256_min_epi32(
                _mm256_max_epi32(q, _mm256_setzero_si256()),
                _mm256_set1_epi32(255),
            );
            let mut quantized = [0i32; 8];
            _mm256_storeu_si256(quantized.as_mut_ptr() as *mut __m256i, q);
            for (i, &q) in quantized[..values.len()].iter().enumerate() {
                out.add(8 * chunk + i).write(q as u16);
            }
        }
        (scale, zero as i32)
    }
}

/// One task of the linear: rows `row0..row0 + rows` against one panel, a
/// register tile at a time, each tile dequantized once its sums are in.
///
/// # Safety
/// As `BlockFn`'s, on a CPU with avx2 and fma.
#[target_feature(enable = "avx2,fma")]
unsafe fn run_block(
    x: &QuantizedRows<u16>,
    weights: &PackedInt8,
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
    out: SharedOut,
    (row0, rows): (usize, usize),
    panel: usize,
) {
    let n = weights.out_dim;
    let padded_in = x.stride;
    let col0 = panel * PANEL;
    for (row, tile_rows) in register_tiles(row0, rows, TILE_ROWS) {
        for half in 0..(n - col0).min(PANEL).div_ceil(HALF) {
            let col = col0 + half * HALF;
            // SAFETY: the caller upholds # Safety: the tile's rows hold
            // padded_in values each, the half panel padded_in / 2 pairs of
            // 16 outputs (laid out by `Kernel::packed_offset`), and the
            // output tile (row, col) with `cols` columns is in this block.
            unsafe {
                let tile = Tile {
                    x: x.data.as_ptr().add(row * padded_in),
                    x_stride: padded_in,
                    weights: weights
                        .data
                        .as_ptr()
                        .add((panel * PANEL + half * HALF) * padded_in),
                    pairs: padded_in / PAIR,
                    out: out.ptr().add(row * n + col),
                    out_stride: n,
                    cols: HALF.min(n - col),
                };
                by_tile_rows!(tile_rows, microkernel(&tile));
                dequantize(&tile, x, weights, (row, col, tile_rows), bias, epilogue);
            }
        }
    }
}

/// Pointers to the top-left corner of one register tile.
struct Tile {
    x: *const u16,
    x_stride: usize,
    /// The half panel: per pair of inputs, 2 bytes for each of 16 outputs.
    weights: *const i8,
    pairs: usize,
    out: *mut f32,
    out_stride: usize,
    /// Output columns of the tile that exist (1 to 16); the panel is
    /// zero-padded, so the weights are read in full either way.
    cols: usize,
}

/// R rows x 16 outputs of Σ q_x·q_w, stored as i32 in the output's place.
///
/// # Safety
/// The CPU must support avx2. `at.x` must be valid for R rows of
/// `2 * at.pairs` values `at.x_stride` apart, `at.weights` for `at.pairs`
/// groups of 32 bytes, and `at.out` for an R x `at.cols` tile
/// `at.out_stride` apart that no other thread writes.
#[target_feature(enable = "avx2")]
unsafe fn microkernel<const R: usize>(at: &Tile) {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        let mut x_rows = [at.x; R];
        for (i, x_row) in x_rows.iter_mut().enumerate() {
            *x_row = at.x.add(i * at.x_stride);
        }
        let mut w = at.weights;
        for p in 0..at.pairs {
            // Every other step: each line prefetched twice, the cadence that
            // measured fastest when weights stream from memory (docs/benchmarks.md).
            if p % 2 == 0 {
                prefetch_panel(w);
            }
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16) as *const __m128i));
            w = w.add(HALF * PAIR);
            // Index loops, as in the other kernels, so `acc` stays in registers.
            #[allow(clippy::needless_range_loop)]
            for i in 0..R {
                let pair = (x_rows[i].add(p * PAIR) as *const i32).read_unaligned();
                let xv = _mm256_set1_epi32(pair);
                acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(xv, w0));
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(xv, w1));
            }
        }
        let [low, high] = column_masks(at.cols);
        for (i, row) in acc.iter().enumerate() {
            let at = at.out.add(i * at.out_stride) as *mut i32;
            _mm256_maskstore_epi32(at, low, row[0]);
            _mm256_maskstore_epi32(at.add(8), high, row[1]);
        }
    }
}

/// The i32 sums of a tile back to f32 (the VNNI kernel's formula, lane by
/// lane), then the f32 AVX2 kernel's epilogue, in place.
///
/// # Safety
/// The CPU must support avx2 and fma; the tile (`rows` rows from `row0`,
/// `tile.cols` columns from `col0`) must lie inside the output, `x`'s rows,
/// the weights' scales and sums, and `bias` and the residual where given,
/// and no other thread may write it.
#[target_feature(enable = "avx2,fma")]
unsafe fn dequantize(
    tile: &Tile,
    x: &QuantizedRows<u16>,
    weights: &PackedInt8,
    (row0, col0, rows): (usize, usize, usize),
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
) {
    let columns = col0..col0 + tile.cols;
    let (scales, sums) = (
        &weights.scales[columns.clone()],
        &weights.column_sums[columns.clone()],
    );
    for i in 0..rows {
        let row = row0 + i;
        let (x_scale, zero) = (x.scales[row], x.zeros[row]);
        // SAFETY: the tile's row i is inside the output and only this task
        // writes it (# Safety); it holds the microkernel's i32 sums.
        let values =
            unsafe { std::slice::from_raw_parts_mut(tile.out.add(i * tile.out_stride), tile.cols) };
        for ((value, &sum), &scale) in values.iter_mut().zip(sums).zip(scales) {
            let total = value.to_bits() as i32;
            let centred = total.wrapping_sub(sum.wrapping_mul(zero));
            *value = centred as f32 * (scale * x_scale);
        }
        let residual = epilogue
            .residual
            .map(|r| &r[row * tile.out_stride + col0..][..tile.cols]);
        // SAFETY: as above; bias and residual are sliced to the tile's columns.
        unsafe {
            finish_row(
                values.as_mut_ptr(),
                tile.cols,
                bias.map(|b| &b[columns.clone()]),
                residual,
                epilogue,
            )
        };
    }
}

/// This kernel's row quantizer and block task, for the driver.
pub(super) const KERNEL: IntKernel<u16> = (quantize_row, run_block);
