//! An AVX2 + FMA f32 GEMM for `x · Wᵀ + bias`, on the same packed panels
//! as the AVX-512 kernel (`avx512.rs`): the linear layers' kernel on x86
//! CPUs without AVX-512 (most laptops and desktops, AMD before Zen 4),
//! which otherwise took the gemm crate at about a third of AVX-512's speed.
//!
//! Same design as the AVX-512 kernel, at half the width and with half the
//! registers: a register tile of up to 6 rows by 16 columns (12 ymm
//! accumulators, two weight vectors and a broadcast: 15 of AVX2's 16
//! registers), reading the activations in place and half a 32-column panel
//! of weights, the depth in passes of the floor's `KC` so that every output
//! is summed in the same order as the AVX-512 kernel sums it: both kernels
//! give bit-identical linear outputs (tested below).

use std::arch::x86_64::*;

use super::floor::ymm::{finish_row, load_row, store_row, HALF};
use super::floor::zmm::prefetch_panel;
use super::floor::{
    by_tile_rows, drive_linear, register_tiles, Epilogue, OperandError, PackedWeights, SharedOut,
    KC, PANEL,
};

/// Rows per register tile: 6 x 2 accumulators, the classic AVX2 SGEMM
/// shape (12 of the 16 ymm registers; two more hold the weights).
const TILE_ROWS: usize = 6;

const _: () = assert!(PANEL == 2 * HALF, "a panel is two register tiles wide");

/// Whether this CPU runs the kernel (std caches the detection).
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `out = epilogue(x · Wᵀ + bias)`. `x` is (rows, in) row-major, `out`
/// (rows, out) row-major. An error on a CPU without AVX2 and FMA or when
/// the operands do not match.
pub fn linear(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
) -> Result<Vec<f32>, OperandError> {
    let refusal = (!available()).then(|| "this CPU has no AVX2 and FMA".to_string());
    let block = |_: &(), row0, block_rows, panel, out| {
        // SAFETY: drive_linear calls blocks only once avx2 and fma are
        // present and the operands match their dimensions; the block's rows
        // and panel lie inside them, and no other task writes this block.
        unsafe { run_block(x, weights, bias, &epilogue, out, (row0, block_rows), panel) }
    };
    let dims = (weights.in_dim(), weights.out_dim());
    // SAFETY: each block is one run_block, which stores every element of
    // its rows x panel block (the last depth pass through the epilogue)
    // and nothing else.
    unsafe {
        drive_linear(
            refusal,
            x,
            dims,
            bias,
            rows,
            &epilogue,
            parallel,
            || (),
            block,
        )
    }
}

/// One task: rows `row0..row0 + rows` against one panel, a depth pass at a
/// time, each pass over every register tile (two per panel row band).
///
/// # Safety
/// The CPU must support avx2 and fma; `x`, `bias` and the residual must
/// match the weights' dimensions (see `check_linear_operands`), the rows
/// and the panel must lie inside them, and no other thread may write this
/// block of the output.
#[target_feature(enable = "avx2,fma")]
unsafe fn run_block(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    epilogue: &Epilogue,
    out: SharedOut,
    (row0, rows): (usize, usize),
    panel: usize,
) {
    let (k, n) = (weights.in_dim(), weights.out_dim());
    let col0 = panel * PANEL;
    let panel_cols = PANEL.min(n - col0);
    // SAFETY: the caller upholds # Safety: x holds the block's rows of k
    // values, the panel (zero-padded to 32 columns) k rows of 32, and the
    // output this block's rows x panel_cols columns.
    unsafe {
        panel_passes(
            (row0, rows, k),
            (x.as_ptr(), k),
            (weights.data().as_ptr().add(panel * PANEL * k), panel_cols),
            (out.ptr().add(col0), n),
        );
    }
    // The epilogue over the block just stored (still in L1/L2), row by row.
    for row in row0..row0 + rows {
        // SAFETY: row < rows of the output and columns col0..col0 +
        // panel_cols are this block's (# Safety).
        unsafe {
            finish_row(
                out.ptr().add(row * n + col0),
                panel_cols,
                bias.map(|b| &b[col0..col0 + panel_cols]),
                epilogue
                    .residual
                    .map(|r| &r[row * n + col0..row * n + col0 + panel_cols]),
                epilogue,
            )
        };
    }
}

/// `out = x · B` on the calling thread, for attention's small products, as
/// the AVX-512 kernel's `small_product`: `x` (rows, k) with rows `x_stride`
/// apart, B (k, n) packed by the floor's `pack_operand` (panels of 32 columns,
/// the linears' layout), `out` (rows, n) with rows `out_stride` apart. The
/// same register tiles and depth passes as [`linear`], without its epilogue.
///
/// # Safety
/// The CPU must support avx2 and fma; `x` must be valid for `rows` rows of
/// `k` values, `panels` hold B packed for (k, n), and `out` be valid for
/// `rows` rows of `n` values that no other thread writes.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn small_product(
    (rows, n, k): (usize, usize, usize),
    x: *const f32,
    x_stride: usize,
    panels: &[f32],
    out: *mut f32,
    out_stride: usize,
) {
    debug_assert!(panels.len() >= n.div_ceil(PANEL) * PANEL * k);
    for panel in 0..n.div_ceil(PANEL) {
        let col0 = panel * PANEL;
        // SAFETY: the caller upholds # Safety: x holds the rows, the packed
        // panel k rows of 32, and out every tile of these columns.
        unsafe {
            panel_passes(
                (0, rows, k),
                (x, x_stride),
                (panels.as_ptr().add(col0 * k), PANEL.min(n - col0)),
                (out.add(col0), out_stride),
            );
        }
    }
}

/// Every depth pass of every register tile of rows `row0..row0 + rows`
/// against one panel, as the AVX-512 kernel's `panel_passes`: `x` points
/// at row 0, depth 0 with rows `x_stride` apart; `panel` at the panel's
/// first depth row, `cols` of its 32 columns real; `out` at row 0 of the
/// panel's first column, rows `out_stride` apart. Each tile is two 16-wide
/// halves; sums are stored, with no epilogue.
///
/// # Safety
/// The CPU must support avx2 and fma; `x` must be valid for those rows'
/// `k` values, `panel` for `k` rows of 32 (zero-padded), and `out` for
/// those rows' `cols` values, which no other thread writes.
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_passes(
    (row0, rows, k): (usize, usize, usize),
    (x, x_stride): (*const f32, usize),
    (panel, cols): (*const f32, usize),
    (out, out_stride): (*mut f32, usize),
) {
    let mut depth = 0;
    while depth < k {
        let kc = KC.min(k - depth);
        let pass = Pass {
            k: kc,
            first: depth == 0,
        };
        for (row, tile_rows) in register_tiles(row0, rows, TILE_ROWS) {
            for half in 0..cols.div_ceil(HALF) {
                let col = half * HALF;
                // SAFETY: the caller upholds # Safety: the tile's rows hold
                // k values each from `depth`, the panel k rows of 32 from
                // this half, and `out` the tile (row, col) with its columns.
                unsafe {
                    let at = Operands {
                        x: x.add(row * x_stride + depth),
                        x_stride,
                        panel: panel.add(depth * PANEL + col),
                        out: out.add(row * out_stride + col),
                        out_stride,
                        cols: HALF.min(cols - col),
                    };
                    by_tile_rows!(tile_rows, microkernel(&at, pass));
                }
            }
        }
        depth += kc;
    }
}

/// Which slice of the depth a microkernel call covers: the first pass
/// starts from zero, later ones add to what is stored.
#[derive(Clone, Copy)]
struct Pass {
    k: usize,
    first: bool,
}

/// Pointers to the top-left corner of one register tile.
struct Operands {
    x: *const f32,
    x_stride: usize,
    panel: *const f32,
    out: *mut f32,
    out_stride: usize,
    /// Output columns of the tile that exist (1 to 16); the panel is
    /// zero-padded, so the weights are read in full either way.
    cols: usize,
}

/// One R x 16 register tile over one depth pass.
///
/// # Safety
/// The CPU must support avx2 and fma. `at.x` must be valid for R rows of
/// `pass.k` values `at.x_stride` apart, `at.panel` for `pass.k` rows of 16
/// values `PANEL` apart, and `at.out` for an R x `at.cols` tile
/// `at.out_stride` apart that no other thread writes.
#[target_feature(enable = "avx2,fma")]
unsafe fn microkernel<const R: usize>(at: &Operands, pass: Pass) {
    // SAFETY: the caller upholds # Safety: every load and store below is
    // inside the rows, the zero-padded panel or the output tile.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        if !pass.first {
            for (i, row) in acc.iter_mut().enumerate() {
                *row = load_row(at.out.add(i * at.out_stride), at.cols);
            }
        }
        // Index loops over the constant R unroll into named registers (as
        // in the AVX-512 kernel, iterator borrows of `acc` spill it).
        let mut x_rows = [at.x; R];
        for (i, x_row) in x_rows.iter_mut().enumerate() {
            *x_row = at.x.add(i * at.x_stride);
        }
        let mut panel = at.panel;
        for p in 0..pass.k {
            prefetch_panel(panel);
            let w0 = _mm256_loadu_ps(panel);
            let w1 = _mm256_loadu_ps(panel.add(8));
            panel = panel.add(PANEL);
            #[allow(clippy::needless_range_loop)]
            for i in 0..R {
                let x = _mm256_broadcast_ss(&*x_rows[i].add(p));
                acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            store_row(at.out.add(i * at.out_stride), at.cols, *row);
        }
    }
}
