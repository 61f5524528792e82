//! LayerNorm rows on the same spinning pool as the matmuls (candle_nn's
//! spreads rows over rayon's sleeping pool, whose wake-ups cost more than
//! the normalisation).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::floor::zmm::tail_mask;
use super::floor::{parallel_for, worth_parallel, OperandError, SharedOut};
use super::isa::Isa;

/// LayerNorm over rows of `weight.len()` values, as torch computes it, on
/// `kernel` (AVX-512 rows, or portable ones for any other):
/// mean, then the biased variance of the centred values. Rows are spread
/// over the pool when there are enough of them to repay it. `x` must hold
/// whole rows, and `bias` one value per column.
pub fn layer_norm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    kernel: Isa,
) -> Result<Vec<f32>, OperandError> {
    kernel.check()?;
    let dim = weight.len();
    if dim == 0 || bias.len() != dim || !x.len().is_multiple_of(dim) {
        return Err(OperandError(format!(
            "layer_norm of {} values with {dim} weights and {} biases",
            x.len(),
            bias.len()
        )));
    }
    let rows = x.len() / dim;
    // Uninitialised until every row is written below (see `set_len`).
    let mut out = Vec::<f32>::with_capacity(x.len());
    let shared = SharedOut(out.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    let vectorised = kernel == Isa::Avx512;
    let norm_rows = |chunk: std::ops::Range<usize>| {
        for r in chunk {
            let row = &x[r * dim..(r + 1) * dim];
            // Row r of `out` is written by this chunk alone.
            let out_row = shared.ptr().wrapping_add(r * dim);
            #[cfg(target_arch = "x86_64")]
            if vectorised {
                // SAFETY: avx512f was detected above; `row`, `weight` and
                // `bias` are each `dim` long (checked above) and out_row,
                // row r of the x.len() capacity, is valid for `dim` writes.
                unsafe { layer_norm_row_avx512(row, weight, bias, eps, out_row) };
                continue;
            }
            // SAFETY: out_row is row r of the x.len() capacity: valid for
            // `dim` writes.
            unsafe { layer_norm_row_portable(row, weight, bias, eps, out_row) };
        }
    };
    const ROWS_PER_TASK: usize = 16;
    if worth_parallel(x.len() * 16) && rows > ROWS_PER_TASK {
        parallel_for(rows.div_ceil(ROWS_PER_TASK), |task| {
            norm_rows(task * ROWS_PER_TASK..rows.min((task + 1) * ROWS_PER_TASK))
        });
    } else {
        norm_rows(0..rows);
    }
    // SAFETY: x.len() is rows * dim (checked above) and every row was
    // written above.
    unsafe { out.set_len(x.len()) };
    Ok(out)
}

/// One LayerNorm row without AVX-512.
///
/// # Safety
/// `out` must be valid for `row.len()` writes.
unsafe fn layer_norm_row_portable(
    row: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: *mut f32,
) {
    let dim = row.len() as f32;
    let mean = row.iter().sum::<f32>() / dim;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim;
    let inv_std = 1.0 / (var + eps).sqrt();
    for (j, ((v, w), b)) in row.iter().zip(weight).zip(bias).enumerate() {
        // SAFETY: j < row.len(), for which the caller made `out` valid.
        unsafe { out.add(j).write((v - mean) * inv_std * w + b) };
    }
}
/// One LayerNorm row: torch's two-pass mean and biased variance, sixteen
/// lanes at a time.
///
/// # Safety
/// The CPU must support avx512f, and `out` must be
/// valid for `row.len()` writes (it may be uninitialised).
#[cfg(target_arch = "x86_64")]
unsafe fn layer_norm_row_avx512(
    row: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: *mut f32,
) {
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
#[cfg(target_arch = "x86_64")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_rows_match_an_f64_reference() {
        for dim in [1, 15, 384, 385] {
            let row: Vec<f32> = (0..dim)
                .map(|i| ((i * 29 % 31) as f32 - 15.0) * 0.37)
                .collect();
            let weight: Vec<f32> = (0..dim).map(|i| 1.0 + (i % 3) as f32 * 0.1).collect();
            let bias: Vec<f32> = (0..dim).map(|i| (i % 5) as f32 * 0.01).collect();
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
            let want: Vec<f64> = (0..dim)
                .map(|j| {
                    (row[j] as f64 - mean) / (var + 1e-12).sqrt() * weight[j] as f64
                        + bias[j] as f64
                })
                .collect();
            let mut portable = vec![0f32; dim];
            // SAFETY: `portable` holds dim values.
            unsafe { layer_norm_row_portable(&row, &weight, &bias, 1e-12, portable.as_mut_ptr()) };
            let fastest = super::super::plan::KernelPlan::fastest()
                .cpu
                .map_or(Isa::Portable, |cpu| cpu.vector);
            for got in [
                layer_norm(&row, &weight, &bias, 1e-12, fastest).unwrap(),
                portable,
            ] {
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((*g as f64 - w).abs() < 1e-5, "dim {dim} [{j}]: {g} vs {w}");
                }
            }
        }
    }
}
