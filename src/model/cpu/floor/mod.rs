//! The ground floor every kernel stands on: operand checks, packed f32
//! weights, the epilogue a tile applies, the output shared by parallel
//! tasks, register-tile and block plumbing, and the thread pool. Kernels
//! import from here (and `zmm`/`ymm` for their vector width), never from
//! each other or from the modules that call them.

pub(crate) mod math;
pub(crate) mod pool;
#[cfg(target_arch = "x86_64")]
pub(crate) mod ymm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod zmm;

use gemm::Parallelism;

use crate::model::config::Activation;

/// Operands whose lengths do not match the dimensions a kernel was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel operands do not match: {0}")]
pub struct OperandError(pub(crate) String);

impl From<OperandError> for candle_core::Error {
    fn from(err: OperandError) -> Self {
        candle_core::Error::Msg(err.to_string())
    }
}

/// `Ok` when `len` is exactly `dims` multiplied out (without overflow).
pub(crate) fn expect_len(what: &str, len: usize, dims: &[usize]) -> Result<(), OperandError> {
    let want = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match want {
        Some(want) if want == len => Ok(()),
        Some(want) => Err(OperandError(format!(
            "{what} has {len} values, expected {want} ({dims:?})"
        ))),
        None => Err(OperandError(format!(
            "{what}: dimensions {dims:?} overflow"
        ))),
    }
}

/// The operand lengths every linear kernel relies on for its unchecked
/// accesses: x is (rows, in), bias (out), a residual (rows, out).
pub(crate) fn check_linear_operands(
    x: &[f32],
    (in_dim, out_dim): (usize, usize),
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: &Epilogue,
) -> Result<(), OperandError> {
    expect_len("input", x.len(), &[rows, in_dim])?;
    if let Some(bias) = bias {
        expect_len("bias", bias.len(), &[out_dim])?;
    }
    if let Some(residual) = epilogue.residual {
        expect_len("residual", residual.len(), &[rows, out_dim])?;
    }
    Ok(())
}

/// Output columns per packed panel: the AVX-512 microkernel's width (two
/// 16-lane vectors).
pub(crate) const PANEL: usize = 32;

/// A weight matrix packed once at load for skinny products: panels of
/// `PANEL` output columns, each stored as a contiguous (in, PANEL) block,
/// the last one zero-padded. A kernel then streams one panel linearly
/// instead of striding across the whole matrix.
#[derive(Debug)]
pub struct PackedWeights {
    data: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
}

impl PackedWeights {
    /// Packs a row-major (out, in) weight, HF's layout. Both dimensions
    /// must be non-zero and `weight` exactly (out, in).
    pub fn pack(weight: &[f32], out_dim: usize, in_dim: usize) -> Result<Self, OperandError> {
        if out_dim == 0 || in_dim == 0 {
            return Err(OperandError(format!(
                "an empty ({out_dim}, {in_dim}) weight"
            )));
        }
        expect_len("weight", weight.len(), &[out_dim, in_dim])?;
        let panels = out_dim.div_ceil(PANEL);
        let mut data = vec![0f32; panels * PANEL * in_dim];
        for (o, row) in weight.chunks_exact(in_dim).enumerate() {
            let block = &mut data[(o / PANEL) * PANEL * in_dim..];
            for (k, &w) in row.iter().enumerate() {
                block[k * PANEL + o % PANEL] = w;
            }
        }
        Ok(Self {
            data,
            in_dim,
            out_dim,
        })
    }

    /// The row-major (out, in) weight back, for quantization.
    pub fn unpack(&self) -> Vec<f32> {
        let mut weight = vec![0f32; self.out_dim * self.in_dim];
        for (o, row) in weight.chunks_exact_mut(self.in_dim).enumerate() {
            let block = &self.data[(o / PANEL) * PANEL * self.in_dim..];
            for (k, w) in row.iter_mut().enumerate() {
                *w = block[k * PANEL + o % PANEL];
            }
        }
        weight
    }

    /// The panels, each (in, PANEL) row-major.
    pub(crate) fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// What a linear layer does to its output before storing it, after the
/// bias: add a residual of the output's shape, then apply an activation.
/// Done on the kernel's accumulators, this saves a pass over memory each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub residual: Option<&'a [f32]>,
    pub activation: Option<Activation>,
}

/// A raw pointer that parallel tasks may share; each task writes a disjoint
/// set of elements through it.
pub(crate) struct SharedOut<T = f32>(pub(crate) *mut T);

// SAFETY: a SharedOut is only made for a buffer that outlives the parallel
// call it is used in, and every user writes a set of elements disjoint from
// every other task's (each use site says which), so sending the pointer to
// another thread creates no data race.
unsafe impl<T> Send for SharedOut<T> {}

// SAFETY: as for Send: shared use only ever writes disjoint elements.
unsafe impl<T> Sync for SharedOut<T> {}

// Copy by hand: derive would require T: Copy.
impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// Through a method, so closures capture the Send wrapper, not the raw
    /// pointer field.
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }
}

/// The most rows a register tile may have: 14 rows x 2 vectors = 28
/// accumulators, leaving registers for two weight vectors and a broadcast
/// (the 32 zmm registers). Each kernel picks its own height up to this
/// (`TILE_ROWS` in avx512.rs, int8.rs and bf16.rs), and [`by_tile_rows`]
/// dispatches every height up to it.
pub(crate) const MAX_TILE_ROWS: usize = 14;

/// The register tiles of the `rows` rows from `row0`, as (first row, rows):
/// split evenly over the fewest tiles of at most `tile_rows` (14 = 7 + 7
/// under 12, not 12 + 2), since a thin tile does little work per weight
/// load. Every tile has 1 to `tile_rows` rows.
pub(crate) fn register_tiles(
    row0: usize,
    rows: usize,
    tile_rows: usize,
) -> impl Iterator<Item = (usize, usize)> {
    debug_assert!((1..=MAX_TILE_ROWS).contains(&tile_rows));
    let even = rows.div_ceil(rows.div_ceil(tile_rows).max(1)).max(1);
    (row0..row0 + rows)
        .step_by(even)
        .map(move |row| (row, even.min(row0 + rows - row)))
}

/// `$kernel::<R>($args)` for R = `$rows`, 1 to [`MAX_TILE_ROWS`]: a
/// microkernel's row count is a const generic so its accumulators unroll
/// into registers, and a tile's height is only known at run time.
macro_rules! by_tile_rows {
    ($rows:expr, $kernel:ident($($arg:expr),*)) => {
        match $rows {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            8 => $kernel::<8>($($arg),*),
            9 => $kernel::<9>($($arg),*),
            10 => $kernel::<10>($($arg),*),
            11 => $kernel::<11>($($arg),*),
            12 => $kernel::<12>($($arg),*),
            13 => $kernel::<13>($($arg),*),
            14 => $kernel::<14>($($arg),*),
            rows => unreachable!("register_tiles makes tiles of 1 to MAX_TILE_ROWS rows, not {rows}"),
        }
    };
}

pub(crate) use by_tile_rows;

/// A (rows, n) f32 output made by blocks: `block(row0, rows, panel, out)`
/// for every block of up to `max_rows` rows against every panel of PANEL
/// columns, spread over the pool when `parallel`. The output starts
/// uninitialised for the blocks to fill (zeroing it was 5% of a batch pass).
///
/// # Safety
/// Each call of `block` must write every element of its rows x panel block
/// of `out`, a (rows, n) row-major buffer, and nothing outside that block.
pub(crate) unsafe fn blocked_output(
    rows: usize,
    n: usize,
    max_rows: usize,
    parallel: bool,
    block: impl Fn(usize, usize, usize, SharedOut) + Sync,
) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(rows * n);
    let shared = SharedOut(out.as_mut_ptr());
    let panels = n.div_ceil(PANEL);
    let task = |index: usize| {
        let (row_block, panel) = (index / panels, index % panels);
        let row0 = row_block * max_rows;
        block(row0, max_rows.min(rows - row0), panel, shared);
    };
    let tasks = rows.div_ceil(max_rows) * panels;
    if parallel {
        parallel_for(tasks, task);
    } else {
        (0..tasks).for_each(task);
    }
    // SAFETY: the tasks cover all rows x panels, and each block wrote all of
    // its elements (this function's contract).
    unsafe { out.set_len(rows * n) };
    out
}

/// The shape every linear kernel shares: refuse a CPU without the
/// kernel (`refusal`), check the operands, `prepare` the input once (round
/// or quantize its rows; `()` for f32), then fill the (rows, out) output
/// by blocks of up to [`MC`] rows against one panel each, spread over the
/// pool when `parallel`.
///
/// # Safety
/// Once the CPU runs the kernel and the operands match (as this function
/// checks before any call), each call `block(prepared, row0, rows, panel,
/// out)` must write every element of its rows x panel block of `out`, a
/// (rows, out) row-major buffer, and nothing outside it.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn drive_linear<P: Sync>(
    refusal: Option<String>,
    x: &[f32],
    (in_dim, out_dim): (usize, usize),
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: &Epilogue,
    parallel: bool,
    prepare: impl FnOnce() -> P,
    block: impl Fn(&P, usize, usize, usize, SharedOut) + Sync,
) -> Result<Vec<f32>, OperandError> {
    if let Some(refusal) = refusal {
        return Err(OperandError(refusal));
    }
    check_linear_operands(x, (in_dim, out_dim), bias, rows, epilogue)?;
    let prepared = prepare();
    let block = |row0, block_rows, panel, out| block(&prepared, row0, block_rows, panel, out);
    // SAFETY: each block writes exactly its own elements (this function's
    // contract), the checks above having passed.
    Ok(unsafe { blocked_output(rows, out_dim, MC, parallel, block) })
}

/// Multiply-adds below which a matmul runs on one thread: handing work to
/// another thread costs microseconds, which a product this small does not
/// repay.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Runs `task(i)` for every i in 0..n on the kernels' pool ([`pool`]).
pub(crate) fn parallel_for(n: usize, task: impl Fn(usize) + Sync) {
    pool::pool().execute_chunked(n, |range| range.for_each(&task));
}

/// The multiply-adds of a (rows, in) · (in, out) product, saturating: the
/// linear entry points size their threads by it before their kernels check
/// the operands, so no row count may make it overflow.
pub(crate) fn linear_macs(rows: usize, in_dim: usize, out_dim: usize) -> usize {
    rows.saturating_mul(in_dim).saturating_mul(out_dim)
}

/// Whether a product is big enough for its work to be spread over threads.
pub(crate) fn worth_parallel(macs: usize) -> bool {
    thread_count() > 1 && macs >= PARALLEL_MIN_MACS
}

/// The threads a parallel step runs on.
pub(crate) fn thread_count() -> usize {
    pool::pool().threads()
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
pub(crate) unsafe fn matmul(
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
    // SAFETY: the caller guarantees every addressed element is in bounds
    // and that no other thread writes `dst`'s elements.
    unsafe {
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
        )
    };
}
/// Depth of one pass over a panel, so a panel's slice (KC x 32 floats,
/// 48 KiB) and the activation block it meets stay in L1/L2 between tiles.
pub(crate) const KC: usize = 384;

/// Rows per parallel task, split into register tiles of at most TILE_ROWS:
/// an activation block (MC x KC) that fits in L2 next to the panel.
pub(crate) const MC: usize = 96;

/// Packs a (k, n) right operand, element (p, j) at `src + p * p_stride +
/// j * j_stride`, into `panels` as the GEMM reads weights: panel after
/// panel of 32 columns, each (k, 32) row-major, the last zero-padded.
/// Attention's kᵀ (p a head dimension, j a key) and v (p a key, j a head
/// dimension) are both strided views of the fused projection.
///
/// # Safety
/// Every (p, j) with p < k, j < n must be readable at `src`'s offsets.
pub(crate) unsafe fn pack_operand(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiles cover the rows exactly, in order, each 1 to the height
    /// asked for (by_tile_rows! has no arm beyond MAX_TILE_ROWS), and as
    /// evenly as the fewest tiles allow.
    #[test]
    fn register_tiles_cover_the_rows_evenly_within_the_height() {
        for height in 1..=MAX_TILE_ROWS {
            for rows in 0..100 {
                let tiles: Vec<_> = register_tiles(7, rows, height).collect();
                let mut next = 7;
                for &(row, tile_rows) in &tiles {
                    assert_eq!(row, next, "{rows} rows, height {height}: {tiles:?}");
                    assert!((1..=height).contains(&tile_rows), "{tiles:?}");
                    next += tile_rows;
                }
                assert_eq!(next, 7 + rows);
                assert_eq!(tiles.len(), rows.div_ceil(height), "{tiles:?}");
                let (low, high) = tiles
                    .iter()
                    .fold((usize::MAX, 0), |(lo, hi), t| (lo.min(t.1), hi.max(t.1)));
                assert!(tiles.len() < 2 || high - low <= tiles.len(), "{tiles:?}");
            }
        }
    }
}
