//! The linear layers' entry points: `epilogue(x · Wᵀ + bias)` on the
//! kernel a [`KernelPlan`](super::plan::KernelPlan) chose, with the work
//! spread over threads unless the product is too small to repay a wake-up.
//! Each kernel checks its operands and CPU features itself (through
//! the floor's `drive_linear`).

use super::floor::math::activate;
use super::floor::{
    check_linear_operands, linear_macs, matmul, parallel_for, worth_parallel, Epilogue,
    OperandError, PackedWeights, SharedOut, PANEL,
};
use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512, bf16, int8};

/// `epilogue(x · Wᵀ + bias)` for `x` (rows, in), with W packed by
/// [`PackedWeights::pack`], on `kernel`: ours on x86 CPUs with AVX-512 or
/// AVX2, elsewhere the gemm crate, one call per panel, with the epilogue
/// as a second pass. An error where the CPU lacks the kernel.
pub fn linear_packed(
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    kernel: Isa,
) -> Result<Vec<f32>, OperandError> {
    let parallel = worth_parallel(linear_macs(rows, weights.in_dim(), weights.out_dim()));
    linear_on(kernel, x, weights, bias, rows, epilogue, parallel)
}

/// [`linear_packed`], spread over the pool or not as `parallel` says.
pub(crate) fn linear_on(
    kernel: Isa,
    x: &[f32],
    weights: &PackedWeights,
    bias: Option<&[f32]>,
    rows: usize,
    epilogue: Epilogue,
    parallel: bool,
) -> Result<Vec<f32>, OperandError> {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::linear(x, weights, bias, rows, epilogue, parallel),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::linear(x, weights, bias, rows, epilogue, parallel),
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
    let (in_dim, out_dim) = (weights.in_dim(), weights.out_dim());
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
                weights.data().as_ptr().add(start * in_dim),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Activation;

    /// A row count whose product with the layer's dimensions overflows is
    /// refused like any other mismatch, not a panic: the entry points
    /// multiply rows by the dimensions to decide on threads before their
    /// kernels check the operands (overflow checks are on in debug builds).
    #[test]
    fn linear_entry_points_refuse_overflowing_row_counts() {
        let packed = PackedWeights::pack(&[1.0; 4], 2, 2).unwrap();
        let (x, rows) = ([0f32; 4], usize::MAX / 2);
        for kernel in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            assert!(linear_packed(&x, &packed, None, rows, Epilogue::default(), kernel).is_err());
        }
        #[cfg(target_arch = "x86_64")]
        {
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
    #[cfg_attr(
        not(all(host_avx512, host_avx2)),
        ignore = "this CPU lacks AVX-512 or AVX2+FMA"
    )]
    fn avx2_and_avx512_linears_are_bit_identical() {
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

    /// A linear's exact f32 output and its int8 output on `kernel`, with the
    /// residual and GELU epilogue.
    #[cfg(target_arch = "x86_64")]
    fn int8_output(
        kernel: int8::Kernel,
        (rows, in_dim, out_dim): (usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>) {
        let [x, w, bias, residual] = operands(rows, in_dim, out_dim);
        let epilogue = Epilogue {
            residual: Some(&residual),
            activation: Some(Activation::Gelu),
        };
        let f32_weights = PackedWeights::pack(&w, out_dim, in_dim).unwrap();
        let exact =
            linear_packed(&x, &f32_weights, Some(&bias), rows, epilogue, Isa::Portable).unwrap();
        let packed = int8::PackedInt8::from_f32(&f32_weights, kernel);
        let got = linear_int8(&x, &packed, Some(&bias), rows, epilogue).unwrap();
        (exact, got)
    }

    /// int8 is approximate by design: each output within 1% of the row's
    /// largest exact output.
    #[cfg(target_arch = "x86_64")]
    fn int8_within_quantization_error(kernel: int8::Kernel) {
        for (rows, in_dim, out_dim) in INT8_SHAPES {
            let (exact, got) = int8_output(kernel, (rows, in_dim, out_dim));
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(not(host_vnni), ignore = "this CPU lacks AVX-512 VNNI")]
    fn vnni_int8_linear_is_within_quantization_error_of_f32() {
        int8_within_quantization_error(int8::Kernel::Vnni);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(not(host_avx2), ignore = "this CPU lacks AVX2 and FMA")]
    fn avx2_int8_linear_is_within_quantization_error_of_f32() {
        int8_within_quantization_error(int8::Kernel::Avx2);
    }

    /// The AVX2 int8 kernel quantizes alike and sums exactly, as VNNI does,
    /// so the two give the same bits: int8's measured accuracy holds on
    /// either.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(
        not(all(host_vnni, host_avx2)),
        ignore = "this CPU lacks AVX-512 VNNI or AVX2"
    )]
    fn avx2_and_vnni_int8_linears_are_bit_identical() {
        for shape in INT8_SHAPES {
            let (_, vnni) = int8_output(int8::Kernel::Vnni, shape);
            let (_, avx2) = int8_output(int8::Kernel::Avx2, shape);
            let differing = vnni
                .iter()
                .zip(&avx2)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differing, 0, "{shape:?}: {} values", vnni.len());
        }
    }

    #[test]
    #[cfg_attr(not(host_avx512), ignore = "this CPU lacks AVX-512")]
    fn avx512_linear_matches_a_naive_product_with_every_epilogue() {
        matches_a_naive_product_with_every_epilogue(Isa::Avx512);
    }

    #[test]
    #[cfg_attr(not(host_avx2), ignore = "this CPU lacks AVX2 and FMA")]
    fn avx2_linear_matches_a_naive_product_with_every_epilogue() {
        matches_a_naive_product_with_every_epilogue(Isa::Avx2);
    }

    #[test]
    fn gemm_crate_linear_matches_a_naive_product_with_every_epilogue() {
        matches_a_naive_product_with_every_epilogue(Isa::Portable);
    }

    /// Every shape a kernel splits differently: row counts around the tile
    /// height, widths that leave a partial panel, depths over a pass.
    fn matches_a_naive_product_with_every_epilogue(kernel: Isa) {
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
                let got = linear_packed(&x, &packed, Some(&bias), rows, epilogue, kernel).unwrap();
                for (r, o) in (0..rows).flat_map(|r| (0..out_dim).map(move |o| (r, o))) {
                    let dot: f64 = (0..in_dim)
                        .map(|k| x[r * in_dim + k] as f64 * w[o * in_dim + k] as f64)
                        .sum();
                    let pre = (dot + bias[o] as f64 + residual[r * out_dim + o] as f64) as f32;
                    // The reference: f64 formulas, not the kernels' own.
                    let p = pre as f64;
                    let want = match activation {
                        Some(Activation::Gelu) => crate::model::cpu::gelu(pre),
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
                        "{kernel:?} {rows}x{in_dim}x{out_dim} {activation:?} [{r},{o}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
