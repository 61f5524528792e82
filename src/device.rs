//! Compute devices: CPU always; CUDA and Metal when built with the `cuda`
//! or `metal` cargo features. Also the CPU thread count, which is
//! process-wide (see [`configure_threads`]).

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// A device as named on the command line: `cpu`, `cuda`, `cuda:N`, `metal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (always built in).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal (cargo feature `cuda`).
    Cuda(usize),
    /// A Metal GPU by ordinal (cargo feature `metal`, macOS).
    Metal(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((kind, n)) => (
                kind,
                n.parse::<usize>()
                    .map_err(|_| format!("invalid device ordinal {n:?} in {s:?}"))?,
            ),
            None => (s, 0),
        };
        match (kind.to_ascii_lowercase().as_str(), ordinal) {
            ("cpu", 0) => Ok(Self::Cpu),
            ("cuda", n) => Ok(Self::Cuda(n)),
            ("metal", n) => Ok(Self::Metal(n)),
            ("cpu", _) => Err("cpu takes no ordinal".into()),
            _ => Err(format!(
                "unknown device {s:?}; expected cpu, cuda, cuda:N or metal"
            )),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device: [`Error::Device`] if it was not built in or cannot be opened.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(ordinal),
            Self::Metal(ordinal) => open_metal(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|err| Error::device(format!("cannot open cuda:{ordinal}"), Some(err.into())))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::device(
        "this sentiment was built without CUDA support; rebuild with `--features cuda`",
        None,
    ))
}

#[cfg(feature = "metal")]
fn open_metal(ordinal: usize) -> Result<Device> {
    Device::new_metal(ordinal)
        .map_err(|err| Error::device(format!("cannot open metal:{ordinal}"), Some(err.into())))
}

#[cfg(not(feature = "metal"))]
fn open_metal(_ordinal: usize) -> Result<Device> {
    Err(Error::device(
        "this sentiment was built without Metal support; rebuild with `--features metal` on macOS",
        None,
    ))
}

/// The devices this binary can use, for `--help` and bench reports.
pub fn built_in() -> Vec<&'static str> {
    let mut devices = vec!["cpu"];
    if cfg!(feature = "cuda") {
        devices.push("cuda");
    }
    if cfg!(feature = "metal") {
        devices.push("metal");
    }
    devices
}

/// The most CPU threads the library accepts: far beyond any useful count,
/// low enough that a typo cannot ask the OS for millions of threads.
pub const MAX_THREADS: usize = 1024;

/// The CPU threads a classifier uses unless told otherwise: the CPUs this
/// process may use (its affinity mask and cgroup CPU quota), at most the
/// physical cores.
pub fn default_threads() -> usize {
    crate::model::cpu::default_threads()
}

/// Sets the CPU thread count of this crate's kernels, or returns the one
/// already in force.
///
/// The count is **process-wide**: the kernels' thread pool starts once. So
/// the first call wins: `None` takes [`default_threads`], and a later call
/// asking for a *different* count is refused with [`Error::InvalidOption`]
/// rather than silently ignored. Loading a [`Classifier`](crate::Classifier)
/// calls this with its [`threads`](crate::ClassifierBuilder::threads)
/// setting. (candle's own CPU ops and the tokenizer's rayon pool size
/// themselves from `RAYON_NUM_THREADS`, which the `sentiment` binary sets
/// from the same count; the library reads and writes no environment.)
pub fn configure_threads(requested: Option<usize>) -> Result<usize> {
    if let Some(n) = requested {
        if n == 0 || n > MAX_THREADS {
            return Err(Error::InvalidOption(format!(
                "threads must be between 1 and {MAX_THREADS}, not {n}"
            )));
        }
    }
    let in_force = crate::model::cpu::start_pool(requested.unwrap_or_else(default_threads));
    match requested {
        Some(n) if n != in_force => Err(Error::InvalidOption(format!(
            "this process already runs on {in_force} CPU threads and cannot switch to {n}: \
             the thread pool is process-wide and starts once"
        ))),
        _ => Ok(in_force),
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceSpec;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("CUDA".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:1".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(1)));
        assert_eq!("metal".parse::<DeviceSpec>(), Ok(DeviceSpec::Metal(0)));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn a_second_different_thread_count_is_refused_not_ignored() {
        let in_force = super::configure_threads(None).unwrap();
        assert_eq!(super::configure_threads(Some(in_force)).unwrap(), in_force);
        let other = super::configure_threads(Some(in_force + 1)).unwrap_err();
        assert!(other.to_string().contains("already runs on"), "{other}");
        assert!(super::configure_threads(Some(0)).is_err());
        assert!(super::configure_threads(Some(super::MAX_THREADS + 1)).is_err());
    }
}
