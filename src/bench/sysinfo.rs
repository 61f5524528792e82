//! What machine and build a benchmark ran on.

use serde::Serialize;

use crate::model::cpu::KernelPlan;

#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    pub cpu: String,
    pub logical_cores: usize,
    pub simd: Vec<&'static str>,
    /// The f32 linear kernel and why (the CPU kernel plan's choice).
    pub f32_kernel: String,
    /// The kernel `--precision int8` runs.
    pub int8_kernel: &'static str,
    /// The kernel `--precision bf16` runs.
    pub bf16_kernel: &'static str,
    pub os: String,
    pub build_features: Vec<&'static str>,
    pub sentiment_version: &'static str,
    pub candle_version: &'static str,
    pub tokenizers_version: &'static str,
    pub gemm_version: &'static str,
    pub git_commit: &'static str,
}

impl SystemInfo {
    /// This machine and build, with the CPU kernels of `plan`.
    pub fn collect(plan: &KernelPlan) -> Self {
        Self {
            cpu: cpu_model(),
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            simd: simd_features(),
            f32_kernel: plan.f32_description(),
            int8_kernel: plan.int8_name(),
            bf16_kernel: plan.bf16_name(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            build_features: crate::device::built_in(),
            sentiment_version: env!("CARGO_PKG_VERSION"),
            candle_version: env!("SENTIMENT_CANDLE_VERSION"),
            tokenizers_version: env!("SENTIMENT_TOKENIZERS_VERSION"),
            gemm_version: env!("SENTIMENT_GEMM_VERSION"),
            git_commit: env!("SENTIMENT_GIT_COMMIT"),
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(target_arch = "x86_64")]
fn simd_features() -> Vec<&'static str> {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($name:tt),*) => {$(
            if std::arch::is_x86_feature_detected!($name) {
                found.push($name);
            }
        )*};
    }
    probe!("avx2", "fma", "f16c", "avx512f", "avx512vnni", "avx512bf16");
    found
}

#[cfg(target_arch = "aarch64")]
fn simd_features() -> Vec<&'static str> {
    let mut found = vec!["neon"];
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        found.push("dotprod");
    }
    found
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_features() -> Vec<&'static str> {
    Vec::new()
}

/// Peak resident set size of this process in bytes (Linux: VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
