//! An AVX-512 f32 GEMM for `x · Wᵀ + bias` with the weights packed at load,
//! and the layer's next elementwise step (residual add, GELU or ReLU) done
//! on the accumulators before they are stored.
//!
//! Why not the gemm crate: it packs the activations again on every call and
//! its microkernel is shaped for large square products. Ours are skinny
//! (14-512 rows against 384-3072 columns), so a register tile of up to 14
//! rows by 32 columns that reads the activations in place and streams one
//! packed panel of weights (prefetched ahead) runs 2-3x faster on them
//! (benches/forward.rs).

use std::arch::x86_64::*;

use super::floor::zmm::{epilogue, masks, prefetch_panel, Output};
use super::floor::{
    by_tile_rows, drive_linear, register_tiles, Epilogue, OperandError, PackedWeights, SharedOut,
    KC, PANEL,
};

/// Rows per register tile (see `MAX_TILE_ROWS`): 14, so a 14-token batch-1
/// pass reads each weight panel once instead of twice (7 + 7 under 12).
const TILE_ROWS: usize = 14;

const _: () = assert!(PANEL == 32, "the microkernel is two 16-lane vectors wide");

/// Whether this CPU runs the kernel (checked once by std and cached).
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `out = epilogue(x · Wᵀ + bias)`. `x` is (rows, in) row-major, `out`
/// (rows, out) row-major. An error on a CPU without AVX-512 or when the
/// operands do not match.
pub fn linear(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
) -> Result<Vec<f32>, OperandError> {
    let refusal = (!available()).then(|| "this CPU has no AVX-512".to_string());
    let block = |_: &(), row0, rows, panel, out| {
        let tile = Tile {
            x,
            weights,
            bias,
            epilogue: &epilogue,
            out,
            row0,
            rows,
            panel,
        };
        // SAFETY: drive_linear calls blocks only once avx512f is present and
        // the operands match their dimensions; the tile's rows and panel lie
        // inside them, and no other task writes this block of `out`.
        unsafe { tile.run() }
    };
    let dims = (weights.in_dim(), weights.out_dim());
    // SAFETY: each block is one Tile::run, which stores every element of its
    // rows x panel block (the last depth pass through the epilogue) and
    // nothing else.
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

/// One task: a block of up to MC rows against one panel of 32 outputs.
struct Tile<'a> {
    x: &'a [f32],
    weights: &'a PackedWeights,
    bias: Option<&'a [f32]>,
    epilogue: &'a Epilogue<'a>,
    out: SharedOut,
    row0: usize,
    rows: usize,
    panel: usize,
}

impl Tile<'_> {
    /// Runs the tile's rows against its panel, a depth pass at a time.
    ///
    /// # Safety
    /// The CPU must support avx512f; `x`, `bias` and the residual must match
    /// the weights' dimensions (see `check_linear_operands`), `row0 + rows` and
    /// the panel must lie inside them, and no other thread may write this
    /// tile's block of the output.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self) {
        let (k, n) = (self.weights.in_dim(), self.weights.out_dim());
        let col0 = self.panel * PANEL;
        let output = |row| {
            // SAFETY: every row panel_passes asks for lies in this tile's
            // rows, inside the output, bias and residual (# Safety).
            unsafe { Output::at(self.out, n, row, col0, self.bias, self.epilogue) }
        };
        // SAFETY: the caller upholds this function's contract (see # Safety):
        // x holds the tile's rows of k values, the panel k rows of 32, and
        // the output every tile of this block.
        unsafe {
            panel_passes(
                (self.row0, self.rows, k),
                (self.x.as_ptr(), k),
                (
                    self.weights.data().as_ptr().add(self.panel * PANEL * k),
                    PANEL.min(n - col0),
                ),
                true,
                output,
            );
        }
    }
}

/// Every depth pass of every register tile of rows `row0..row0 + rows`
/// against one panel. `x` points at row 0, depth 0 with rows `x_stride`
/// apart; `panel` at the panel's first depth row, `cols` of its 32 columns
/// real; `output(row)` is where the tile starting at `row` goes. The last
/// pass applies the output's epilogue when `finish`.
///
/// # Safety
/// The CPU must support avx512f; `x` must be valid for those rows' `k`
/// values, `panel` for `k` rows of 32, and each `output(row)` for its tile
/// (and bias and residual), written by no other thread, as for
/// [`microkernel`].
#[target_feature(enable = "avx512f")]
unsafe fn panel_passes(
    (row0, rows, k): (usize, usize, usize),
    (x, x_stride): (*const f32, usize),
    (panel, cols): (*const f32, usize),
    finish: bool,
    output: impl Fn(usize) -> Output,
) {
    let mut depth = 0;
    while depth < k {
        let kc = KC.min(k - depth);
        let pass = Pass {
            k: kc,
            first: depth == 0,
            last: finish && depth + kc == k,
        };
        for (row, tile_rows) in register_tiles(row0, rows, TILE_ROWS) {
            // SAFETY: the caller upholds # Safety: the tile's rows, this
            // depth pass of the panel and output(row) are all in bounds.
            unsafe {
                let at = Operands {
                    x: x.add(row * x_stride + depth),
                    x_stride,
                    panel: panel.add(depth * PANEL),
                    cols,
                    output: output(row),
                };
                tile(tile_rows, &at, pass);
            }
        }
        depth += kc;
    }
}

/// [`microkernel`] for a tile of `rows` (1 to [`TILE_ROWS`]) rows.
///
/// # Safety
/// As for [`microkernel`] with R = `rows`.
#[target_feature(enable = "avx512f")]
unsafe fn tile(rows: usize, at: &Operands, pass: Pass) {
    // SAFETY: the caller upholds microkernel's contract for these rows.
    unsafe { by_tile_rows!(rows, microkernel(at, pass)) }
}

/// `out = x · B` on the calling thread, for attention's small products:
/// `x` (rows, k) with rows `x_stride` apart, B (k, n) packed by
/// `pack_operand`, `out` (rows, n) with rows `out_stride` apart. The
/// same register tiles as [`linear`], without bias or epilogue.
///
/// # Safety
/// The CPU must support avx512f; `x` must be valid for `rows` rows of `k`
/// values, `panels` hold B packed for (k, n), and `out` be valid for
/// `rows` rows of `n` values that no other thread writes.
#[target_feature(enable = "avx512f")]
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
        let output = |row: usize| Output {
            // SAFETY: row < rows and col0 < n, inside `out` (the contract).
            out: unsafe { out.add(row * out_stride + col0) },
            stride: out_stride,
            bias: None,
            residual: None,
            activation: None,
        };
        // SAFETY: the caller upholds # Safety: x holds the rows, the packed
        // panel k rows of 32, and out every tile of these columns.
        unsafe {
            panel_passes(
                (0, rows, k),
                (x, x_stride),
                (panels.as_ptr().add(col0 * k), PANEL.min(n - col0)),
                false,
                output,
            )
        };
    }
}

/// Which slice of the depth a microkernel call covers: the first pass
/// starts from zero, later ones add to what is stored, the last one applies
/// the epilogue.
#[derive(Clone, Copy)]
struct Pass {
    k: usize,
    first: bool,
    last: bool,
}

/// Pointers to the top-left corner of one register tile.
struct Operands {
    x: *const f32,
    x_stride: usize,
    panel: *const f32,
    cols: usize,
    output: Output,
}

/// One R x 32 register tile: R rows of x against one panel, over one pass
/// of the depth.
///
/// # Safety
/// The CPU must support avx512f. `at.x` must be valid for R rows of
/// `pass.k` values `at.x_stride` apart, `at.panel` for `pass.k` rows of
/// 32 values, and `at.output` for an R x `at.cols` tile (and its bias and
/// residual) that no other thread writes.
#[target_feature(enable = "avx512f")]
unsafe fn microkernel<const R: usize>(at: &Operands, pass: Pass) {
    // SAFETY: the caller upholds # Safety: every load and store below is inside
    // the rows, the zero-padded panel or the output tile.
    unsafe {
        let mask = masks(at.cols);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        if !pass.first {
            for (i, row) in acc.iter_mut().enumerate() {
                for (half, lane) in row.iter_mut().enumerate() {
                    let at_out = at.output.out.add(i * at.output.stride + 16 * half);
                    *lane = _mm512_maskz_loadu_ps(mask[half], at_out);
                }
            }
        }
        // Index loops over the constant R unroll into named registers; iterator
        // borrows of `acc` here made LLVM spill it to the stack every step.
        let mut x_rows = [at.x; R];
        for (i, x_row) in x_rows.iter_mut().enumerate() {
            *x_row = at.x.add(i * at.x_stride);
        }
        let mut panel = at.panel;
        for p in 0..pass.k {
            // The panel is zero-padded to 32 columns, so full loads are in bounds.
            prefetch_panel(panel);
            let w0 = _mm512_loadu_ps(panel);
            let w1 = _mm512_loadu_ps(panel.add(16));
            panel = panel.add(PANEL);
            #[allow(clippy::needless_range_loop)]
            for i in 0..R {
                let x = _mm512_set1_ps(*x_rows[i].add(p));
                acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
            }
        }
        if pass.last {
            // Whole vectors through the stack, not the output under the
            // masks: a masked store is not forwarded to a reload.
            let sums = acc;
            epilogue(&at.output, &sums, mask);
        } else {
            for (i, row) in acc.iter().enumerate() {
                for (half, lane) in row.iter().enumerate() {
                    let at_out = at.output.out.add(i * at.output.stride + 16 * half);
                    _mm512_mask_storeu_ps(at_out, mask[half], *lane);
                }
            }
        }
    }
}
