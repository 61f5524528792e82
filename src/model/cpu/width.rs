//! Which kernel runs the f32 linear layers: the 512-bit one (`avx512.rs`),
//! the 256-bit one (`avx2.rs`) or the gemm crate's, chosen once per
//! process, when the first CPU model loads (or at the first linear layer,
//! for callers of the kernels alone).
//!
//! Where a CPU has both AVX-512 and AVX2, the faster width is not a given:
//! a core with full-width 512-bit units (Intel server parts, Zen 5) runs
//! twice the FLOPs per instruction, one that splits them in two (Zen 4)
//! the same FLOPs either way, and some parts lower their clock under
//! 512-bit code. So the choice is measured, not assumed: both kernels
//! multiply the same small block a few times, alternately, and the faster
//! one's best time wins (256-bit only by a clear margin, since the 512-bit
//! kernel also keeps more of a tile in registers). This costs about a
//! millisecond once (0.7-0.9 ms on a 2-core Xeon; [`WidthChoice::took`],
//! which `sentiment bench` prints). Both kernels sum in the same order, so the
//! choice never changes a logit (`avx2_and_avx512_linears_are_bit_identical`).
//!
//! `SENTIMENT_VECTOR_WIDTH=512` or `=256` skips the measurement and forces
//! a width the CPU has; `SENTIMENT_KERNELS=portable` rules 512-bit out.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The kernel that runs the f32 linear layers on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearKernel {
    /// `avx512.rs`: 14 x 32 register tiles of 512-bit vectors.
    Avx512,
    /// `avx2.rs`: 6 x 16 register tiles of 256-bit vectors.
    Avx2,
    /// The gemm crate (CPUs with neither, and other architectures).
    Gemm,
}

impl LinearKernel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Gemm => "gemm crate",
        }
    }
}

/// What was chosen, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WidthChoice {
    pub kernel: LinearKernel,
    pub reason: Reason,
    /// How long choosing took (the measurement, where there was one).
    pub took: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The only fast kernel this CPU (or `SENTIMENT_KERNELS`) allows.
    Only,
    /// `SENTIMENT_VECTOR_WIDTH` asked for it.
    Forced,
    /// Each kernel's best time on the probe block.
    Measured { avx512: Duration, avx2: Duration },
}

impl std::fmt::Display for WidthChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kernel.name())?;
        match self.reason {
            Reason::Only => Ok(()),
            Reason::Forced => write!(f, " (SENTIMENT_VECTOR_WIDTH)"),
            Reason::Measured { avx512, avx2 } => write!(
                f,
                " (measured at start: 512-bit {:.1} µs, 256-bit {:.1} µs per probe; {:.2} ms)",
                avx512.as_secs_f64() * 1e6,
                avx2.as_secs_f64() * 1e6,
                self.took.as_secs_f64() * 1e3
            ),
        }
    }
}

/// The f32 linear kernel, chosen at the first call (see the module doc).
pub fn linear_kernel() -> LinearKernel {
    width_choice().kernel
}

/// The choice and its reason, made at the first call.
pub fn width_choice() -> WidthChoice {
    static CHOICE: OnceLock<WidthChoice> = OnceLock::new();
    *CHOICE.get_or_init(choose)
}

fn choose() -> WidthChoice {
    let started = Instant::now();
    #[cfg(target_arch = "x86_64")]
    {
        let (wide, narrow) = (super::avx512::available(), super::avx2::available());
        let forced = std::env::var("SENTIMENT_VECTOR_WIDTH").ok();
        let chosen = |kernel, reason| WidthChoice {
            kernel,
            reason,
            took: started.elapsed(),
        };
        return match (wide, narrow, forced.as_deref()) {
            (true, true, Some("512")) => chosen(LinearKernel::Avx512, Reason::Forced),
            (true, true, Some("256")) => chosen(LinearKernel::Avx2, Reason::Forced),
            (true, true, _) => {
                let (avx512, avx2) = measure();
                chosen(pick(avx512, avx2), Reason::Measured { avx512, avx2 })
            }
            (true, false, _) => chosen(LinearKernel::Avx512, Reason::Only),
            (false, true, _) => chosen(LinearKernel::Avx2, Reason::Only),
            (false, false, _) => chosen(LinearKernel::Gemm, Reason::Only),
        };
    }
    #[allow(unreachable_code)]
    WidthChoice {
        kernel: LinearKernel::Gemm,
        reason: Reason::Only,
        took: started.elapsed(),
    }
}

/// 256-bit only when its best time beats 512-bit's by more than 5%:
/// within that, the measurement cannot tell them apart on a busy machine,
/// and the wider tile reads each weight for more rows.
fn pick(avx512: Duration, avx2: Duration) -> LinearKernel {
    if avx2.as_secs_f64() < 0.95 * avx512.as_secs_f64() {
        LinearKernel::Avx2
    } else {
        LinearKernel::Avx512
    }
}

/// Rounds of the probe per kernel; the first is a warm-up in effect (the
/// best time is kept).
const PROBE_ROUNDS: usize = 6;

/// Each kernel's best single-thread time on one probe block: 28 rows (two
/// 512-bit tiles, a few 256-bit ones) by 384 deep (one depth pass) by 128
/// columns (four panels, 192 KiB of weights, as a layer's panels stream
/// from L2), alternating the kernels so that a slow moment hits both.
#[cfg(target_arch = "x86_64")]
fn measure() -> (Duration, Duration) {
    use super::{Epilogue, PackedWeights};
    let (rows, k, n) = (28, 384, 128);
    let x: Vec<f32> = (0..rows * k)
        .map(|i| (i % 17) as f32 / 17.0 - 0.5)
        .collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
    let Ok(packed) = PackedWeights::pack(&w, n, k) else {
        return (Duration::ZERO, Duration::MAX);
    };
    // A kernel that refuses the block (it cannot, for these operands) times
    // as `Duration::MAX`, so it is never the one chosen.
    let time = |kernel: LinearKernel| {
        let started = Instant::now();
        let out = match kernel {
            LinearKernel::Avx512 => {
                super::avx512::linear(&x, &packed, None, rows, Epilogue::default(), false)
            }
            _ => super::avx2::linear(&x, &packed, None, rows, Epilogue::default(), false),
        };
        let took = started.elapsed();
        match std::hint::black_box(out) {
            Ok(out) if out.len() == rows * n => took,
            _ => Duration::MAX,
        }
    };
    let (mut avx512, mut avx2) = (Duration::MAX, Duration::MAX);
    for _ in 0..PROBE_ROUNDS {
        avx512 = avx512.min(time(LinearKernel::Avx512));
        avx2 = avx2.min(time(LinearKernel::Avx2));
    }
    (avx512, avx2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_256_bit_kernel_needs_a_clear_margin() {
        let us = Duration::from_micros;
        assert_eq!(pick(us(100), us(50)), LinearKernel::Avx2);
        assert_eq!(pick(us(100), us(94)), LinearKernel::Avx2);
        assert_eq!(pick(us(100), us(96)), LinearKernel::Avx512);
        assert_eq!(pick(us(100), us(200)), LinearKernel::Avx512);
    }

    /// The probe runs both kernels to completion: each returns its whole
    /// output (a refused or short output times as `Duration::MAX`) and takes
    /// some time. How long is for benchmarks, not for this test.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_probe_times_both_kernels() {
        if !(super::super::avx512::available() && super::super::avx2::available()) {
            eprintln!("skipped: this CPU lacks AVX-512 or AVX2+FMA");
            return;
        }
        let (avx512, avx2) = measure();
        for probe in [avx512, avx2] {
            assert!(probe > Duration::ZERO && probe < Duration::MAX, "{probe:?}");
        }
    }
}
