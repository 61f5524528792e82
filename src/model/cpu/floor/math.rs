//! Scalar math the kernels share: the activations as the portable
//! kernels apply them, and the constants the vector versions reuse.

use crate::model::config::Activation;

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
pub(crate) mod erf_coefficients {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rational_erf_is_within_f32_rounding_of_erf() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (erf(x) as f64 - erf_reference(x.clamp(-4.0, 4.0) as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max |erf error| {worst}");
    }
}
