//! Which kernel runs each layer type, decided once when a classifier loads,
//! from explicit [`KernelOptions`] (the binary fills them from its flags
//! and the environment variables it documents; the library reads none).
//! The resulting [`KernelPlan`] answers every "what runs here" question:
//! the layers carry its choices, and reports and warnings read it.
//!
//! Where a CPU has both AVX-512 and AVX2, the faster width for the f32
//! linears is not a given (full-width 512-bit units, split ones, clock
//! drops), so unless the options force one it is measured: both kernels
//! multiply the same small block a few times, alternately, and the faster
//! one's best time wins (256-bit only by a clear margin). The probe runs
//! once per process (about a millisecond); both kernels sum in the same
//! order, so the choice never changes a logit.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

#[cfg(target_arch = "x86_64")]
pub use super::bf16::Kernel as Bf16Kernel;
#[cfg(target_arch = "x86_64")]
pub use super::int8::Kernel as Int8Kernel;

/// No bf16 kernel exists off x86-64: bf16 runs as f32 there.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {}

/// No int8 kernel of ours exists off x86-64: int8 runs candle's Q8_0.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {}

/// Which CPU code a classifier may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum KernelChoice {
    /// Our fastest kernels for this CPU.
    #[default]
    Fastest,
    /// The kernels a CPU without AVX-512 runs (our AVX2 ones where the CPU
    /// has AVX2 and FMA), to measure what AVX2 users get.
    Portable,
    /// None of ours: candle's device-generic ops and padded batches, the
    /// path CUDA and Metal take, so its numerics can be checked on a CPU.
    Generic,
}

/// The f32 linears' vector width: measured at load, or forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorWidth {
    /// Measure both where the CPU has both.
    #[default]
    Measure,
    /// 512-bit where the CPU has AVX-512.
    Bits512,
    /// 256-bit where the CPU has AVX2 and FMA.
    Bits256,
}

/// What the caller allows; [`KernelPlan::resolve`] turns it into kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelOptions {
    pub kernels: KernelChoice,
    pub vector_width: VectorWidth,
    /// Run bf16 on the AVX-512F emulation where the CPU lacks AVX512_BF16
    /// (bf16's numerics at f32's speed, to measure its accuracy anywhere).
    pub bf16_emulation: bool,
}

pub use super::isa::Isa;

impl Isa {
    /// The widest this CPU runs under `kernels`.
    fn widest(kernels: KernelChoice) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if kernels == KernelChoice::Fastest && avx512::available() {
                return Self::Avx512;
            }
            if avx2::available() {
                return Self::Avx2;
            }
        }
        let _ = kernels;
        Self::Portable
    }
}

/// The kernels one classifier runs, resolved once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPlan {
    /// None: candle's generic ops everywhere (a GPU, or [`KernelChoice::Generic`]).
    pub cpu: Option<CpuKernels>,
}

/// The CPU kernels of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuKernels {
    /// The f32 linears, and why.
    pub linear: WidthChoice,
    /// Attention's products and softmax, and layer norm.
    pub vector: Isa,
    /// int8 linears; None: candle's Q8_0.
    pub int8: Option<Int8Kernel>,
    /// bf16 linears; None: bf16 runs as f32.
    pub bf16: Option<Bf16Kernel>,
}

impl KernelPlan {
    /// The plan for a model on the CPU (`on_cpu`) or another device.
    pub fn resolve(options: &KernelOptions, on_cpu: bool) -> Self {
        if !on_cpu || options.kernels == KernelChoice::Generic {
            return Self { cpu: None };
        }
        Self {
            cpu: Some(CpuKernels {
                linear: width_choice(options),
                vector: Isa::widest(options.kernels),
                int8: int8_kernel(options.kernels),
                bf16: bf16_kernel(options),
            }),
        }
    }

    /// Our CPU kernels at their fastest; for the benches and tests that
    /// call kernels directly.
    pub fn fastest() -> Self {
        Self::resolve(&KernelOptions::default(), true)
    }

    /// The name of what int8 layers run: `vnni`, `avx2` or `candle Q8_0`.
    pub fn int8_name(&self) -> &'static str {
        match self.cpu.and_then(|cpu| cpu.int8) {
            #[cfg(target_arch = "x86_64")]
            Some(Int8Kernel::Vnni) => "vnni",
            #[cfg(target_arch = "x86_64")]
            Some(Int8Kernel::Avx2) => "avx2",
            _ => "candle Q8_0",
        }
    }

    /// The name of what bf16 layers run: `native`, `emulated` or `none (f32)`.
    pub fn bf16_name(&self) -> &'static str {
        match self.cpu.and_then(|cpu| cpu.bf16) {
            #[cfg(target_arch = "x86_64")]
            Some(Bf16Kernel::Native) => "vdpbf16ps",
            #[cfg(target_arch = "x86_64")]
            Some(Bf16Kernel::Emulated) => "emulated (AVX-512F)",
            _ => "none (runs f32)",
        }
    }

    /// The f32 linears' kernel and why, as bench reports it.
    pub fn f32_description(&self) -> String {
        match self.cpu {
            Some(cpu) => cpu.linear.to_string(),
            None => "candle generic ops".into(),
        }
    }
}

/// The int8 kernel: VNNI unless `Portable` rules AVX-512 out, then AVX2.
fn int8_kernel(kernels: KernelChoice) -> Option<Int8Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        let candidates: &[Int8Kernel] = match kernels {
            KernelChoice::Fastest => &[Int8Kernel::Vnni, Int8Kernel::Avx2],
            _ => &[Int8Kernel::Avx2],
        };
        candidates.iter().copied().find(|k| k.available())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kernels;
        None
    }
}

/// The bf16 kernel: `vdpbf16ps` where the CPU has it and it passes its
/// start-up check against the emulation; else the emulation if asked for.
fn bf16_kernel(options: &KernelOptions) -> Option<Bf16Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if options.kernels != KernelChoice::Fastest {
            return None;
        }
        if super::bf16::native_kernel_verified() {
            return Some(Bf16Kernel::Native);
        }
        (options.bf16_emulation && Bf16Kernel::Emulated.available()).then_some(Bf16Kernel::Emulated)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = options;
        None
    }
}

/// What was chosen, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WidthChoice {
    pub kernel: Isa,
    pub reason: Reason,
    /// How long choosing took (the measurement, where there was one).
    pub took: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The only fast kernel this CPU (or the kernel choice) allows.
    Only,
    /// The options forced it.
    Forced,
    /// Each kernel's best time on the probe block.
    Measured { avx512: Duration, avx2: Duration },
}

impl std::fmt::Display for WidthChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kernel.name())?;
        match self.reason {
            Reason::Only => Ok(()),
            Reason::Forced => write!(f, " (forced)"),
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

/// The f32 linears' width under `options`; the probe runs once per process.
fn width_choice(options: &KernelOptions) -> WidthChoice {
    let started = Instant::now();
    let chosen = |kernel, reason| WidthChoice {
        kernel,
        reason,
        took: started.elapsed(),
    };
    #[cfg(target_arch = "x86_64")]
    {
        let wide = options.kernels == KernelChoice::Fastest && avx512::available();
        let narrow = avx2::available();
        return match (wide, narrow, options.vector_width) {
            (true, true, VectorWidth::Bits512) => chosen(Isa::Avx512, Reason::Forced),
            (true, true, VectorWidth::Bits256) => chosen(Isa::Avx2, Reason::Forced),
            (true, true, VectorWidth::Measure) => {
                static MEASURED: OnceLock<WidthChoice> = OnceLock::new();
                *MEASURED.get_or_init(|| {
                    let (avx512, avx2) = measure();
                    chosen(pick(avx512, avx2), Reason::Measured { avx512, avx2 })
                })
            }
            (true, false, _) => chosen(Isa::Avx512, Reason::Only),
            (false, true, _) => chosen(Isa::Avx2, Reason::Only),
            (false, false, _) => chosen(Isa::Portable, Reason::Only),
        };
    }
    #[allow(unreachable_code)]
    {
        let _ = (options, VectorWidth::Measure);
        chosen(Isa::Portable, Reason::Only)
    }
}

/// 256-bit only when its best time beats 512-bit's by more than 5%:
/// within that, the measurement cannot tell them apart on a busy machine,
/// and the wider tile reads each weight for more rows.
fn pick(avx512: Duration, avx2: Duration) -> Isa {
    if avx2.as_secs_f64() < 0.95 * avx512.as_secs_f64() {
        Isa::Avx2
    } else {
        Isa::Avx512
    }
}

/// Rounds of the probe per kernel; the first is a warm-up in effect (the
/// best time is kept).
const PROBE_ROUNDS: usize = 6;

/// The probe block: 28 rows (two 512-bit tiles, a few 256-bit ones) by
/// 384 deep (one depth pass) by 128 columns (four panels, 192 KiB of f32
/// weights, as a layer's panels stream from L2): (x, packed weights, rows).
#[cfg(target_arch = "x86_64")]
fn probe_block() -> Option<(Vec<f32>, super::floor::PackedWeights, usize)> {
    let (rows, k, n) = (28, 384, 128);
    let x: Vec<f32> = (0..rows * k)
        .map(|i| (i % 17) as f32 / 17.0 - 0.5)
        .collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
    let packed = super::floor::PackedWeights::pack(&w, n, k).ok()?;
    Some((x, packed, rows))
}

/// Each of two runs' best single-thread time over [`PROBE_ROUNDS`],
/// alternating them so that a slow moment hits both. A run that refuses or
/// shortens its output (it cannot, on the probe block) times as
/// `Duration::MAX`, so it never wins.
#[cfg(target_arch = "x86_64")]
fn alternate_best<E>(
    outputs: usize,
    runs: [&dyn Fn() -> Result<Vec<f32>, E>; 2],
) -> (Duration, Duration) {
    let time = |run: &dyn Fn() -> Result<Vec<f32>, E>| {
        let started = Instant::now();
        let out = run();
        let took = started.elapsed();
        match std::hint::black_box(out) {
            Ok(out) if out.len() == outputs => took,
            _ => Duration::MAX,
        }
    };
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..PROBE_ROUNDS {
        best.0 = best.0.min(time(runs[0]));
        best.1 = best.1.min(time(runs[1]));
    }
    best
}

/// The 512-bit and 256-bit f32 kernels' best times on the probe block.
#[cfg(target_arch = "x86_64")]
fn measure() -> (Duration, Duration) {
    let none = super::floor::Epilogue::default;
    let Some((x, packed, rows)) = probe_block() else {
        return (Duration::ZERO, Duration::MAX);
    };
    let outputs = rows * packed.out_dim();
    alternate_best(
        outputs,
        [
            &|| super::linear::linear_on(Isa::Avx512, &x, &packed, None, rows, none(), false),
            &|| super::linear::linear_on(Isa::Avx2, &x, &packed, None, rows, none(), false),
        ],
    )
}

/// How bf16 compares with f32 on this CPU: each one's best single-thread
/// time on the probe block, bf16 on `kernel` and f32 on `f32_kernel`,
/// measured once per process (microseconds). The answer to "is bf16 faster
/// here", measured rather than assumed from the vendor.
pub fn bf16_against_f32(kernel: Bf16Kernel, f32_kernel: Isa) -> (Duration, Duration) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::floor::Epilogue;
        static MEASURED: OnceLock<(Duration, Duration)> = OnceLock::new();
        *MEASURED.get_or_init(|| {
            let Some((x, packed, rows)) = probe_block() else {
                return (Duration::MAX, Duration::ZERO);
            };
            let bf16 = super::bf16::PackedBf16::from_f32(&packed);
            let outputs = rows * packed.out_dim();
            let none = Epilogue::default();
            alternate_best(
                outputs,
                [
                    &|| super::bf16::linear(&x, &bf16, None, rows, none, false, kernel),
                    &|| super::linear::linear_on(f32_kernel, &x, &packed, None, rows, none, false),
                ],
            )
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    match kernel {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_256_bit_kernel_needs_a_clear_margin() {
        let us = Duration::from_micros;
        assert_eq!(pick(us(100), us(50)), Isa::Avx2);
        assert_eq!(pick(us(100), us(94)), Isa::Avx2);
        assert_eq!(pick(us(100), us(96)), Isa::Avx512);
        assert_eq!(pick(us(100), us(200)), Isa::Avx512);
    }

    /// The probe runs both kernels to completion: each returns its whole
    /// output (a refused or short output times as `Duration::MAX`) and takes
    /// some time. How long is for benchmarks, not for this test.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(
        not(all(host_avx512, host_avx2)),
        ignore = "this CPU lacks AVX-512 or AVX2+FMA"
    )]
    fn the_probe_times_both_kernels() {
        let (avx512, avx2) = measure();
        for probe in [avx512, avx2] {
            assert!(probe > Duration::ZERO && probe < Duration::MAX, "{probe:?}");
        }
    }
}
