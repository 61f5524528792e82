//! bf16 linears (`--precision bf16`): weights stored as bf16, activations
//! rounded to bf16 on the fly, products summed in f32, then the f32
//! epilogue (bias, residual, activation) of the f32 kernel. LayerNorm,
//! softmax, attention and the residual stream stay f32.
//!
//! - Weights are rounded to nearest even once at load and packed in
//!   panels of 32 outputs x 2 inputs per 128 bytes: the operand layout of
//!   `vdpbf16ps`, which multiplies 32 bf16 pairs and adds them into 16 f32
//!   lanes in one instruction (2x the multiply-adds of an f32 FMA), at half
//!   the weight bytes.
//! - Activations are rounded to nearest even per row before the product;
//!   a row's bf16 values in order *are* its pairs, low half first.
//!
//! Two kernels share the packing and the tile loop:
//! - [`Kernel::Native`]: `vdpbf16ps`, on CPUs with AVX512_BF16 (Zen 4 and
//!   later, Cooper Lake, Sapphire Rapids and later);
//! - [`Kernel::Emulated`]: the same arithmetic with AVX-512F only: each
//!   bf16 widened to f32 (exact) and two FMAs in `vdpbf16ps`'s order (odd
//!   element, then even), so its results equal the native kernel's but for
//!   denormals, which `vdpbf16ps` flushes to zero. It is not faster than
//!   f32; it exists so that bf16's accuracy is tested on every AVX-512
//!   machine, CI's included, and it runs only when `SENTIMENT_BF16=emulate`
//!   asks for it (see `KernelOptions::bf16_emulation`).

use std::arch::x86_64::*;

use super::floor::zmm::{epilogue, masks, prefetch_panel, Output};
use super::floor::{
    by_tile_rows, drive_linear, register_tiles, Epilogue, OperandError, PackedWeights, SharedOut,
    PANEL,
};
/// Rows per register tile (see `MAX_TILE_ROWS`): 12, since the emulated
/// step needs scratch registers to widen the pairs, and the native kernel
/// cannot be timed on a CPU without AVX512_BF16 to justify more.
const TILE_ROWS: usize = 12;

/// Which instructions multiply the bf16 pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `vdpbf16ps` (AVX512_BF16).
    Native,
    /// AVX-512F FMAs on the widened values: bf16's numerics, f32's speed.
    Emulated,
}

impl Kernel {
    /// Whether this CPU has the instructions the kernel uses.
    pub fn available(self) -> bool {
        let base = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
        match self {
            Self::Native => base && is_x86_feature_detected!("avx512bf16"),
            Self::Emulated => base,
        }
    }
}

/// f32 to bf16, rounding to nearest even (NaN stays NaN).
pub fn to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// A weight matrix rounded to bf16 and packed for [`linear`].
#[derive(Debug)]
pub struct PackedBf16 {
    /// Panels of PANEL outputs; within one, for each pair of inputs, one
    /// u32 per output: the even input's bf16 in the low half, the odd one's
    /// in the high half (zero past `in_dim`).
    data: Vec<u32>,
    in_dim: usize,
    out_dim: usize,
}

impl PackedBf16 {
    /// Rounds f32 weights packed for the f32 kernel. Both layouts are
    /// panel-major with the same panel width, so panels convert on their own.
    pub fn from_f32(weights: &PackedWeights) -> Self {
        let (in_dim, out_dim) = (weights.in_dim(), weights.out_dim());
        let pairs = in_dim.div_ceil(2);
        let panels = out_dim.div_ceil(PANEL);
        let mut data = vec![0u32; panels * PANEL * pairs];
        for (panel, block) in data.chunks_exact_mut(PANEL * pairs).enumerate() {
            // (in, PANEL) f32, zero-padded past out_dim.
            let source = &weights.data()[panel * PANEL * in_dim..(panel + 1) * PANEL * in_dim];
            for (k, row) in source.chunks_exact(PANEL).enumerate() {
                let shift = 16 * (k % 2);
                let pair = &mut block[(k / 2) * PANEL..][..PANEL];
                for (slot, &w) in pair.iter_mut().zip(row) {
                    *slot |= u32::from(to_bf16(w)) << shift;
                }
            }
        }
        Self {
            data,
            in_dim,
            out_dim,
        }
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
}

/// Activations rounded to bf16, each row padded to whole pairs.
struct Bf16Rows {
    data: Vec<u16>,
    /// Values per row (even).
    stride: usize,
}

/// Rounds every row of `x` (rows, in_dim) to bf16, 16 values a step.
///
/// # Safety
/// The CPU must support avx512f, and `x` must hold `rows * in_dim` values.
#[target_feature(enable = "avx512f")]
unsafe fn round_rows(x: &[f32], rows: usize, in_dim: usize) -> Bf16Rows {
    let stride = in_dim.div_ceil(2) * 2;
    let mut data = vec![0u16; rows * stride];
    // SAFETY: avx512f is present (the caller's contract); loads are masked
    // to each row's in_dim values of x, stores to the same count inside
    // that row of `data` (rows * stride long).
    unsafe {
        let ones = _mm512_set1_epi32(1);
        let half = _mm512_set1_epi32(0x7fff);
        for r in 0..rows {
            let row = &x[r * in_dim..(r + 1) * in_dim];
            let out = data.as_mut_ptr().add(r * stride);
            for (chunk, values) in row.chunks(16).enumerate() {
                let mask = ((1u32 << values.len()) - 1) as __mmask16;
                let bits = _mm512_castps_si512(_mm512_maskz_loadu_ps(mask, values.as_ptr()));
                // Round to nearest even as `to_bf16` (NaN aside: activations
                // here are finite unless the weights are not).
                let odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), ones);
                let rounded =
                    _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(half, odd)), 16);
                _mm512_mask_cvtepi32_storeu_epi16(out.add(16 * chunk) as *mut i16, mask, rounded);
            }
        }
    }
    Bf16Rows { data, stride }
}

/// `out = epilogue(x · Wᵀ + bias)` in bf16 products with f32 sums. An
/// error on a CPU without the kernel's instructions (see
/// [`Kernel::available`]) or when the operands do not match.
pub fn linear(
    x: &[f32],
    weights: &PackedBf16,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
    kernel: Kernel,
) -> Result<Vec<f32>, OperandError> {
    let refusal = (!kernel.available())
        .then(|| format!("this CPU lacks the instructions of the {kernel:?} bf16 kernel"));
    let k = weights.in_dim;
    // SAFETY: drive_linear prepares only once the kernel's features
    // (avx512f among them) are present and x is (rows, k).
    let prepare = || unsafe { round_rows(x, rows, k) };
    let block = |rounded: &Bf16Rows, row0, block_rows, panel, out| {
        // SAFETY: drive_linear calls blocks only once the kernel's CPU
        // features are present and the operands match the weights; the
        // block's rows and the panel lie inside them, and no other task
        // writes this block.
        unsafe {
            run_tile(
                rounded, weights, bias, &epilogue, out, row0, block_rows, panel, kernel,
            )
        }
    };
    let dims = (weights.in_dim, weights.out_dim);
    // SAFETY: each block is one run_tile, which stores every element of its
    // rows x panel block (through the epilogue) and nothing else.
    unsafe {
        drive_linear(
            refusal, x, dims, bias, rows, &epilogue, parallel, prepare, block,
        )
    }
}

/// One task of [`linear`]: a block of up to `MC` rows against one panel, a
/// register tile at a time, each tile through the f32 epilogue once summed.
///
/// # Safety
/// The CPU must support `kernel`'s instructions (see [`Kernel::available`]);
/// `x` must hold the rounded rows of a (rows, in) input matching `weights`,
/// `bias` and the residual must match the output, `row0 + rows` and
/// `panel` must lie inside them, and no other thread may write this block
/// of `out`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn run_tile(
    x: &Bf16Rows,
    weights: &PackedBf16,
    bias: Option<&[f32]>,
    epilogue_of: &Epilogue,
    out: SharedOut,
    row0: usize,
    rows: usize,
    panel: usize,
    kernel: Kernel,
) {
    // SAFETY: the caller upholds # Safety: every tile below lies inside the
    // block, whose rows and panel are inside x, the weights and `out`.
    unsafe {
        let n = weights.out_dim;
        let pairs = x.stride / 2;
        let col0 = panel * PANEL;
        let mask = masks(PANEL.min(n - col0));
        let panel_data = weights.data.as_ptr().add(panel * PANEL * pairs);
        // A tile's sums, whole vectors (as in the int8 kernel: a masked
        // store into the output would not be forwarded to the epilogue's
        // reload).
        let mut sums = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
        for (row, tile_rows) in register_tiles(row0, rows, TILE_ROWS) {
            let output = Output::at(out, n, row, col0, bias, epilogue_of);
            let at = TileArgs {
                x: x.data.as_ptr().add(row * x.stride) as *const u32,
                x_stride: pairs,
                panel: panel_data,
                pairs,
                sums: sums.as_mut_ptr(),
            };
            match kernel {
                Kernel::Native => native_tile(tile_rows, &at),
                Kernel::Emulated => emulated_tile(tile_rows, &at),
            }
            epilogue(&output, &sums[..tile_rows], mask);
        }
    }
}

/// The corner of one register tile: `x` and the panel as u32 pairs.
struct TileArgs {
    x: *const u32,
    x_stride: usize,
    panel: *const u32,
    pairs: usize,
    /// Where the tile's R rows of two sum vectors go.
    sums: *mut [__m512; 2],
}

/// Defines one microkernel, R rows x 32 outputs of f32 sums stored in
/// `at.sums`, and its dispatcher over R = 1..=12. The two kernels
/// differ only in `$features` and in `$step`, which adds one pair of row `x`
/// (a u32: two bf16) times one vector of 16 weight pairs into `acc`.
macro_rules! microkernels {
    ($dispatch:ident, $kernel:ident, $features:literal, $step:expr) => {
        /// # Safety
        /// As for the microkernel.
        #[target_feature(enable = $features)]
        unsafe fn $dispatch(rows: usize, at: &TileArgs) {
            // SAFETY: the caller upholds the microkernel's contract.
            unsafe { by_tile_rows!(rows, $kernel(at)) }
        }

        /// R rows x 32 outputs of Σ x·w over all pairs.
        ///
        /// # Safety
        /// The CPU must support the features enabled here. `at.x` must be
        /// valid for R rows of `at.pairs` u32 `at.x_stride` apart,
        /// `at.panel` for `at.pairs` groups of 32 u32, and `at.sums` for R
        /// writes.
        #[target_feature(enable = $features)]
        unsafe fn $kernel<const R: usize>(at: &TileArgs) {
            // SAFETY: the caller upholds # Safety.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); 2]; R];
                let mut x_rows = [at.x; R];
                for (i, x_row) in x_rows.iter_mut().enumerate() {
                    *x_row = at.x.add(i * at.x_stride);
                }
                let mut w = at.panel;
                for p in 0..at.pairs {
                    prefetch_panel(w);
                    let w0 = _mm512_loadu_si512(w as *const __m512i);
                    let w1 = _mm512_loadu_si512(w.add(16) as *const __m512i);
                    w = w.add(PANEL);
                    // Index loops, as in the f32 kernel, so `acc` stays in registers.
                    #[allow(clippy::needless_range_loop)]
                    for i in 0..R {
                        let pair = x_rows[i].add(p).read_unaligned();
                        acc[i][0] = $step(acc[i][0], pair, w0);
                        acc[i][1] = $step(acc[i][1], pair, w1);
                    }
                }
                for (i, row) in acc.iter().enumerate() {
                    at.sums.add(i).write(*row);
                }
            }
        }
    };
}

microkernels!(
    native_tile,
    native_kernel,
    "avx512f,avx512bw,avx512bf16",
    native_step
);
microkernels!(
    emulated_tile,
    emulated_kernel,
    "avx512f,avx512bw",
    emulated_step
);

/// Whether `vdpbf16ps` computes on this CPU what the emulation computes,
/// checked once per process. The machines this kernel was written and
/// tested on (CI's included) lack AVX512_BF16, so its first run is on a
/// user's CPU: before bf16 is handed to it, its outputs on a probe block
/// must agree with the tested emulation's (`agrees_with_emulation`). It
/// costs one small product each way, microseconds; a CPU where the two
/// disagree runs f32 (see the kernel plan).
pub fn native_kernel_verified() -> bool {
    static VERIFIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERIFIED.get_or_init(|| {
        Kernel::Native.available() && agrees_with_emulation(probe_product(Kernel::Native))
    })
}

/// `kernel`'s linear as [`agrees_with_emulation`] calls it: the probe's
/// product plus bias, no epilogue, on the calling thread.
fn probe_product(
    kernel: Kernel,
) -> impl Fn(&[f32], &PackedBf16, &[f32], usize) -> Result<Vec<f32>, OperandError> {
    move |x, weights, bias, rows| {
        linear(
            x,
            weights,
            Some(bias),
            rows,
            Epilogue::default(),
            false,
            kernel,
        )
    }
}

/// Whether `candidate` agrees with the emulated kernel on a probe block of
/// 19 rows x 71 inputs x 45 outputs (a partial register tile, an odd depth,
/// a partial panel): every output within 1e-5 of the sum of its terms'
/// magnitudes (Σ|x·w| + |bias|). Summing the same exact products in
/// another order moves an output by at most 71 roundings of that sum (4e-6
/// of it); a wrong product, pair or panel moves it by a sizeable part.
fn agrees_with_emulation(
    candidate: impl Fn(&[f32], &PackedBf16, &[f32], usize) -> Result<Vec<f32>, OperandError>,
) -> bool {
    let (rows, in_dim, out_dim) = (19, 71, 45);
    if !Kernel::Emulated.available() {
        return false;
    }
    // Values well inside bf16's normal range: the one place the two
    // kernels may differ, denormals, is left out of the comparison.
    let value = |i: usize, scale: f32| ((i * 7919 % 211) as f32 / 211.0 - 0.4975) * scale;
    let x: Vec<f32> = (0..rows * in_dim).map(|i| value(i, 3.0)).collect();
    let w: Vec<f32> = (0..out_dim * in_dim).map(|i| value(i + 5, 0.2)).collect();
    let bias: Vec<f32> = (0..out_dim).map(|i| value(i + 11, 1.0)).collect();
    let Ok(packed) = PackedWeights::pack(&w, out_dim, in_dim) else {
        return false;
    };
    let packed = PackedBf16::from_f32(&packed);
    let reference = probe_product(Kernel::Emulated)(&x, &packed, &bias, rows);
    let (Ok(got), Ok(want)) = (candidate(&x, &packed, &bias, rows), reference) else {
        return false;
    };
    let widen = |v: f32| f32::from_bits(u32::from(to_bf16(v)) << 16);
    got.len() == want.len()
        && (0..rows * out_dim).all(|at| {
            let (r, o) = (at / out_dim, at % out_dim);
            let magnitude: f32 = (0..in_dim)
                .map(|k| (widen(x[r * in_dim + k]) * widen(w[o * in_dim + k])).abs())
                .sum::<f32>()
                + bias[o].abs();
            (got[at] - want[at]).abs() <= 1e-5 * magnitude
        })
}

/// `acc + x.hi·w.hi + x.lo·w.lo` per lane with `vdpbf16ps`.
///
/// # Safety
/// The CPU must support avx512f and avx512bf16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn native_step(acc: __m512, pair: u32, weights: __m512i) -> __m512 {
    let x = _mm512_set1_epi32(pair as i32);
    // SAFETY: __m512i and __m512bh are both 64 plain bytes; the bits are
    // reinterpreted as 32 bf16 values, which is what they hold.
    let (x, weights) = unsafe {
        (
            std::mem::transmute::<__m512i, __m512bh>(x),
            std::mem::transmute::<__m512i, __m512bh>(weights),
        )
    };
    _mm512_dpbf16_ps(acc, x, weights)
}

/// [`native_step`] with AVX-512F: each bf16 widened to f32 (a shift: exact),
/// the products exact in f32, added in `vdpbf16ps`'s order (odd, then even).
///
/// # Safety
/// The CPU must support avx512f.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn emulated_step(acc: __m512, pair: u32, weights: __m512i) -> __m512 {
    let x_odd = _mm512_set1_ps(f32::from_bits(pair & 0xffff_0000));
    let x_even = _mm512_set1_ps(f32::from_bits(pair << 16));
    let w_odd = _mm512_castsi512_ps(_mm512_and_si512(weights, _mm512_set1_epi32(-65536)));
    let w_even = _mm512_castsi512_ps(_mm512_slli_epi32(weights, 16));
    _mm512_fmadd_ps(x_even, w_even, _mm512_fmadd_ps(x_odd, w_odd, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: to the even one.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2^-8 is halfway too: up, to the even one.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0 + 1.0 / 65536.0), 0x3f81);
        assert_eq!(to_bf16(-2.0), 0xc000);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(to_bf16(f32::MAX), 0x7f80, "rounds up to infinity, as torch");
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
    }

    /// The start-up check passes the emulation itself, so a correct native
    /// kernel (which sums the same products in the same order) passes too.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "this CPU lacks AVX-512")]
    fn the_native_check_accepts_the_emulation() {
        assert!(agrees_with_emulation(probe_product(Kernel::Emulated)));
    }

    /// Kernels with the bugs a native kernel could have are refused: one
    /// that drops the last input pair, one that reads the wrong half of each
    /// pair for one column (a layout slip), one that fails, one that returns
    /// a short output.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "this CPU lacks AVX-512")]
    fn the_native_check_refuses_a_wrong_kernel() {
        let emulated = probe_product(Kernel::Emulated);
        let drops_the_last_pair = |x: &[f32], weights: &PackedBf16, bias: &[f32], rows: usize| {
            let in_dim = weights.in_dim;
            let mut x = x.to_vec();
            for row in x.chunks_exact_mut(in_dim) {
                row[(in_dim - 1) / 2 * 2..].fill(0.0);
            }
            emulated(&x, weights, bias, rows)
        };
        assert!(!agrees_with_emulation(drops_the_last_pair));
        let swaps_one_column = |x: &[f32], weights: &PackedBf16, bias: &[f32], rows: usize| {
            let mut swapped = PackedBf16 {
                data: weights.data.clone(),
                ..*weights
            };
            for pair in swapped.data.iter_mut().skip(3).step_by(PANEL) {
                *pair = pair.rotate_left(16);
            }
            emulated(x, &swapped, bias, rows)
        };
        assert!(!agrees_with_emulation(swaps_one_column));
        assert!(!agrees_with_emulation(|_, _, _, _| Err(OperandError(
            "refused".into()
        ))));
        assert!(!agrees_with_emulation(|x, weights, bias, rows| {
            emulated(x, weights, bias, rows).map(|mut out| {
                out.pop();
                out
            })
        }));
    }

    /// Where `vdpbf16ps` runs, it passes the check.
    #[test]
    #[cfg_attr(not(host_bf16), ignore = "this CPU lacks AVX512_BF16")]
    fn the_native_kernel_passes_its_check_where_it_runs() {
        assert!(native_kernel_verified());
    }

    /// A CPU without AVX512_BF16 never hands bf16 to `vdpbf16ps`.
    #[test]
    #[cfg_attr(host_bf16, ignore = "this CPU has AVX512_BF16")]
    fn without_avx512_bf16_the_native_kernel_is_never_verified() {
        assert!(!native_kernel_verified());
    }

    /// The kernels against a scalar sum of the same bf16 products.
    #[test]
    fn kernels_match_a_scalar_bf16_product() {
        let (rows, in_dim, out_dim) = (25, 37, 45);
        let value = |i: usize, scale: f32| ((i * 7919 % 211) as f32 / 211.0 - 0.5) * scale;
        let x: Vec<f32> = (0..rows * in_dim).map(|i| value(i, 3.0)).collect();
        let w: Vec<f32> = (0..out_dim * in_dim).map(|i| value(i + 5, 0.2)).collect();
        let bias: Vec<f32> = (0..out_dim).map(|i| value(i, 1.0)).collect();
        let widen = |v: f32| f32::from_bits(u32::from(to_bf16(v)) << 16);
        let mut expected = vec![0f32; rows * out_dim];
        for r in 0..rows {
            for o in 0..out_dim {
                let sum: f64 = (0..in_dim)
                    .map(|k| {
                        f64::from(widen(x[r * in_dim + k])) * f64::from(widen(w[o * in_dim + k]))
                    })
                    .sum();
                expected[r * out_dim + o] = sum as f32 + bias[o];
            }
        }
        let packed = PackedBf16::from_f32(&PackedWeights::pack(&w, out_dim, in_dim).unwrap());
        for kernel in [Kernel::Native, Kernel::Emulated] {
            if !kernel.available() {
                eprintln!("{kernel:?} bf16 kernel: not on this CPU");
                continue;
            }
            let out = linear(
                &x,
                &packed,
                Some(&bias),
                rows,
                Epilogue::default(),
                false,
                kernel,
            )
            .unwrap();
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{kernel:?}: {worst}");
        }
    }
}
