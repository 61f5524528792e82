//! CPU fast paths for the two hot spots of the forward pass, called with the
//! tensors' f32 buffers directly so each step picks its own parallelism:
//!
//! - [`linear_packed`]: weights packed once at load into panels of 64 output
//!   columns; one gemm call per panel with the bias fused in, panels spread
//!   over threads unless the product is too small to repay a wake-up;
//! - [`attention`]: every (sequence, head) pair is one task on the rayon
//!   pool, reading q, k and v in place from the fused QKV projection and
//!   writing its context straight into the (batch, seq, dim) output, with
//!   no permute or contiguous copies.
//!
//! Other devices and dtypes take candle's generic ops instead (see callers).

use candle_core::{CpuStorage, Layout, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// Multiply-adds below which a matmul runs on one thread: a rayon hand-off
/// costs tens of microseconds, which a product this small does not repay.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// The f32 buffer of a contiguous CPU tensor, passed to `f`.
pub fn with_cpu_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout): (_, &Layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Some(f(&data[start..end])),
        _ => None,
    }
}

/// Whether a product is big enough for its work to be spread over threads.
fn worth_parallel(macs: usize) -> bool {
    candle_core::utils::get_num_threads() > 1 && macs >= PARALLEL_MIN_MACS
}

/// `dst = [dst +] lhs · rhs` on the calling thread (callers parallelise over
/// independent blocks). `dst` and `lhs` are row-major with the given row
/// strides; `rhs` is addressed by its strides along k (`rhs_rs`) and along n
/// (`rhs_cs`), so a transposed operand such as kᵀ is read in place.
///
/// # Safety
/// Every element the dimensions and strides address must lie inside the
/// pointed-to buffers, and no other thread may write `dst`'s elements.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
        rhs_cs,
        rhs_rs,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}

/// Output columns per packed panel: one AVX-512 microkernel's width of work.
const PANEL: usize = 64;

/// A weight matrix packed once at load for skinny products: panels of
/// `PANEL` output columns, each stored as a contiguous (in, width) block.
/// gemm streams such a panel linearly instead of striding across the whole
/// matrix, which doubles the speed of batch-1 linears (see benches/).
#[derive(Debug)]
pub struct PackedWeights {
    data: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
}

impl PackedWeights {
    /// Packs a row-major (out, in) weight, HF's layout.
    pub fn pack(weight: &[f32], out_dim: usize, in_dim: usize) -> Self {
        let mut data = Vec::with_capacity(out_dim * in_dim);
        for start in (0..out_dim).step_by(PANEL) {
            let width = PANEL.min(out_dim - start);
            for k in 0..in_dim {
                data.extend((start..start + width).map(|o| weight[o * in_dim + k]));
            }
        }
        Self {
            data,
            in_dim,
            out_dim,
        }
    }

    /// The row-major (out, in) weight back, for quantization.
    pub fn unpack(&self) -> Vec<f32> {
        let mut weight = vec![0f32; self.out_dim * self.in_dim];
        for (panel, start) in (0..self.out_dim).step_by(PANEL).enumerate() {
            let width = PANEL.min(self.out_dim - start);
            let block = &self.data[panel * PANEL * self.in_dim..];
            for k in 0..self.in_dim {
                for j in 0..width {
                    weight[(start + j) * self.in_dim + k] = block[k * width + j];
                }
            }
        }
        weight
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// `x` (rows, in) · W^T + `bias`, with W packed by [`PackedWeights::pack`].
/// Panels are independent, so they are the unit of parallel work.
pub fn linear_packed(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
) -> Vec<f32> {
    let (in_dim, out_dim) = (weights.in_dim, weights.out_dim);
    let mut out = match bias {
        Some(bias) => bias.repeat(rows),
        None => vec![0f32; rows * out_dim],
    };
    let shared = SharedOut(out.as_mut_ptr());
    let panel = |index: usize| {
        let start = index * PANEL;
        let width = PANEL.min(out_dim - start);
        // SAFETY: the panel's block holds in*width values; its output columns
        // start..start+width of every row belong to this panel alone.
        unsafe {
            matmul(
                (rows, width, in_dim),
                shared.ptr().add(start),
                out_dim,
                bias.is_some(),
                x.as_ptr(),
                in_dim,
                weights.data.as_ptr().add(start * in_dim),
                width as isize,
                1,
            );
        }
    };
    let panels = out_dim.div_ceil(PANEL);
    if worth_parallel(rows * in_dim * out_dim) {
        (0..panels).into_par_iter().for_each(panel);
    } else {
        (0..panels).for_each(panel);
    }
    out
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint
/// set of elements through it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method, so closures capture the Send wrapper, not the raw
    /// pointer field.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Scaled dot-product attention over the fused projection.
///
/// `qkv`: (batch, seq, 3 * dim) with q already scaled by 1/sqrt(head_dim);
/// `mask_bias`: (batch, seq), 0 or f32::MIN per key. Returns (batch, seq, dim).
pub fn attention(
    qkv: &[f32],
    mask_bias: &[f32],
    batch: usize,
    seq: usize,
    n_heads: usize,
    head_dim: usize,
) -> Vec<f32> {
    let dim = n_heads * head_dim;
    let row = 3 * dim as isize;
    let mut out = vec![0f32; batch * seq * dim];
    let shared = SharedOut(out.as_mut_ptr());
    (0..batch * n_heads).into_par_iter().for_each_init(
        || vec![0f32; seq * seq],
        |scores, task| {
            let (b, h) = (task / n_heads, task % n_heads);
            let base = b * seq * 3 * dim + h * head_dim;
            let (q, k, v) = (&qkv[base..], &qkv[base + dim..], &qkv[base + 2 * dim..]);
            // SAFETY: q, k and v rows are `row` apart and head_dim long inside
            // qkv; scores is seq*seq; this task's output elements (its head's
            // columns of its sequence's rows) belong to no other task.
            unsafe {
                // scores = q · kᵀ
                matmul(
                    (seq, seq, head_dim),
                    scores.as_mut_ptr(),
                    seq,
                    false,
                    q.as_ptr(),
                    3 * dim,
                    k.as_ptr(),
                    1,
                    row,
                );
            }
            let bias = &mask_bias[b * seq..(b + 1) * seq];
            for scores_row in scores.chunks_exact_mut(seq) {
                softmax_with_bias(scores_row, bias);
            }
            unsafe {
                // context = softmax(scores) · v, written in place.
                matmul(
                    (seq, head_dim, seq),
                    shared.ptr().add(b * seq * dim + h * head_dim),
                    dim,
                    false,
                    scores.as_ptr(),
                    seq,
                    v.as_ptr(),
                    row,
                    1,
                );
            }
        },
    );
    out
}

/// Row softmax of `scores + bias`, max-shifted like torch's.
fn softmax_with_bias(scores: &mut [f32], bias: &[f32]) {
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
