//! An AVX2 + FMA f32 GEMM for `x · Wᵀ + bias`, on the same packed panels
//! as the AVX-512 kernel (`avx512.rs`): the linear layers' kernel on x86
//! CPUs without AVX-512 (most laptops and desktops, AMD before Zen 4),
//! which otherwise took the gemm crate at about a third of AVX-512's speed.
//!
//! Same design as the AVX-512 kernel, at half the width and with half the
//! registers: a register tile of up to 6 rows by 16 columns (12 ymm
//! accumulators, two weight vectors and a broadcast: 15 of AVX2's 16
//! registers), reading the activations in place and half a 32-column panel
//! of weights, the depth in passes of `avx512::KC` so that every output
//! is summed in the same order as the AVX-512 kernel sums it: both kernels
//! give bit-identical linear outputs (tested below).

use std::arch::x86_64::*;

use super::{Epilogue, OperandError, PackedWeights, SharedOut, PANEL};

/// The AVX-512 kernel's depth of one pass (so the sums round alike) and
/// rows per parallel task.
use super::avx512::{KC, MC};

/// Rows per register tile: 6 x 2 accumulators, the classic AVX2 SGEMM
/// shape (12 of the 16 ymm registers; two more hold the weights).
const TILE_ROWS: usize = 6;

/// Columns per register tile: two 8-lane vectors, half a panel.
const HALF: usize = 16;

const _: () = assert!(PANEL == 2 * HALF, "a panel is two register tiles wide");

/// Whether this CPU runs the kernel (std caches the detection). Unlike
/// the AVX-512 kernels, `SENTIMENT_KERNELS=portable` leaves it on: that
/// choice stands for what a CPU without AVX-512 runs, which is this kernel
/// wherever AVX2 and FMA are present.
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
    let (k, n) = (weights.in_dim, weights.out_dim);
    if !available() {
        return Err(OperandError("this CPU has no AVX2 and FMA".into()));
    }
    super::check_linear_operands(x, (k, n), bias, rows, &epilogue)?;
    let block = |row0, block_rows, panel, out| {
        // SAFETY: avx2 and fma are present and the operands match their
        // dimensions (both checked above); the block's rows and panel lie
        // inside them, and no other task writes this block of `out`.
        unsafe { run_block(x, weights, bias, &epilogue, out, (row0, block_rows), panel) }
    };
    // SAFETY: each block is one run_block, which stores every element of
    // its rows x panel block (the last depth pass through the epilogue)
    // and nothing else.
    Ok(unsafe { super::blocked_output(rows, n, MC, parallel, block) })
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
    let (k, n) = (weights.in_dim, weights.out_dim);
    let col0 = panel * PANEL;
    let panel_cols = PANEL.min(n - col0);
    // SAFETY: the caller upholds # Safety: x holds the block's rows of k
    // values, the panel (zero-padded to 32 columns) k rows of 32, and the
    // output this block's rows x panel_cols columns.
    unsafe {
        panel_passes(
            (row0, rows, k),
            (x.as_ptr(), k),
            (weights.data.as_ptr().add(panel * PANEL * k), panel_cols),
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
/// apart, B (k, n) packed by `avx512::pack_operand` (panels of 32 columns,
/// the linears' layout), `out` (rows, n) with rows `out_stride` apart. The
/// same register tiles and depth passes as [`linear`], without its epilogue.
///
/// # Safety
/// The CPU must support avx2 and fma; `x` must be valid for `rows` rows of
/// `k` values, `panels` hold B packed for (k, n), and `out` be valid for
/// `rows` rows of `n` values that no other thread writes.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn small_product(
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
        for (row, tile_rows) in super::register_tiles(row0, rows, TILE_ROWS) {
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
                    super::by_tile_rows!(tile_rows, microkernel(&at, pass));
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
            super::avx512::prefetch_panel(panel);
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

/// Lane masks for the first `cols` of 16 columns (two 8-lane vectors):
/// all bits set in a lane that exists.
#[target_feature(enable = "avx2")]
pub(super) fn column_masks(cols: usize) -> [__m256i; 2] {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let cols = cols.min(HALF) as i32;
    [
        _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), lanes),
        _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), lanes),
    ]
}

/// 16 columns (`cols` of them real, the rest zero) of one output row.
///
/// # Safety
/// The CPU must support avx2, and `at` must be valid for `cols` reads.
#[target_feature(enable = "avx2")]
unsafe fn load_row(at: *const f32, cols: usize) -> [__m256; 2] {
    // SAFETY: the caller upholds # Safety; partial rows load under masks.
    unsafe {
        if cols == HALF {
            return [_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))];
        }
        let [low, high] = column_masks(cols);
        [
            _mm256_maskload_ps(at, low),
            _mm256_maskload_ps(at.add(8), high),
        ]
    }
}

/// Stores the first `cols` of 16 columns of one output row.
///
/// # Safety
/// The CPU must support avx2, and `at` must be valid for `cols` writes that
/// no other thread makes.
#[target_feature(enable = "avx2")]
unsafe fn store_row(at: *mut f32, cols: usize, row: [__m256; 2]) {
    // SAFETY: the caller upholds # Safety; partial rows store under masks.
    unsafe {
        if cols == HALF {
            _mm256_storeu_ps(at, row[0]);
            _mm256_storeu_ps(at.add(8), row[1]);
            return;
        }
        let [low, high] = column_masks(cols);
        _mm256_maskstore_ps(at, low, row[0]);
        _mm256_maskstore_ps(at.add(8), high, row[1]);
    }
}

/// Bias, residual and activation over one stored row of a block, in the
/// order the AVX-512 epilogue applies them, with the portable activations
/// (compiled here with FMA, so `mul_add` is one instruction and the loop
/// vectorises).
///
/// # Safety
/// The CPU must support avx2 and fma; `out` must be valid for
/// `values.len()` reads and writes (`cols`) that no other thread makes;
/// `bias` and `residual`, where given, are `cols` long.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn finish_row(
    out: *mut f32,
    cols: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    epilogue: &Epilogue,
) {
    // SAFETY: the caller upholds # Safety: `out` holds `cols` values that
    // only this task touches.
    let values = unsafe { std::slice::from_raw_parts_mut(out, cols) };
    if let Some(bias) = bias {
        values.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    if let Some(residual) = residual {
        values.iter_mut().zip(residual).for_each(|(v, r)| *v += r);
    }
    // One loop per activation, not a match per value: a loop of GELUs
    // vectorises, a jump per value does not.
    use super::Activation;
    match epilogue.activation {
        Some(Activation::Gelu) => values.iter_mut().for_each(|v| *v = super::gelu(*v)),
        Some(Activation::GeluTanh) => values.iter_mut().for_each(|v| *v = super::gelu_tanh(*v)),
        Some(Activation::Relu) => values.iter_mut().for_each(|v| *v = v.max(0.0)),
        Some(Activation::Tanh) => values.iter_mut().for_each(|v| *v = v.tanh()),
        None => {}
    }
}

/// Row softmax of `scores + bias` in place, max-shifted like torch's, eight
/// lanes at a time with `exp`: under `SENTIMENT_KERNELS=portable`, libm's
/// expf per score and the scalar loops around it were about 17% of a
/// 400-token int8 pass. Without AVX2 and FMA, the portable softmax.
pub fn softmax_with_bias(scores: &mut [f32], bias: &[f32]) {
    assert_eq!(scores.len(), bias.len(), "one bias per score");
    if !available() {
        return super::softmax_with_bias(scores, bias);
    }
    // SAFETY: avx2 and fma are present and the lengths are equal (both
    // checked just above).
    unsafe { softmax_unchecked(scores, bias) }
}

/// # Safety
/// The CPU must support avx2 and fma, and `bias` must be as long as `scores`.
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_unchecked(scores: &mut [f32], bias: &[f32]) {
    let n = scores.len();
    let (s, b) = (scores.as_mut_ptr(), bias.as_ptr());
    let indices = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // The lanes of the 8 from i that exist: all bits set where i + lane < n.
    let lanes = |i: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32((n - i) as i32), indices);
    // SAFETY: the caller upholds # Safety; every load and store is masked
    // to the row's n values.
    unsafe {
        let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..n).step_by(8) {
            let m = lanes(i);
            let v = _mm256_add_ps(
                _mm256_maskload_ps(s.add(i), m),
                _mm256_maskload_ps(b.add(i), m),
            );
            _mm256_maskstore_ps(s.add(i), m, v);
            // Lanes past the row load as 0, which must not raise the max.
            max = _mm256_max_ps(max, _mm256_blendv_ps(max, v, _mm256_castsi256_ps(m)));
        }
        let mut lane_max = [0f32; 8];
        _mm256_storeu_ps(lane_max.as_mut_ptr(), max);
        let max = _mm256_set1_ps(lane_max.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)));
        let mut sum = _mm256_setzero_ps();
        for i in (0..n).step_by(8) {
            let m = lanes(i);
            let e = exp(_mm256_sub_ps(_mm256_maskload_ps(s.add(i), m), max));
            _mm256_maskstore_ps(s.add(i), m, e);
            sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
        }
        let mut lane_sum = [0f32; 8];
        _mm256_storeu_ps(lane_sum.as_mut_ptr(), sum);
        let inv = _mm256_set1_ps(1.0 / lane_sum.iter().sum::<f32>());
        for i in (0..n).step_by(8) {
            let m = lanes(i);
            let v = _mm256_mul_ps(_mm256_maskload_ps(s.add(i), m), inv);
            _mm256_maskstore_ps(s.add(i), m, v);
        }
    }
}

/// e^x for x <= 0 (softmax's shifted scores), as the AVX-512 kernel's
/// `exp`: x = n·ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r^7
/// (error < 1e-8 relative), scaled by 2^n built in the exponent bits.
/// Without `scalef`, 2^n must be a normal float, so below ln of the
/// smallest one (-87.33) the result is 0 where expf gives a denormal
/// (< 1.2e-38, nothing a softmax's sum of at least 1 can register).
#[target_feature(enable = "avx2,fma")]
fn exp(x: __m256) -> __m256 {
    const MIN_NORMAL_LN: f32 = -87.33;
    let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(MIN_NORMAL_LN));
    let x = _mm256_max_ps(x, _mm256_set1_ps(MIN_NORMAL_LN));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    use super::{EXP_TAYLOR, LN2_HIGH, LN2_LOW};
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HIGH), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LOW), r);
    let mut p = _mm256_set1_ps(EXP_TAYLOR[0]);
    for c in &EXP_TAYLOR[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    // n is in -126..=0 here, so n + 127 is a normal float's biased exponent.
    let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
    _mm256_andnot_ps(underflow, _mm256_mul_ps(p, scale))
}
