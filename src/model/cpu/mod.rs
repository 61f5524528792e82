//! CPU fast paths for the forward pass, called with the tensors' f32
//! buffers directly so each step picks its own parallelism:
//!
//! - [`linear_packed`]: weights packed once at load into panels of 32 output
//!   columns, multiplied by our AVX-512 kernel (`avx512.rs`) with the bias,
//!   residual and activation applied before the tile is stored, by its
//!   256-bit twin (`avx2.rs`) on CPUs without AVX-512 or where 256-bit
//!   measures faster (`width.rs`), or by the gemm crate on other CPUs;
//!   work is spread over threads unless the product is too small to repay
//!   a wake-up;
//! - [`linear_int8`]: the same with int8 weights on AVX-512 VNNI or AVX2
//!   (`int8/`);
//! - [`linear_bf16`]: the same with bf16 weights on AVX512_BF16 (`bf16.rs`);
//! - [`attention`]: every (sequence, head) pair is one task, reading q, k
//!   and v in place from the fused QKV projection and writing its context
//!   straight into the (batch, seq, dim) output, with no permute or
//!   contiguous copies; its products on the linears' register tiles
//!   (AVX-512 or AVX2), or the gemm crate on other CPUs;
//! - [`layer_norm`]: rows, vectorised, spread over threads when many.
//!
//! Other devices and dtypes take candle's generic ops instead (see callers).
//!
//! Every public function here is safe for any input: it checks the lengths
//! of its operands against the dimensions it is given (and the CPU features
//! it needs) and returns an [`OperandError`] instead of touching memory it
//! does not own. The `unsafe` inner kernels state their preconditions in a
//! `# Safety` section, and each call site says why they hold. This module is
//! not public API (benches reach it through `sentiment::unstable_kernels`).

use candle_core::{CpuStorage, Layout, Storage, Tensor};

use super::config::Activation;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
#[cfg(target_arch = "x86_64")]
pub mod int8;
mod width;

pub use width::{linear_kernel, width_choice, LinearKernel, WidthChoice};

use gemm::Parallelism;

/// Operands whose lengths do not match the dimensions a kernel was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel operands do not match: {0}")]
pub struct OperandError(String);

impl From<OperandError> for candle_core::Error {
    fn from(err: OperandError) -> Self {
        candle_core::Error::Msg(err.to_string())
    }
}

/// `Ok` when `len` is exactly `dims` multiplied out (without overflow).
fn expect_len(what: &str, len: usize, dims: &[usize]) -> Result<(), OperandError> {
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

/// Which CPU code the model runs, from `SENTIMENT_KERNELS` (read once):
/// unset, our fastest kernels for this CPU; `portable`, the kernels a CPU
/// without AVX-512 runs (our AVX2 ones where the CPU has AVX2 and FMA), to
/// measure what AVX2 users get; `generic`, none of this module: candle's
/// device-generic ops, the path CUDA and Metal take, so CI checks that
/// path's numerics on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelChoice {
    Fastest,
    Portable,
    Generic,
}

pub fn kernel_choice() -> KernelChoice {
    static CHOICE: std::sync::OnceLock<KernelChoice> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var("SENTIMENT_KERNELS").as_deref() {
        Ok("portable") => KernelChoice::Portable,
        Ok("generic") => KernelChoice::Generic,
        _ => KernelChoice::Fastest,
    })
}

/// Whether only portable kernels may run (see [`kernel_choice`]).
pub fn portable_forced() -> bool {
    kernel_choice() != KernelChoice::Fastest
}

/// The bf16 kernel this CPU runs: `vdpbf16ps` where it has AVX512_BF16
/// and the kernel passes its start-up check against the emulation
/// ([`bf16::native_kernel_verified`]); elsewhere none (bf16 then runs as
/// f32), unless `SENTIMENT_BF16=emulate` asks for the AVX-512F emulation,
/// which gives bf16's numerics at f32's speed (to measure bf16's accuracy
/// on any AVX-512 CPU). Read at each model load.
#[cfg(target_arch = "x86_64")]
pub fn bf16_kernel() -> Option<bf16::Kernel> {
    if bf16::native_kernel_verified() {
        return Some(bf16::Kernel::Native);
    }
    let emulate = std::env::var("SENTIMENT_BF16").is_ok_and(|v| v == "emulate");
    (emulate && bf16::Kernel::Emulated.available()).then_some(bf16::Kernel::Emulated)
}

/// Whether int8 layers run on one of our kernels ([`int8`]: AVX-512 VNNI
/// or AVX2); elsewhere (other architectures, `SENTIMENT_KERNELS=generic`)
/// they take candle's portable Q8_0 kernels.
pub fn native_int8() -> bool {
    #[cfg(target_arch = "x86_64")]
    return kernel_choice() != KernelChoice::Generic && int8::Kernel::best().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The name of the kernel int8 layers run on this CPU: `vnni`, `avx2`
/// (see [`int8::Kernel`]) or `candle Q8_0`.
pub fn int8_kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if kernel_choice() != KernelChoice::Generic {
        match int8::Kernel::best() {
            Some(int8::Kernel::Vnni) => return "vnni",
            Some(int8::Kernel::Avx2) => return "avx2",
            None => {}
        }
    }
    "candle Q8_0"
}

/// Multiply-adds below which a matmul runs on one thread: handing work to
/// another thread costs microseconds, which a product this small does not
/// repay.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Runs `task(i)` for every i in 0..n on candle's persistent thread pool.
/// Its workers spin for a while between calls and the calling thread takes
/// a share, so the dozens of parallel steps in one forward pass cost no
/// sleep/wake-up each: with rayon, futex and sched_yield were a quarter of
/// a 14-token forward pass.
fn parallel_for(n: usize, task: impl Fn(usize) + Sync) {
    candle_core::utils::barrier_pool().execute_chunked(n, |range| range.for_each(&task));
}

/// The f32 buffer of a contiguous CPU tensor, passed to `f`. None for any
/// other tensor, and for every tensor under `SENTIMENT_KERNELS=generic`:
/// callers then take candle's generic ops.
pub fn with_cpu_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if kernel_choice() == KernelChoice::Generic {
        return None;
    }
    let (storage, layout): (_, &Layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => Some(f(&data[start..end])),
        _ => None,
    }
}

/// The multiply-adds of a (rows, in) · (in, out) product, saturating: the
/// linear entry points size their threads by it before their kernels check
/// the operands, so no row count may make it overflow.
fn linear_macs(rows: usize, in_dim: usize, out_dim: usize) -> usize {
    rows.saturating_mul(in_dim).saturating_mul(out_dim)
}

/// Whether a product is big enough for its work to be spread over threads.
fn worth_parallel(macs: usize) -> bool {
    thread_count() > 1 && macs >= PARALLEL_MIN_MACS
}

/// candle's thread count, read once: without RAYON_NUM_THREADS set, each
/// `get_num_threads` call parses /proc/cpuinfo (num_cpus), which cost
/// more than a 14-token linear layer. `--threads` sets the variable before
/// the first forward pass, so caching it is safe.
fn thread_count() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
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

/// Output columns per packed panel: the AVX-512 microkernel's width (two
/// 16-lane vectors).
const PANEL: usize = 32;

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

/// `epilogue(x · Wᵀ + bias)` for `x` (rows, in), with W packed by
/// [`PackedWeights::pack`]. x86 CPUs with AVX-512 or AVX2 take our own
/// kernel of the width [`linear_kernel`] chose; others the gemm crate, one
/// call per panel, with the epilogue as a second pass.
pub fn linear_packed(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
) -> Result<Vec<f32>, OperandError> {
    // Each kernel checks the operands (and its CPU features) itself.
    let parallel = worth_parallel(linear_macs(rows, weights.in_dim, weights.out_dim));
    match linear_kernel() {
        #[cfg(target_arch = "x86_64")]
        LinearKernel::Avx512 => avx512::linear(x, weights, bias, rows, epilogue, parallel),
        #[cfg(target_arch = "x86_64")]
        LinearKernel::Avx2 => avx2::linear(x, weights, bias, rows, epilogue, parallel),
        _ => linear_portable(x, weights, bias, rows, epilogue, parallel),
    }
}

/// [`linear_packed`] on CPUs without our kernels (x86 without AVX2 and
/// FMA, ARM): the gemm crate (which picks NEON, AVX2 or scalar kernels
/// itself), one call per panel.
fn linear_portable(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
) -> Result<Vec<f32>, OperandError> {
    let (in_dim, out_dim) = (weights.in_dim, weights.out_dim);
    check_linear_operands(x, (in_dim, out_dim), bias, rows, &epilogue)?;
    let mut out = match bias {
        Some(bias) => bias.repeat(rows),
        None => vec![0f32; rows * out_dim],
    };
    let shared = SharedOut(out.as_mut_ptr());
    let panel = |index: usize| {
        let start = index * PANEL;
        let width = PANEL.min(out_dim - start);
        // SAFETY: the operands were checked above: x is (rows, in), out is
        // (rows, out), and the panel's block holds in*PANEL values; its
        // output columns start..start+width of every row belong to this
        // panel alone.
        unsafe {
            matmul(
                (rows, width, in_dim),
                shared.ptr().add(start),
                out_dim,
                bias.is_some(),
                x.as_ptr(),
                in_dim,
                weights.data.as_ptr().add(start * in_dim),
                PANEL as isize,
                1,
            );
        }
    };
    let panels = out_dim.div_ceil(PANEL);
    if parallel {
        parallel_for(panels, panel);
    } else {
        (0..panels).for_each(panel);
    }
    if let Some(residual) = epilogue.residual {
        out.iter_mut().zip(residual).for_each(|(o, r)| *o += r);
    }
    if let Some(activation) = epilogue.activation {
        out.iter_mut().for_each(|v| *v = activate(activation, *v));
    }
    Ok(out)
}

/// [`linear_packed`] on the 256-bit kernel whatever the width choice (see
/// [`avx2`]), to compare the widths; x86-64 with AVX2 and FMA only:
/// elsewhere an error.
#[cfg(target_arch = "x86_64")]
pub fn linear_avx2(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
) -> Result<Vec<f32>, OperandError> {
    let parallel = worth_parallel(linear_macs(rows, weights.in_dim, weights.out_dim));
    avx2::linear(x, weights, bias, rows, epilogue, parallel)
}

/// [`linear_packed`] with int8 weights (see [`int8`]); x86-64 CPUs that
/// run the kernel the weights are packed for only: elsewhere an error (see
/// [`int8::Kernel::available`]).
#[cfg(target_arch = "x86_64")]
pub fn linear_int8(
    x: &[f32],
    weights: &int8::PackedInt8,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
) -> Result<Vec<f32>, OperandError> {
    let parallel = worth_parallel(linear_macs(rows, weights.in_dim(), weights.out_dim()) / 4);
    int8::linear(x, weights, bias, rows, epilogue, parallel)
}

/// [`linear_packed`] with bf16 weights (see [`bf16`]); x86-64 with the
/// kernel's instructions only: elsewhere an error.
#[cfg(target_arch = "x86_64")]
pub fn linear_bf16(
    x: &[f32],
    weights: &bf16::PackedBf16,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    kernel: bf16::Kernel,
) -> Result<Vec<f32>, OperandError> {
    let parallel = worth_parallel(linear_macs(rows, weights.in_dim(), weights.out_dim()) / 2);
    bf16::linear(x, weights, bias, rows, epilogue, parallel, kernel)
}

/// LayerNorm over rows of `weight.len()` values, as torch computes it:
/// mean, then the biased variance of the centred values. Rows are spread
/// over the pool when there are enough of them to repay it. `x` must hold
/// whole rows, and `bias` one value per column.
pub fn layer_norm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Result<Vec<f32>, OperandError> {
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
    let vectorised = avx512::available();
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
                unsafe { avx512::layer_norm_row(row, weight, bias, eps, out_row) };
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

/// The operand lengths every linear kernel relies on for its unchecked
/// accesses: x is (rows, in), bias (out), a residual (rows, out).
fn check_linear_operands(
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

/// One value through an activation, as the portable kernels apply it.
pub fn activate(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_tanh(x),
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
    }
}

/// √(2/π), the tanh GELU's inner scale.
pub(crate) const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// The tanh GELU's cubic coefficient.
pub(crate) const GELU_CUBIC: f32 = 0.044_715;

/// The vector exps (`avx512.rs`, `avx2.rs`) reduce x = n·ln2 + r with ln 2
/// in two parts, so n·ln2 is exact to f32 precision: this the high part...
pub(crate) const LN2_HIGH: f32 = 0.693_145_75;
/// ...and this the low one.
pub(crate) const LN2_LOW: f32 = 1.428_606_8e-6;
/// e^r for |r| <= ln2/2 by its Taylor series to r^7 (error < 1e-8
/// relative): Horner's coefficients, from 1/7! down.
pub(crate) const EXP_TAYLOR: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// GELU's tanh approximation, HF's "gelu_new" / "gelu_pytorch_tanh":
/// x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))).
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = SQRT_2_OVER_PI * x.mul_add(GELU_CUBIC * x * x, x);
    0.5 * x * (1.0 + inner.tanh())
}

/// GELU(x) = x/2 · (1 + erf(x/√2)), HF's "gelu".
pub fn gelu(x: f32) -> f32 {
    let half_x = 0.5 * x;
    half_x.mul_add(erf(x * std::f32::consts::FRAC_1_SQRT_2), half_x)
}

/// erf as a rational function, Eigen's `generic_fast_erf_float` (also in
/// XLA): within a few ulp of the true erf in f32, branch-free so it
/// vectorises, and far cheaper than libm's erff, which took 10% of a
/// forward pass.
pub fn erf(x: f32) -> f32 {
    use erf_coefficients::{ALPHA, BETA};
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = x * ALPHA[1..].iter().fold(ALPHA[0], |p, &a| x2.mul_add(p, a));
    let q = BETA[1..].iter().fold(BETA[0], |q, &b| x2.mul_add(q, b));
    p / q
}

/// Numerator (odd powers 13, 11, ..., 1) and denominator (even powers 8,
/// 6, ..., 0) of [`erf`], highest power first. Beyond |x| = 4 erf is ±1 in
/// f32, hence the clamp.
mod erf_coefficients {
    pub const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_1e-3,
        -1.609_603_3e-2,
    ];
    pub const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_474e-2,
    ];
}

/// A raw pointer that parallel tasks may share; each task writes a disjoint
/// set of elements through it.
struct SharedOut<T = f32>(*mut T);
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
    fn ptr(self) -> *mut T {
        self.0
    }
}

/// The most rows a register tile may have: 14 rows x 2 vectors = 28
/// accumulators, leaving registers for two weight vectors and a broadcast
/// (the 32 zmm registers). Each kernel picks its own height up to this
/// (`TILE_ROWS` in avx512.rs, int8.rs and bf16.rs), and [`by_tile_rows`]
/// dispatches every height up to it.
const MAX_TILE_ROWS: usize = 14;

/// The register tiles of the `rows` rows from `row0`, as (first row, rows):
/// split evenly over the fewest tiles of at most `tile_rows` (14 = 7 + 7
/// under 12, not 12 + 2), since a thin tile does little work per weight
/// load. Every tile has 1 to `tile_rows` rows.
fn register_tiles(
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
use by_tile_rows;

/// A (rows, n) f32 output made by blocks: `block(row0, rows, panel, out)`
/// for every block of up to `max_rows` rows against every panel of PANEL
/// columns, spread over the pool when `parallel`. The output starts
/// uninitialised for the blocks to fill (zeroing it was 5% of a batch pass).
///
/// # Safety
/// Each call of `block` must write every element of its rows x panel block
/// of `out`, a (rows, n) row-major buffer, and nothing outside that block.
unsafe fn blocked_output(
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
) -> Result<Vec<f32>, OperandError> {
    let kernel = AttentionKernel::for_this_cpu();
    attention_on(kernel, qkv, mask_bias, (batch, seq), (n_heads, head_dim))
}

/// [`attention`] on the given kernel, which the CPU must run (callers pick
/// it with [`AttentionKernel::for_this_cpu`], tests each available one).
fn attention_on(
    kernel: AttentionKernel,
    qkv: &[f32],
    mask_bias: &[f32],
    (batch, seq): (usize, usize),
    (n_heads, head_dim): (usize, usize),
) -> Result<Vec<f32>, OperandError> {
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
    qkv: &[f32],
    lengths: &[usize],
    n_heads: usize,
    head_dim: usize,
) -> Result<Vec<f32>, OperandError> {
    let kernel = AttentionKernel::for_this_cpu();
    attention_unpadded_on(kernel, qkv, lengths, n_heads, head_dim)
}

/// [`attention_unpadded`] on the given kernel, which the CPU must run.
fn attention_unpadded_on(
    kernel: AttentionKernel,
    qkv: &[f32],
    lengths: &[usize],
    n_heads: usize,
    head_dim: usize,
) -> Result<Vec<f32>, OperandError> {
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

/// What attention's two products run on: our register tiles, with kᵀ and v
/// packed as panels (AVX-512, or AVX2 on CPUs without it), or the gemm
/// crate (x86 without AVX2, and other architectures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttentionKernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Gemm,
}

impl AttentionKernel {
    /// The fastest this CPU runs (`SENTIMENT_KERNELS=portable` rules out
    /// AVX-512, not AVX2, as for the linears).
    fn for_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                return Self::Avx512;
            }
            if avx2::available() {
                return Self::Avx2;
            }
        }
        Self::Gemm
    }

    /// Whether this CPU runs it.
    #[cfg(test)]
    fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2::available(),
            Self::Gemm => true,
        }
    }
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
    kernel: AttentionKernel,
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
        #[cfg(not(target_arch = "x86_64"))]
        let AttentionKernel::Gemm = kernel;
        #[cfg(target_arch = "x86_64")]
        {
            let products: Option<TileAttention> = match kernel {
                AttentionKernel::Avx512 => Some((avx512::small_product, avx512::softmax_with_bias)),
                AttentionKernel::Avx2 => Some((avx2::small_product, avx2::softmax_with_bias)),
                AttentionKernel::Gemm => None,
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
            softmax_with_bias(scores_row, bias);
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
    candle_core::utils::barrier_pool().execute_chunked(spans.len() * n_heads, |tasks| {
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
/// on AVX2 see the README ("A portable figure").
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
        avx512::pack_operand(&mut scratch.keys, k, (head_dim, len), 1, qkv_stride);
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
        avx512::pack_operand(&mut scratch.values, v, (len, head_dim), qkv_stride, 1);
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

    /// erf in f64 by its Maclaurin series, exact to ~1e-10 for |x| <= 4
    /// (beyond, erf is 1 - 1.5e-8 or closer: 1.0 in f32).
    fn erf_reference(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

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

    /// Both attention entry points, on every attention kernel this CPU
    /// runs, against an f64 reference: key counts around the 32-wide panels
    /// and their 16-wide halves and past one 384-deep pass, head sizes that
    /// fill no panel, padding.
    #[test]
    fn attention_matches_an_f64_reference_padded_and_unpadded() {
        #[cfg(target_arch = "x86_64")]
        let kernels = [
            AttentionKernel::Avx512,
            AttentionKernel::Avx2,
            AttentionKernel::Gemm,
        ];
        #[cfg(not(target_arch = "x86_64"))]
        let kernels = [AttentionKernel::Gemm];
        for kernel in kernels.into_iter().filter(|k| k.available()) {
            attention_matches_an_f64_reference_on(kernel);
        }
    }

    fn attention_matches_an_f64_reference_on(kernel: AttentionKernel) {
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
            let padded = attention_on(kernel, &qkv, &mask, shape.0, shape.1).unwrap();
            // The same sequences end to end.
            let packed: Vec<f32> = lengths
                .iter()
                .enumerate()
                .flat_map(|(b, &len)| &qkv[b * seq * 3 * dim..(b * seq + len) * 3 * dim])
                .copied()
                .collect();
            let unpadded =
                attention_unpadded_on(kernel, &packed, &lengths, n_heads, head_dim).unwrap();
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

    #[test]
    fn rational_erf_is_within_f32_rounding_of_erf() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (erf(x) as f64 - erf_reference(x.clamp(-4.0, 4.0) as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max |erf error| {worst}");
    }

    /// Both vector softmaxes (where this CPU runs them) against the scalar
    /// one, on rows that end mid-vector, with all-negative scores (lanes
    /// past the row must not raise the max), tiny weights near expf's
    /// underflow, and masked keys.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_softmax_matches_the_scalar_one_including_masked_keys() {
        type Softmax = fn(&mut [f32], &[f32]);
        let kernels: [(&str, bool, Softmax); 2] = [
            ("avx512", avx512::available(), avx512::softmax_with_bias),
            ("avx2", avx2::available(), avx2::softmax_with_bias),
        ];
        for (name, _, softmax) in kernels.into_iter().filter(|k| k.1) {
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
                softmax_with_bias(&mut scalar, &bias);
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

    /// A row count whose product with the layer's dimensions overflows is
    /// refused like any other mismatch, not a panic: the entry points
    /// multiply rows by the dimensions to decide on threads before their
    /// kernels check the operands (overflow checks are on in debug builds).
    #[test]
    fn linear_entry_points_refuse_overflowing_row_counts() {
        let packed = PackedWeights::pack(&[1.0; 4], 2, 2).unwrap();
        let (x, rows) = ([0f32; 4], usize::MAX / 2);
        assert!(linear_packed(&x, &packed, None, rows, Epilogue::default()).is_err());
        #[cfg(target_arch = "x86_64")]
        {
            assert!(linear_avx2(&x, &packed, None, rows, Epilogue::default()).is_err());
            for kernel in [int8::Kernel::Vnni, int8::Kernel::Avx2] {
                let int8 = int8::PackedInt8::from_f32(&packed, kernel);
                assert!(linear_int8(&x, &int8, None, rows, Epilogue::default()).is_err());
            }
            let bf16 = bf16::PackedBf16::from_f32(&packed);
            for kernel in [bf16::Kernel::Native, bf16::Kernel::Emulated] {
                let got = linear_bf16(&x, &bf16, None, rows, Epilogue::default(), kernel);
                assert!(got.is_err());
            }
        }
    }

    /// Deterministic inputs, weights, bias and residual for a linear layer.
    fn operands(rows: usize, in_dim: usize, out_dim: usize) -> [Vec<f32>; 4] {
        let x = (0..rows * in_dim).map(|i| ((i * 37 % 101) as f32 - 40.0) / 50.0);
        let w = (0..out_dim * in_dim).map(|i| ((i * 53 % 97) as f32 - 48.0) / 200.0);
        let bias = (0..out_dim).map(|o| o as f32 / 10.0 - 1.0);
        let residual = (0..rows * out_dim).map(|i| (i % 13) as f32 / 13.0);
        [x.collect(), w.collect(), bias.collect(), residual.collect()]
    }

    /// The AVX2 and AVX-512 kernels sum every output in the same order
    /// (one FMA per depth step, passes of the same depth) and finish it
    /// with the same formulas, so a model's logits do not depend on which
    /// of the two a CPU runs (tanh aside: the AVX-512 epilogue has its own).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_and_avx512_linears_are_bit_identical() {
        if !(avx2::available() && is_x86_feature_detected!("avx512f")) {
            eprintln!("skipped: this CPU lacks AVX2+FMA or AVX-512");
            return;
        }
        for (rows, in_dim, out_dim) in [(1, 8, 3), (6, 24, 16), (29, 400, 70), (100, 800, 96)] {
            let [x, w, bias, residual] = operands(rows, in_dim, out_dim);
            let packed = PackedWeights::pack(&w, out_dim, in_dim).unwrap();
            for activation in [None, Some(Activation::Gelu), Some(Activation::Relu)] {
                let epilogue = Epilogue {
                    residual: Some(&residual),
                    activation,
                };
                let wide = avx512::linear(&x, &packed, Some(&bias), rows, epilogue, true);
                let narrow = avx2::linear(&x, &packed, Some(&bias), rows, epilogue, true);
                let (wide, narrow) = (wide.unwrap(), narrow.unwrap());
                let differing = wide
                    .iter()
                    .zip(&narrow)
                    .filter(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(
                    differing.count(),
                    0,
                    "{rows}x{in_dim}x{out_dim} {activation:?}"
                );
            }
        }
    }

    /// Shapes that leave partial quads, tiles (of 14 and 6 rows), half
    /// panels and panels, and several row blocks (96, 96, 8).
    #[cfg(target_arch = "x86_64")]
    const INT8_SHAPES: [(usize, usize, usize); 8] = [
        (1, 6, 3),
        (13, 384, 70),
        (14, 64, 40),
        (30, 1536, 96),
        (200, 67, 40),
        (97, 8, 33),
        (11, 13, 20),
        (7, 770, 48),
    ];

    /// The int8 forms of a linear on every kernel this CPU runs: (kernel,
    /// exact f32 output, int8 output), with the residual and GELU epilogue.
    #[cfg(target_arch = "x86_64")]
    fn int8_outputs(
        (rows, in_dim, out_dim): (usize, usize, usize),
    ) -> Vec<(int8::Kernel, Vec<f32>, Vec<f32>)> {
        let [x, w, bias, residual] = operands(rows, in_dim, out_dim);
        let epilogue = Epilogue {
            residual: Some(&residual),
            activation: Some(Activation::Gelu),
        };
        let f32_weights = PackedWeights::pack(&w, out_dim, in_dim).unwrap();
        let exact = linear_packed(&x, &f32_weights, Some(&bias), rows, epilogue).unwrap();
        [int8::Kernel::Vnni, int8::Kernel::Avx2]
            .into_iter()
            .filter(|kernel| kernel.available())
            .map(|kernel| {
                let packed = int8::PackedInt8::from_f32(&f32_weights, kernel);
                let got = linear_int8(&x, &packed, Some(&bias), rows, epilogue).unwrap();
                (kernel, exact.clone(), got)
            })
            .collect()
    }

    /// int8 is approximate by design: each output within 1% of the row's
    /// largest exact output, on every int8 kernel this CPU runs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn int8_linear_is_within_quantization_error_of_f32() {
        for (rows, in_dim, out_dim) in INT8_SHAPES {
            for (kernel, exact, got) in int8_outputs((rows, in_dim, out_dim)) {
                for (r, (want_row, got_row)) in
                    exact.chunks(out_dim).zip(got.chunks(out_dim)).enumerate()
                {
                    let scale = want_row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (o, (want, got)) in want_row.iter().zip(got_row).enumerate() {
                        assert!(
                            (want - got).abs() <= 0.01 * scale,
                            "{kernel:?} {rows}x{in_dim}x{out_dim} [{r},{o}]: {got} vs {want} \
                             (row max {scale})"
                        );
                    }
                }
            }
        }
    }

    /// The AVX2 int8 kernel quantizes alike and sums exactly, as VNNI does,
    /// so the two give the same bits (where this CPU runs both): int8's
    /// measured accuracy holds on either.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_and_vnni_int8_linears_are_bit_identical() {
        for shape in INT8_SHAPES {
            let outputs = int8_outputs(shape);
            if let [(_, _, vnni), (_, _, avx2)] = &outputs[..] {
                let differing = vnni
                    .iter()
                    .zip(avx2)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(differing, 0, "{shape:?}: {} values", vnni.len());
            }
        }
    }

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
            for got in [layer_norm(&row, &weight, &bias, 1e-12).unwrap(), portable] {
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((*g as f64 - w).abs() < 1e-5, "dim {dim} [{j}]: {g} vs {w}");
                }
            }
        }
    }

    /// Every shape the kernel splits differently: row counts around the
    /// tile height, widths that leave a partial panel, depths over a pass.
    #[test]
    fn packed_linear_matches_a_naive_product_with_every_epilogue() {
        for (rows, in_dim, out_dim) in [
            (1, 8, 3),
            (7, 33, 40),
            (13, 384, 64),
            (14, 384, 64),
            (29, 400, 70),
            (6, 24, 16),
            (5, 17, 8),
            (200, 800, 50),
        ] {
            let [x, w, bias, residual] = operands(rows, in_dim, out_dim);
            let packed = PackedWeights::pack(&w, out_dim, in_dim).unwrap();
            assert_eq!(packed.unpack(), w);
            for activation in [
                None,
                Some(Activation::Gelu),
                Some(Activation::GeluTanh),
                Some(Activation::Relu),
                Some(Activation::Tanh),
            ] {
                let epilogue = Epilogue {
                    residual: Some(&residual),
                    activation,
                };
                // The dispatched kernel (AVX-512 here), the AVX2 one and the
                // gemm crate's, which this machine would otherwise never run.
                let mut kernels = vec![
                    linear_packed(&x, &packed, Some(&bias), rows, epilogue).unwrap(),
                    linear_portable(&x, &packed, Some(&bias), rows, epilogue, false).unwrap(),
                ];
                #[cfg(target_arch = "x86_64")]
                if avx2::available() {
                    let avx2 = linear_avx2(&x, &packed, Some(&bias), rows, epilogue);
                    kernels.push(avx2.unwrap());
                }
                for (got, r, o) in kernels.iter().flat_map(|got| {
                    (0..rows).flat_map(move |r| (0..out_dim).map(move |o| (got, r, o)))
                }) {
                    let dot: f64 = (0..in_dim)
                        .map(|k| x[r * in_dim + k] as f64 * w[o * in_dim + k] as f64)
                        .sum();
                    let pre = (dot + bias[o] as f64 + residual[r * out_dim + o] as f64) as f32;
                    // The reference: f64 formulas, not the kernels' own.
                    let p = pre as f64;
                    let want = match activation {
                        Some(Activation::Gelu) => gelu(pre),
                        Some(Activation::GeluTanh) => {
                            let inner =
                                (2.0 / std::f64::consts::PI).sqrt() * (p + 0.044715 * p * p * p);
                            (0.5 * p * (1.0 + inner.tanh())) as f32
                        }
                        Some(Activation::Relu) => pre.max(0.0),
                        Some(Activation::Tanh) => p.tanh() as f32,
                        None => pre,
                    };
                    let got = got[r * out_dim + o];
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{rows}x{in_dim}x{out_dim} {activation:?} [{r},{o}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
