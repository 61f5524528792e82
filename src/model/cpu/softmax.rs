//! Row softmax of `scores + bias` in place, max-shifted like torch's:
//! the scalar one, and the AVX-512 and AVX2 ones with a vector exp.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::floor::zmm::tail_mask;
#[cfg(target_arch = "x86_64")]
use super::floor::{ymm, zmm};

/// Row softmax of `scores + bias`, max-shifted like torch's.
pub fn portable(scores: &mut [f32], bias: &[f32]) {
    let mut max = f32::NEG_INFINITY;
    for (s, b) in scores.iter_mut().zip(bias) {
        *s += b;
        max = max.max(*s);
    }
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    for s in scores.iter_mut() {
        *s *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
/// Row softmax of `scores + bias` in place, max-shifted like torch's, with
/// `exp` sixteen lanes at a time (libm's expf was 8% of a 400-token pass).
/// Without AVX-512, the portable softmax.
pub fn avx512(scores: &mut [f32], bias: &[f32]) {
    assert_eq!(scores.len(), bias.len(), "one bias per score");
    if !is_x86_feature_detected!("avx512f") {
        return portable(scores, bias);
    }
    // SAFETY: avx512f is present and the lengths are equal (both checked
    // just above).
    unsafe { avx512_unchecked(scores, bias) }
}

/// # Safety
/// The CPU must support avx512f and `bias` must be as long as `scores`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_unchecked(scores: &mut [f32], bias: &[f32]) {
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
            let e = zmm::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s.add(i)), max));
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

/// Row softmax of `scores + bias` in place, max-shifted like torch's, eight
/// lanes at a time with `exp` (libm's expf per score was the portable
/// path's largest cost at 400 tokens). Without AVX2 and FMA, the portable
/// softmax.
#[cfg(target_arch = "x86_64")]
pub fn avx2(scores: &mut [f32], bias: &[f32]) {
    assert_eq!(scores.len(), bias.len(), "one bias per score");
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return portable(scores, bias);
    }
    // SAFETY: avx2 and fma are present and the lengths are equal (both
    // checked just above).
    unsafe { avx2_unchecked(scores, bias) }
}

/// # Safety
/// The CPU must support avx2 and fma, and `bias` must be as long as `scores`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_unchecked(scores: &mut [f32], bias: &[f32]) {
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
            let e = ymm::exp(_mm256_sub_ps(_mm256_maskload_ps(s.add(i), m), max));
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

#[cfg(test)]
mod tests {
    use super::*;

    type Softmax = fn(&mut [f32], &[f32]);

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "this CPU lacks AVX-512")]
    fn avx512_softmax_matches_the_scalar_one_including_masked_keys() {
        matches_the_scalar_one("avx512", avx512);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(not(host_avx2), ignore = "this CPU lacks AVX2 and FMA")]
    fn avx2_softmax_matches_the_scalar_one_including_masked_keys() {
        matches_the_scalar_one("avx2", avx2);
    }

    /// A vector softmax against the scalar one, on rows that end
    /// mid-vector, with all-negative scores (lanes past the row must not
    /// raise the max), tiny weights near expf's underflow, and masked keys.
    #[allow(dead_code)]
    fn matches_the_scalar_one(name: &str, softmax: Softmax) {
        for (n, offset) in [1, 7, 8, 9, 15, 16, 17, 75, 400]
            .into_iter()
            .flat_map(|n| [(n, 0.0), (n, -200.0)])
        {
            let scores: Vec<f32> = (0..n)
                .map(|i| ((i * 31 % 17) as f32 - 8.0) * 1.7 + offset + (i % 3) as f32 * -40.0)
                .collect();
            let bias: Vec<f32> = (0..n)
                .map(|i| if i % 5 == 4 { f32::MIN } else { 0.0 })
                .collect();
            let (mut scalar, mut vector) = (scores.clone(), scores);
            portable(&mut scalar, &bias);
            softmax(&mut vector, &bias);
            for (i, (s, v)) in scalar.iter().zip(&vector).enumerate() {
                assert!(
                    (s - v).abs() <= 1e-6 * s.max(1e-3),
                    "{name} n={n} offset {offset} [{i}]: {v} vs {s}"
                );
                if bias[i] == f32::MIN {
                    assert_eq!(*v, 0.0, "{name}: a masked key gets exactly no weight");
                }
            }
        }
    }
}
