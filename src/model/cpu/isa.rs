//! Which vector instructions a kernel family runs, and whether this CPU
//! has them: the one fact every kernel entry point and the plan share.

use super::floor::OperandError;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

/// The vector instructions a family of kernels runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 512-bit tiles (`avx512.rs`).
    Avx512,
    /// 256-bit tiles (`avx2.rs`).
    Avx2,
    /// The gemm crate and scalar code (CPUs with neither, other architectures).
    Portable,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Portable => "gemm crate",
        }
    }

    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => avx2::available(),
            Self::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// `Ok` where this CPU runs it: the entry points refuse a kernel the
    /// CPU cannot run instead of executing its instructions.
    pub fn check(self) -> Result<(), OperandError> {
        match self.available() {
            true => Ok(()),
            false => Err(OperandError(format!(
                "this CPU does not run the {} kernels",
                self.name()
            ))),
        }
    }
}
