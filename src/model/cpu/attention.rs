//! Scaled dot-product attention over the fused QKV projection: every
//! (sequence, head) pair is one task, reading q, k and v in place and
//! writing its context straight into the output, with no permute or
//! contiguous copies. Padded batches attend over each sequence's own
//! length; unpadded ones need no mask at all. The two products run on the
//! linears' register tiles (AVX-512 or AVX2), or the gemm crate elsewhere.

#[cfg(target_arch = "x86_64")]
use super::floor::pack_operand;
use super::floor::pool::pool;
use super::floor::{expect_len, matmul, OperandError, SharedOut};
use super::isa::Isa;
use super::softmax;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

/// Scaled dot-product attention over the fused projection, on `kernel`.
///
/// `qkv`: (batch, seq, 3 * dim) with q already scaled by 1/sqrt(head_dim);
/// `mask_bias`: (batch, seq), 0 or f32::MIN per key. Returns (batch, seq, dim).
pub fn attention(
    kernel: Isa,
    qkv: &[f32],
    mask_bias: &[f32],
    (batch, seq): (usize, usize),
    (n_heads, head_dim): (usize, usize),
) -> Result<Vec<f32>, OperandError> {
    kernel.check()?;
    expect_len("qkv", qkv.len(), &[batch, seq, 3, n_heads, head_dim])?;
    expect_len("mask_bias", mask_bias.len(), &[batch, seq])?;
    let dim = n_heads * head_dim;
    if batch == 0 || seq == 0 || dim == 0 {
        return Ok(Vec::new());
    }
    // Uninitialised but for the padding rows, which are zeroed just below;
    // the heads write every real row (see `set_len`).
    let mut out = Vec::<f32>::with_capacity(batch * seq * dim);
    let shared = SharedOut(out.as_mut_ptr());
    // Keys after a sequence's last real token get exactly zero weight
    // (e^(f32::MIN - max) is 0 in f32) and padding queries feed no real
    // token's output, so each sequence attends over its own length only:
    // a padded batch costs what its real tokens cost. Padding rows keep a
    // zero context.
    let spans: Vec<Span> = mask_bias
        .chunks_exact(seq)
        .enumerate()
        .map(|(b, bias)| Span {
            row: b * seq,
            len: bias
                .iter()
                .rposition(|&b| b == 0.0)
                .map_or(seq, |last| last + 1),
        })
        .collect();
    for span in &spans {
        // SAFETY: rows len..seq of a sequence lie inside the batch*seq*dim
        // capacity (qkv's length was checked against these dimensions).
        unsafe {
            shared
                .ptr()
                .add((span.row + span.len) * dim)
                .write_bytes(0, (seq - span.len) * dim)
        };
    }
    // SAFETY: every span's rows lie inside qkv's batch*seq rows and out's
    // capacity; each bias is its own sequence's, span.len long.
    unsafe {
        attend(kernel, qkv, shared, n_heads, head_dim, &spans, |b| {
            &mask_bias[b * seq..b * seq + spans[b].len]
        })
    };
    // SAFETY: padding rows were zeroed; `attend` wrote every real row.
    unsafe { out.set_len(batch * seq * dim) };
    Ok(out)
}

/// Attention over unpadded sequences laid end to end: `qkv` is (tokens, 3 *
/// dim), sequence i its rows from the sum of the lengths before it, q
/// scaled as for [`attention`]. Returns (tokens, dim). Every key is a real
/// token, so no mask is needed; the results equal [`attention`]'s for the
/// same sequences padded (its bias for real tokens is exactly 0).
pub fn attention_unpadded(
    kernel: Isa,
    qkv: &[f32],
    lengths: &[usize],
    n_heads: usize,
    head_dim: usize,
) -> Result<Vec<f32>, OperandError> {
    kernel.check()?;
    let tokens = lengths
        .iter()
        .try_fold(0usize, |sum, &len| sum.checked_add(len))
        .ok_or_else(|| OperandError("sequence lengths overflow".into()))?;
    expect_len("qkv", qkv.len(), &[tokens, 3, n_heads, head_dim])?;
    let dim = n_heads * head_dim;
    if tokens == 0 || dim == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::<f32>::with_capacity(tokens * dim);
    let shared = SharedOut(out.as_mut_ptr());
    let spans: Vec<Span> = lengths
        .iter()
        .scan(0, |row, &len| {
            let span = Span { row: *row, len };
            *row += len;
            Some(span)
        })
        .collect();
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let no_bias = vec![0f32; longest];
    // SAFETY: the spans tile rows 0..tokens, inside qkv (checked above)
    // and out's capacity; each bias is span.len zeros.
    unsafe {
        attend(kernel, qkv, shared, n_heads, head_dim, &spans, |b| {
            &no_bias[..spans[b].len]
        })
    };
    // SAFETY: the spans cover every row, and `attend` wrote each.
    unsafe { out.set_len(tokens * dim) };
    Ok(out)
}

/// One sequence's rows in a (rows, 3 * dim) projection and a (rows, dim)
/// output: rows `row..row + len`.
struct Span {
    row: usize,
    len: usize,
}

/// softmax(q kᵀ + bias) v for every head of every span, spread over the
/// pool, written into `out`'s rows of each span (this head's columns).
///
/// # Safety
/// The CPU must run `kernel`. Every span's rows must lie inside `qkv` (rows
/// of 3 * n_heads * head_dim) and inside `out`, a buffer of rows of n_heads
/// * head_dim; spans must not overlap; `bias(i)` must be span i's `len` long.
unsafe fn attend<'a>(
    kernel: Isa,
    qkv: &[f32],
    out: SharedOut,
    n_heads: usize,
    head_dim: usize,
    spans: &[Span],
    bias: impl Fn(usize) -> &'a [f32] + Sync,
) {
    let dim = n_heads * head_dim;
    let row = 3 * dim as isize;
    let longest = spans.iter().map(|span| span.len).max().unwrap_or(0);
    let head_task = |task: usize, scratch: &mut Scratch| {
        let (b, h) = (task / n_heads, task % n_heads);
        let Span { row: first, len } = spans[b];
        if len == 0 {
            return;
        }
        let base = first * 3 * dim + h * head_dim;
        let (q, k, v) = (&qkv[base..], &qkv[base + dim..], &qkv[base + 2 * dim..]);
        // Elsewhere the gemm crate is the only kernel.
        #[cfg(target_arch = "x86_64")]
        {
            let products: Option<TileAttention> = match kernel {
                Isa::Avx512 => Some((
                    avx512::small_product,
                    softmax::avx512 as fn(&mut [f32], &[f32]),
                )),
                Isa::Avx2 => Some((avx2::small_product, softmax::avx2 as fn(&mut [f32], &[f32]))),
                Isa::Portable => None,
            };
            if let Some(kernels) = products {
                // SAFETY: the CPU runs the kernel (this function's
                // contract); q, k and v rows are `row` apart and head_dim
                // long inside qkv; the output elements written (this
                // head's columns of its span's rows) lie inside `out` and
                // belong to no other task.
                unsafe {
                    attend_packed(
                        kernels,
                        (len, head_dim),
                        (q.as_ptr(), k.as_ptr(), v.as_ptr()),
                        3 * dim,
                        bias(b),
                        out.ptr().add(first * dim + h * head_dim),
                        dim,
                        scratch,
                    )
                };
                return;
            }
        }
        let scores = &mut scratch.scores[..len * len];
        // SAFETY: q, k and v rows are `row` apart and head_dim long inside
        // qkv (this function's contract); scores holds len*len values.
        unsafe {
            // scores = q · kᵀ
            matmul(
                (len, len, head_dim),
                scores.as_mut_ptr(),
                len,
                false,
                q.as_ptr(),
                3 * dim,
                k.as_ptr(),
                1,
                row,
            );
        }
        let bias = bias(b);
        for scores_row in scores.chunks_exact_mut(len) {
            softmax::portable(scores_row, bias);
        }
        // SAFETY: scores holds len*len values and v's rows are `row` apart
        // inside qkv; the output elements written (this head's columns of
        // its span's rows) lie inside `out` and belong to no other task
        // (spans do not overlap: the contract).
        unsafe {
            // context = softmax(scores) · v, written in place.
            matmul(
                (len, head_dim, len),
                out.ptr().add(first * dim + h * head_dim),
                dim,
                false,
                scores.as_ptr(),
                len,
                v.as_ptr(),
                row,
                1,
            );
        }
    };
    // One scratch per chunk of tasks, not per task.
    pool().execute_chunked(spans.len() * n_heads, |tasks| {
        let mut scratch = Scratch {
            scores: vec![0f32; longest * longest],
            keys: Vec::new(),
            values: Vec::new(),
        };
        tasks.for_each(|task| head_task(task, &mut scratch));
    });
}

/// One thread's buffers for a run of attention heads.
struct Scratch {
    /// A head's (len, len) scores, then weights.
    scores: Vec<f32>,
    /// kᵀ and v packed as GEMM panels (our kernels' path).
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// One of our kernels' `small_product`s (see `avx512.rs`, `avx2.rs`).
#[cfg(target_arch = "x86_64")]
type SmallProduct = unsafe fn((usize, usize, usize), *const f32, usize, &[f32], *mut f32, usize);

/// One kernel's product and row softmax, for [`attend_packed`].
#[cfg(target_arch = "x86_64")]
type TileAttention = (SmallProduct, fn(&mut [f32], &[f32]));

/// One head of one sequence on our register tiles: kᵀ and v packed as
/// panels, scores = q · kᵀ, softmax(scores + bias) in place, out = weights
/// · v, with one kernel's product and softmax. On AVX-512 the two products
/// were about 5% of `sentiment bench`'s profile at 400 tokens on the gemm
/// crate, and no faster or slower on these tiles within this VM's noise;
/// on AVX2 see docs/benchmarks.md ("A portable figure").
///
/// # Safety
/// The CPU must run `product`; q, k and v must each be valid for `len`
/// rows of `head_dim` values `qkv_stride` apart; `bias` must be `len`
/// long; `out` must be valid for `len` rows of `head_dim` values
/// `out_stride` apart that no other thread writes.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_packed(
    (product, softmax): TileAttention,
    (len, head_dim): (usize, usize),
    (q, k, v): (*const f32, *const f32, *const f32),
    qkv_stride: usize,
    bias: &[f32],
    out: *mut f32,
    out_stride: usize,
    scratch: &mut Scratch,
) {
    let scores = &mut scratch.scores[..len * len];
    // SAFETY: the caller upholds # Safety: kᵀ's element (d, j) is k[j][d],
    // v's (j, d) is v[j][d], both inside their rows; the products read q
    // and the packed panels and write scores (len x len) and out.
    unsafe {
        pack_operand(&mut scratch.keys, k, (head_dim, len), 1, qkv_stride);
        product(
            (len, len, head_dim),
            q,
            qkv_stride,
            &scratch.keys,
            scores.as_mut_ptr(),
            len,
        );
        for scores_row in scores.chunks_exact_mut(len) {
            softmax(scores_row, bias);
        }
        pack_operand(&mut scratch.values, v, (len, head_dim), qkv_stride, 1);
        product(
            (len, head_dim, len),
            scores.as_ptr(),
            len,
            &scratch.values,
            out,
            out_stride,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// softmax(q kᵀ + bias) v in f64 for one sequence of `len` real tokens
    /// (rows `row..row + len` of a (rows, 3 * dim) projection): (len, dim).
    fn attention_reference(
        qkv: &[f32],
        row: usize,
        len: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Vec<f64> {
        let dim = n_heads * head_dim;
        let at = |t: usize, part: usize, h: usize, d: usize| {
            qkv[(row + t) * 3 * dim + part * dim + h * head_dim + d] as f64
        };
        let mut out = vec![0f64; len * dim];
        for h in 0..n_heads {
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|j| (0..head_dim).map(|d| at(i, 0, h, d) * at(j, 1, h, d)).sum())
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..head_dim {
                    out[i * dim + h * head_dim + d] =
                        (0..len).map(|j| weights[j] * at(j, 2, h, d)).sum::<f64>() / total;
                }
            }
        }
        out
    }

    /// Both attention entry points, on each kernel, against an f64 reference: key counts around the 32-wide panels
    /// and their 16-wide halves and past one 384-deep pass, head sizes that
    /// fill no panel, padding.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "this CPU lacks AVX-512")]
    fn attention_on_avx512_matches_an_f64_reference() {
        attention_matches_an_f64_reference_on(Isa::Avx512);
    }

    #[test]
    #[cfg_attr(not(host_avx2), ignore = "this CPU lacks AVX2 and FMA")]
    fn attention_on_avx2_matches_an_f64_reference() {
        attention_matches_an_f64_reference_on(Isa::Avx2);
    }

    #[test]
    fn attention_on_the_gemm_crate_matches_an_f64_reference() {
        attention_matches_an_f64_reference_on(Isa::Portable);
    }

    fn attention_matches_an_f64_reference_on(kernel: Isa) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (lengths, n_heads, head_dim) in [
            (vec![1usize, 1], 1, 1),
            (vec![33, 5, 32], 2, 5),
            (vec![70, 64], 3, 40),
            (vec![23, 9], 1, 20),
            (vec![400, 17], 2, 32),
        ] {
            let dim = n_heads * head_dim;
            let seq = *lengths.iter().max().unwrap();
            let qkv: Vec<f32> = (0..lengths.len() * seq * 3 * dim)
                .map(|_| random())
                .collect();
            let mask: Vec<f32> = lengths
                .iter()
                .flat_map(|&len| (0..seq).map(move |t| if t < len { 0.0 } else { f32::MIN }))
                .collect();
            let shape = ((lengths.len(), seq), (n_heads, head_dim));
            let padded = attention(kernel, &qkv, &mask, shape.0, shape.1).unwrap();
            // The same sequences end to end.
            let packed: Vec<f32> = lengths
                .iter()
                .enumerate()
                .flat_map(|(b, &len)| &qkv[b * seq * 3 * dim..(b * seq + len) * 3 * dim])
                .copied()
                .collect();
            let unpadded =
                attention_unpadded(kernel, &packed, &lengths, n_heads, head_dim).unwrap();
            let mut unpadded_row = 0;
            for (b, &len) in lengths.iter().enumerate() {
                let want = attention_reference(&qkv, b * seq, len, n_heads, head_dim);
                let padded_rows = &padded[b * seq * dim..(b * seq + len) * dim];
                let unpadded_rows = &unpadded[unpadded_row * dim..(unpadded_row + len) * dim];
                for (got, what) in [(padded_rows, "padded"), (unpadded_rows, "unpadded")] {
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(g, w)| (*g as f64 - w).abs())
                        .fold(0.0, f64::max);
                    assert!(
                        worst < 1e-5,
                        "{kernel:?} {what} sequence {b} of {lengths:?}: {worst}"
                    );
                }
                assert!(padded[(b * seq + len) * dim..(b + 1) * seq * dim]
                    .iter()
                    .all(|&v| v == 0.0));
                unpadded_row += len;
            }
        }
    }
}
