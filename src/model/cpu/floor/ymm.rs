//! 256-bit tile plumbing for the AVX2 kernels (f32 and int8): row masks,
//! masked row loads and stores, and the epilogue over a stored row.

use std::arch::x86_64::*;

use super::{math, Epilogue};
use crate::model::config::Activation;

/// Columns per register tile: two 8-lane vectors, half a panel.
pub(crate) const HALF: usize = 16;

/// Lane masks for the first `cols` of 16 columns (two 8-lane vectors):
/// all bits set in a lane that exists.
#[target_feature(enable = "avx2")]
pub(crate) fn column_masks(cols: usize) -> [__m256i; 2] {
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
pub(crate) unsafe fn load_row(at: *const f32, cols: usize) -> [__m256; 2] {
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
pub(crate) unsafe fn store_row(at: *mut f32, cols: usize, row: [__m256; 2]) {
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
pub(crate) unsafe fn finish_row(
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
    match epilogue.activation {
        Some(Activation::Gelu) => values.iter_mut().for_each(|v| *v = math::gelu(*v)),
        Some(Activation::GeluTanh) => values.iter_mut().for_each(|v| *v = math::gelu_tanh(*v)),
        Some(Activation::Relu) => values.iter_mut().for_each(|v| *v = v.max(0.0)),
        Some(Activation::Tanh) => values.iter_mut().for_each(|v| *v = v.tanh()),
        None => {}
    }
}

/// e^x for x <= 0 (softmax's shifted scores), as the AVX-512 kernel's
/// `exp`: x = n·ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r^7
/// (error < 1e-8 relative), scaled by 2^n built in the exponent bits.
/// Without `scalef`, 2^n must be a normal float, so below ln of the
/// smallest one (-87.33) the result is 0 where expf gives a denormal
/// (< 1.2e-38, nothing a softmax's sum of at least 1 can register).
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp(x: __m256) -> __m256 {
    const MIN_NORMAL_LN: f32 = -87.33;
    let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(MIN_NORMAL_LN));
    let x = _mm256_max_ps(x, _mm256_set1_ps(MIN_NORMAL_LN));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    use super::math::{EXP_TAYLOR, LN2_HIGH, LN2_LOW};
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
