//! The int8 kernel for AVX-512 VNNI CPUs (see the scheme in `mod.rs`):
//! `vpdpbusd` multiplies 64 u8·s8 pairs and adds them into 16 i32 lanes,
//! on register tiles of up to 14 rows x 32 outputs, each tile's sums
//! dequantized through the AVX-512 f32 epilogue while still in L1.

use std::arch::x86_64::*;

use crate::model::cpu::floor::zmm::{finish, masks, prefetch_line, prefetch_panel, Output};

use super::packing::{row_parameters, IntKernel, PackedInt8, QuantizedRows, QUAD};
use crate::model::cpu::floor::{by_tile_rows, register_tiles, Epilogue, SharedOut, PANEL};

/// Rows per register tile (see `MAX_TILE_ROWS`): 14, as in f32, so a
/// 14-token pass reads each panel once (docs/benchmarks.md).
const TILE_ROWS: usize = 14;

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
            // The next row (rows are contiguous, and a task quantizes them
            // in order): it is the previous layer's output, often still in
            // the other core's cache, and its first load stalled this pass.
            prefetch_line(values.as_ptr().wrapping_add(row.len()));
            let mask = ((1u32 << values.len()) - 1) as __mmask16;
            let v = _mm512_maskz_loadu_ps(mask, values.as_ptr());
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
        let (min, max) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
        let (scale, zero) = row_parameters(min, max);
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

/// One task of the linear: a block of rows against one panel, a register
/// tile at a time, each tile dequantized once its sums are in.
///
/// # Safety
/// As `BlockFn`'s, on a CPU with avx512f, avx512bw and avx512vnni.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_block(
    x: &QuantizedRows<u8>,
    weights: &PackedInt8,
    bias: Option<&[f32]>,
    epilogue_of: &Epilogue,
    out: SharedOut,
    (row0, rows): (usize, usize),
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
        // A tile's i32 sums, whole vectors: stored and reloaded unmasked, so
        // the reload is forwarded from the stores (a masked store is not
        // forwarded: reloading the sums from the output, under the panel's
        // masks, waited for every store to reach L1).
        let mut sums = [[_mm512_setzero_si512(); 2]; TILE_ROWS];
        for (row, tile_rows) in register_tiles(row0, rows, TILE_ROWS) {
            let output = Output::at(out, n, row, col0, bias, epilogue_of);
            let xs = x.data.as_ptr().add(row * x.stride);
            let at = (xs, x.stride, panel_data, quads, sums.as_mut_ptr());
            output.prefetch_residual(tile_rows);
            by_tile_rows!(tile_rows, microkernel(at));
            let tile = Tile {
                sums: &sums[..tile_rows],
                row0: row,
                col0,
                mask,
            };
            dequantize(&output, x, weights, tile);
        }
    }
}

type TileArgs = (*const u8, usize, *const i8, usize, *mut [__m512i; 2]);

/// R rows x 32 outputs of Σ q_x·q_w, stored as i32 vectors in `sums`.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni. `x` must be
/// valid for R rows of `quads * 4` bytes `x_stride` apart, `panel` for
/// `quads` groups of 128 bytes, and `sums` for R writes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn microkernel<const R: usize>((x, x_stride, panel, quads, sums): TileArgs) {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        let mut x_rows = [x; R];
        for (i, x_row) in x_rows.iter_mut().enumerate() {
            *x_row = x.add(i * x_stride);
        }
        let mut w = panel;
        for q in 0..quads {
            prefetch_panel(w);
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
            sums.add(i).write(*row);
        }
    }
}

/// A register tile's sums and where they go: rows `row0..` of the
/// output, columns `col0..` under `mask`.
struct Tile<'a> {
    sums: &'a [[__m512i; 2]],
    row0: usize,
    col0: usize,
    mask: [__mmask16; 2],
}

/// A tile's i32 sums back to f32, through the f32 epilogue, into the
/// output.
///
/// # Safety
/// The CPU must support avx512f; the tile's rows x (masked) columns at
/// `output`, its rows of `x` and its columns of the weights' scales and
/// sums (under the masks) must be in bounds.
#[target_feature(enable = "avx512f")]
unsafe fn dequantize(output: &Output, x: &QuantizedRows<u8>, weights: &PackedInt8, tile: Tile) {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        for (i, row_sums) in tile.sums.iter().enumerate() {
            let (x_scale, zero) = (x.scales[tile.row0 + i], x.zeros[tile.row0 + i]);
            for (half, &mask) in tile.mask.iter().enumerate() {
                let col = tile.col0 + 16 * half;
                let at = output.out.add(i * output.stride + 16 * half);
                let sums = row_sums[half];
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

/// This kernel's row quantizer and block task, for the driver.
pub(super) const KERNEL: IntKernel<u8> = (quantize_row, run_block);
