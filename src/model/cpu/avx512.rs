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

use super::{Activation, Epilogue, OperandError, PackedWeights, SharedOut, PANEL};

/// Depth of one pass over a panel, so a panel's slice (KC x 32 floats,
/// 48 KiB) and the activation block it meets stay in L1/L2 between tiles.
pub(super) const KC: usize = 384;
/// Rows per parallel task, split into register tiles of at most TILE_ROWS:
/// an activation block (MC x KC) that fits in L2 next to the panel.
pub(super) const MC: usize = 96;

/// Rows per register tile (see `MAX_TILE_ROWS`): 14, so a 14-token batch-1
/// pass reads each weight panel once instead of twice (7 + 7 under 12).
/// `sentiment bench --lengths 14,75,400` on distilbert-base's shape, 3
/// alternating runs: 14 tokens 10.3 -> 8.6 ms p50, 75 and 400 alike.
const TILE_ROWS: usize = 14;

/// How far ahead of a microkernel's reads its weight panel is prefetched:
/// 4 KiB, 32 depth steps of 128 bytes (a 32-column f32 panel's rows, the
/// int8 panel's quads, the bf16 panel's pairs). At batch 1 the weights
/// stream from L3 or memory once per pass, and the hardware prefetchers
/// alone left that stream at about half of what a plain 2-thread read
/// reaches (170 MB in 6 ms here, against 11 ms for distilbert-base's
/// linears at 14 rows). `cargo bench --bench forward`, 2-core Xeon:
/// distilbert-base 1x16 f32 12.5 -> 10.4 ms, int8 2.64 -> 2.40 ms; bundled
/// 1x16 f32 2.05 -> 1.85 ms. 2, 4 and 8 KiB measured alike; 1 KiB less.
const PREFETCH_AHEAD: usize = 4096;

const _: () = assert!(PANEL == 32, "the microkernel is two 16-lane vectors wide");

/// Whether this CPU runs the kernel (checked once by std and cached), and
/// `SENTIMENT_KERNELS=portable` does not rule it out.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f") && !super::portable_forced()
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
    let (k, n) = (weights.in_dim, weights.out_dim);
    if !available() {
        return Err(OperandError("this CPU has no AVX-512".into()));
    }
    super::check_linear_operands(x, (k, n), bias, rows, &epilogue)?;
    let block = |row0, rows, panel, out| {
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
        // SAFETY: avx512f is present and the operands match their dimensions
        // (both checked above); the tile's rows and panel lie inside them,
        // and no other task writes this block of `out`.
        unsafe { tile.run() }
    };
    // SAFETY: each block is one Tile::run, which stores every element of its
    // rows x panel block (the last depth pass through the epilogue) and
    // nothing else.
    Ok(unsafe { super::blocked_output(rows, n, MC, parallel, block) })
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
        let (k, n) = (self.weights.in_dim, self.weights.out_dim);
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
                    self.weights.data.as_ptr().add(self.panel * PANEL * k),
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
        for (row, tile_rows) in super::register_tiles(row0, rows, TILE_ROWS) {
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
    unsafe { super::by_tile_rows!(rows, microkernel(at, pass)) }
}

/// Packs a (k, n) right operand, element (p, j) at `src + p * p_stride +
/// j * j_stride`, into `panels` as the GEMM reads weights: panel after
/// panel of 32 columns, each (k, 32) row-major, the last zero-padded.
/// Attention's kᵀ (p a head dimension, j a key) and v (p a key, j a head
/// dimension) are both strided views of the fused projection.
///
/// # Safety
/// Every (p, j) with p < k, j < n must be readable at `src`'s offsets.
pub(super) unsafe fn pack_operand(
    panels: &mut Vec<f32>,
    src: *const f32,
    (k, n): (usize, usize),
    p_stride: usize,
    j_stride: usize,
) {
    panels.clear();
    panels.resize(n.div_ceil(PANEL) * PANEL * k, 0.0);
    for (panel_index, panel) in panels.chunks_exact_mut(PANEL * k).enumerate() {
        let col0 = panel_index * PANEL;
        let cols = PANEL.min(n - col0);
        for (p, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            for (j, value) in row[..cols].iter_mut().enumerate() {
                // SAFETY: p < k and col0 + j < n (the caller's contract).
                *value = unsafe { *src.add(p * p_stride + (col0 + j) * j_stride) };
            }
        }
    }
}

/// `out = x · B` on the calling thread, for attention's small products:
/// `x` (rows, k) with rows `x_stride` apart, B (k, n) packed by
/// [`pack_operand`], `out` (rows, n) with rows `out_stride` apart. The
/// same register tiles as [`linear`], without bias or epilogue.
///
/// # Safety
/// The CPU must support avx512f; `x` must be valid for `rows` rows of `k`
/// values, `panels` hold B packed for (k, n), and `out` be valid for
/// `rows` rows of `n` values that no other thread writes.
#[target_feature(enable = "avx512f")]
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

/// Where a tile's results go, and what [`epilogue`] does to them.
pub(super) struct Output {
    pub out: *mut f32,
    pub stride: usize,
    pub bias: Option<*const f32>,
    pub residual: Option<*const f32>,
    pub activation: Option<Activation>,
}

impl Output {
    /// The tile at (`row`, `col`) of a (rows, `n`) output.
    ///
    /// # Safety
    /// (`row`, `col`) must lie inside `out` and the bias and residual.
    pub(super) unsafe fn at(
        out: SharedOut,
        n: usize,
        row: usize,
        col: usize,
        bias: Option<&[f32]>,
        epilogue: &Epilogue,
    ) -> Self {
        // SAFETY: (row, col) lies inside out, bias and residual (the caller's contract).
        unsafe {
            Self {
                out: out.ptr().add(row * n + col),
                stride: n,
                bias: bias.map(|b| b.as_ptr().add(col)),
                residual: epilogue.residual.map(|r| r.as_ptr().add(row * n + col)),
                activation: epilogue.activation,
            }
        }
    }

    /// Prefetches the residual rows that this tile's epilogue will add, so
    /// that they arrive while the tile's multiply-adds run: the residual is
    /// the layer's input, long out of L1 and L2 by then, and loading it only
    /// in the epilogue stalled every row (a quarter of the epilogue's
    /// samples in `perf record` of an int8 batch pass). Safe for any
    /// address, as [`prefetch_line`].
    #[inline(always)]
    pub(super) fn prefetch_residual(&self, rows: usize) {
        let Some(residual) = self.residual else {
            return;
        };
        for i in 0..rows {
            let row = residual.wrapping_add(i * self.stride) as *const i8;
            // A tile row is 128 bytes, over two or three lines.
            for offset in [0, 64, 127] {
                prefetch_line(row.wrapping_add(offset));
            }
        }
    }
}

/// The lanes of a 16-wide vector that `left` remaining values fill.
fn tail_mask(left: usize) -> __mmask16 {
    if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// Lane masks for the two 16-wide halves of a panel `cols` wide.
pub(super) fn masks(cols: usize) -> [__mmask16; 2] {
    let bits = if cols >= 32 {
        u32::MAX
    } else {
        (1u32 << cols) - 1
    };
    [bits as __mmask16, (bits >> 16) as __mmask16]
}

/// Prefetches the 128 bytes (two cache lines) [`PREFETCH_AHEAD`] bytes past
/// `panel`, where a microkernel reading a panel at `panel` will be 32 steps
/// later. Safe for any address: a prefetch is a hint that never faults, and
/// `wrapping_add` keeps the pointer arithmetic defined past the panel's end.
#[inline(always)]
pub(super) fn prefetch_panel<T>(panel: *const T) {
    let ahead = (panel as *const i8).wrapping_add(PREFETCH_AHEAD);
    // SAFETY: prefetching reads nothing architecturally and never faults,
    // whatever the address (Intel SDM, PREFETCHh).
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
    }
}

/// Prefetches the cache line holding `at`. Safe for any address, as
/// [`prefetch_panel`].
#[inline(always)]
pub(super) fn prefetch_line<T>(at: *const T) {
    // SAFETY: prefetching reads nothing architecturally and never faults,
    // whatever the address (Intel SDM, PREFETCHh).
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) }
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

/// Bias, residual and activation over a tile's sums, stored to the output
/// under the masks. A function of its own, fed from a copy of the
/// accumulators: done on `acc` inside the microkernel, its size kept LLVM
/// from unrolling the loop, and the accumulators lived on the stack.
///
/// # Safety
/// The CPU must support avx512f, and `at` must be valid for a
/// `sums.len()` x (the masks' columns) tile, as for [`microkernel`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn epilogue(at: &Output, sums: &[[__m512; 2]], mask: [__mmask16; 2]) {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        for (i, row) in sums.iter().enumerate() {
            for (half, &mask) in mask.iter().enumerate() {
                let offset = i * at.stride + 16 * half;
                let value = finish(at, i, half, mask, row[half]);
                _mm512_mask_storeu_ps(at.out.add(offset), mask, value);
            }
        }
    }
}

/// One vector of row `i`, half `half` of a tile, plus bias and residual,
/// through the activation.
///
/// # Safety
/// The CPU must support avx512f; row `i`, half `half` of the tile at `at`
/// (with its bias and residual) must be in bounds under `mask`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn finish(
    at: &Output,
    i: usize,
    half: usize,
    mask: __mmask16,
    lane: __m512,
) -> __m512 {
    // SAFETY: the caller upholds # Safety.
    unsafe {
        let mut lane = lane;
        if let Some(bias) = at.bias {
            lane = _mm512_add_ps(lane, _mm512_maskz_loadu_ps(mask, bias.add(16 * half)));
        }
        if let Some(residual) = at.residual {
            let offset = i * at.stride + 16 * half;
            lane = _mm512_add_ps(lane, _mm512_maskz_loadu_ps(mask, residual.add(offset)));
        }
        match at.activation {
            Some(Activation::Gelu) => gelu(lane),
            Some(Activation::GeluTanh) => gelu_tanh(lane),
            Some(Activation::Relu) => _mm512_max_ps(lane, _mm512_setzero_ps()),
            Some(Activation::Tanh) => tanh(lane),
            None => lane,
        }
    }
}

/// GELU(x) = x/2 · (1 + erf(x/√2)), with [`super::erf`]'s rational erf.
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu(x: __m512) -> __m512 {
    let half_x = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
    let erf = erf(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
    ));
    _mm512_fmadd_ps(half_x, erf, half_x)
}

/// [`super::gelu_tanh`] on sixteen lanes, with [`tanh`].
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu_tanh(x: __m512) -> __m512 {
    use super::{GELU_CUBIC, SQRT_2_OVER_PI};
    let cubic = _mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(GELU_CUBIC));
    let inner = _mm512_mul_ps(_mm512_fmadd_ps(x, cubic, x), _mm512_set1_ps(SQRT_2_OVER_PI));
    let half_x = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
    _mm512_fmadd_ps(half_x, tanh(inner), half_x)
}

/// tanh on sixteen lanes: sign(x) · (1 − t)/(1 + t) with t = e^(−2|x|),
/// from [`exp`] (which wants x <= 0). Absolute error ~1e-7: near 0 the
/// difference 1 − t carries exp's absolute, not relative, error.
#[inline]
#[target_feature(enable = "avx512f")]
fn tanh(x: __m512) -> __m512 {
    let magnitude = _mm512_abs_ps(x);
    let t = exp(_mm512_mul_ps(magnitude, _mm512_set1_ps(-2.0)));
    let one = _mm512_set1_ps(1.0);
    let positive = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
    // Copy x's sign bit onto the non-negative result.
    let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(positive), sign))
}

/// Sixteen lanes of [`super::erf`]: the same coefficients, the same order
/// of operations, so both paths give the same GELU.
#[inline]
#[target_feature(enable = "avx512f")]
fn erf(x: __m512) -> __m512 {
    use super::erf_coefficients::{ALPHA, BETA};
    let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(4.0)), _mm512_set1_ps(-4.0));
    let x2 = _mm512_mul_ps(x, x);
    let mut p = _mm512_set1_ps(ALPHA[0]);
    for &alpha in &ALPHA[1..] {
        p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(alpha));
    }
    p = _mm512_mul_ps(x, p);
    let mut q = _mm512_set1_ps(BETA[0]);
    for &beta in &BETA[1..] {
        q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(beta));
    }
    _mm512_div_ps(p, q)
}

/// Row softmax of `scores + bias` in place, max-shifted like torch's, with
/// [`exp`] sixteen lanes at a time (libm's expf was 8% of a 400-token pass).
/// Without AVX-512, the portable softmax.
pub fn softmax_with_bias(scores: &mut [f32], bias: &[f32]) {
    assert_eq!(scores.len(), bias.len(), "one bias per score");
    if !available() {
        return super::softmax_with_bias(scores, bias);
    }
    // SAFETY: avx512f is present and the lengths are equal (both checked
    // just above).
    unsafe { softmax_unchecked(scores, bias) }
}

/// # Safety
/// The CPU must support avx512f and `bias` must be as long as `scores`.
#[target_feature(enable = "avx512f")]
unsafe fn softmax_unchecked(scores: &mut [f32], bias: &[f32]) {
    // SAFETY: the caller upholds # Safety; every access is masked to n.
    unsafe {
        let n = scores.len();
        let (s, b) = (scores.as_mut_ptr(), bias.as_ptr());
        let lanes = |i: usize| tail_mask(n - i);
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..n).step_by(16) {
            let m = lanes(i);
            let v = _mm512_add_ps(
                _mm512_maskz_loadu_ps(m, s.add(i)),
                _mm512_maskz_loadu_ps(m, b.add(i)),
            );
            _mm512_mask_storeu_ps(s.add(i), m, v);
            max = _mm512_mask_max_ps(max, m, max, v);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = _mm512_setzero_ps();
        for i in (0..n).step_by(16) {
            let m = lanes(i);
            let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s.add(i)), max));
            _mm512_mask_storeu_ps(s.add(i), m, e);
            sum = _mm512_mask_add_ps(sum, m, sum, e);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
        for i in (0..n).step_by(16) {
            let m = lanes(i);
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s.add(i)), inv);
            _mm512_mask_storeu_ps(s.add(i), m, v);
        }
    }
}

/// e^x for x <= 0 (softmax's shifted scores): x = n·ln2 + r with |r| <=
/// ln2/2, e^r by its Taylor series to r^7 (error < 1e-8 relative), then
/// scaled by 2^n with `scalef`, which flushes to 0 where expf would.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    // Below -104, e^x is 0 in f32 (denormals end at e^-103.3); the clamp
    // keeps n finite for f32::MIN, the masked scores.
    let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    use super::{EXP_TAYLOR, LN2_HIGH, LN2_LOW};
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HIGH), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LOW), r);
    let mut p = _mm512_set1_ps(EXP_TAYLOR[0]);
    for c in &EXP_TAYLOR[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    _mm512_scalef_ps(p, n)
}

/// One LayerNorm row: torch's two-pass mean and biased variance, sixteen
/// lanes at a time.
///
/// # Safety
/// The CPU must support avx512f (see [`available`]), and `out` must be
/// valid for `row.len()` writes (it may be uninitialised).
pub unsafe fn layer_norm_row(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: *mut f32) {
    let dim = row.len();
    assert!(weight.len() == dim && bias.len() == dim);
    // SAFETY: avx512f is present and `out` valid for `dim` writes (this
    // function's contract); the slices are `dim` long (asserted), and
    // every access is masked to `dim`.
    unsafe { layer_norm_row_unchecked(row, weight, bias, eps, out) }
}

/// # Safety
/// The CPU must support avx512f; `weight` and `bias` must be as long as
/// `row`, and `out` valid for `row.len()` writes.
#[target_feature(enable = "avx512f")]
unsafe fn layer_norm_row_unchecked(
    row: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: *mut f32,
) {
    // SAFETY: the caller upholds # Safety; every access is masked to dim.
    unsafe {
        let dim = row.len();
        let lanes = |i: usize| tail_mask(dim - i);
        let load = |data: &[f32], i: usize| _mm512_maskz_loadu_ps(lanes(i), data.as_ptr().add(i));
        let mut sum = _mm512_setzero_ps();
        for i in (0..dim).step_by(16) {
            sum = _mm512_add_ps(sum, load(row, i));
        }
        let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / dim as f32);
        let mut squares = _mm512_setzero_ps();
        for i in (0..dim).step_by(16) {
            // Masked-off lanes load 0 and would add mean², so mask the result.
            let centred = _mm512_maskz_sub_ps(lanes(i), load(row, i), mean);
            squares = _mm512_fmadd_ps(centred, centred, squares);
        }
        let var = _mm512_reduce_add_ps(squares) / dim as f32;
        let inv_std = _mm512_set1_ps(1.0 / (var + eps).sqrt());
        for i in (0..dim).step_by(16) {
            let normed = _mm512_mul_ps(_mm512_sub_ps(load(row, i), mean), inv_std);
            let value = _mm512_fmadd_ps(normed, load(weight, i), load(bias, i));
            _mm512_mask_storeu_ps(out.add(i), lanes(i), value);
        }
    }
}
