//! 512-bit tile plumbing for the AVX-512 kernels (f32, bf16, int8 VNNI):
//! where a tile's results go, lane masks, prefetches, and the epilogue
//! (bias, residual, activation) on sixteen lanes.

use std::arch::x86_64::*;

use super::{Epilogue, SharedOut};
use crate::model::config::Activation;

/// How far ahead of a microkernel's reads its weight panel is prefetched:
/// 32 depth steps of 128 bytes, since at batch 1 the hardware prefetchers
/// alone stream the weights at half speed (docs/benchmarks.md, "Kernel
/// tuning decisions").
pub(crate) const PREFETCH_AHEAD: usize = 4096;

/// Where a tile's results go, and what [`epilogue`] does to them.
pub(crate) struct Output {
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
    pub(crate) unsafe fn at(
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
    pub(crate) fn prefetch_residual(&self, rows: usize) {
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
pub(crate) fn tail_mask(left: usize) -> __mmask16 {
    if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// Lane masks for the two 16-wide halves of a panel `cols` wide.
pub(crate) fn masks(cols: usize) -> [__mmask16; 2] {
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
pub(crate) fn prefetch_panel<T>(panel: *const T) {
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
pub(crate) fn prefetch_line<T>(at: *const T) {
    // SAFETY: prefetching reads nothing architecturally and never faults,
    // whatever the address (Intel SDM, PREFETCHh).
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) }
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
pub(crate) unsafe fn epilogue(at: &Output, sums: &[[__m512; 2]], mask: [__mmask16; 2]) {
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
pub(crate) unsafe fn finish(
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

/// GELU(x) = x/2 · (1 + erf(x/√2)), with [`super::math::erf`]'s rational erf.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn gelu(x: __m512) -> __m512 {
    let half_x = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
    let erf = erf(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
    ));
    _mm512_fmadd_ps(half_x, erf, half_x)
}

/// [`super::math::gelu_tanh`] on sixteen lanes, with [`tanh`].
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn gelu_tanh(x: __m512) -> __m512 {
    use super::math::{GELU_CUBIC, SQRT_2_OVER_PI};
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
pub(crate) fn tanh(x: __m512) -> __m512 {
    let magnitude = _mm512_abs_ps(x);
    let t = exp(_mm512_mul_ps(magnitude, _mm512_set1_ps(-2.0)));
    let one = _mm512_set1_ps(1.0);
    let positive = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
    // Copy x's sign bit onto the non-negative result.
    let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(positive), sign))
}

/// Sixteen lanes of [`super::math::erf`]: the same coefficients, the same order
/// of operations, so both paths give the same GELU.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn erf(x: __m512) -> __m512 {
    use super::math::erf_coefficients::{ALPHA, BETA};
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

/// e^x for x <= 0 (softmax's shifted scores): x = n·ln2 + r with |r| <=
/// ln2/2, e^r by its Taylor series to r^7 (error < 1e-8 relative), then
/// scaled by 2^n with `scalef`, which flushes to 0 where expf would.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn exp(x: __m512) -> __m512 {
    // Below -104, e^x is 0 in f32 (denormals end at e^-103.3); the clamp
    // keeps n finite for f32::MIN, the masked scores.
    let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    use super::math::{EXP_TAYLOR, LN2_HIGH, LN2_LOW};
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HIGH), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LOW), r);
    let mut p = _mm512_set1_ps(EXP_TAYLOR[0]);
    for c in &EXP_TAYLOR[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    _mm512_scalef_ps(p, n)
}
