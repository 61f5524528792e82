//! Compute devices: CPU always; CUDA and Metal when built with the `cuda`
//! or `metal` cargo features.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// A device as named on the command line: `cpu`, `cuda`, `cuda:N`, `metal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
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
        .map_err(|err| Error::Device(format!("cannot open cuda:{ordinal}: {err}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::Device(
        "this sentiment was built without CUDA support; rebuild with `--features cuda`".into(),
    ))
}

#[cfg(feature = "metal")]
fn open_metal(ordinal: usize) -> Result<Device> {
    Device::new_metal(ordinal)
        .map_err(|err| Error::Device(format!("cannot open metal:{ordinal}: {err}")))
}

#[cfg(not(feature = "metal"))]
fn open_metal(_ordinal: usize) -> Result<Device> {
    Err(Error::Device(
        "this sentiment was built without Metal support; rebuild with `--features metal` on macOS"
            .into(),
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

/// Sets the CPU thread count for candle's kernels and the tokenizer. Both
/// read it once, when their thread pool starts, so this runs first thing in
/// `main`, before any other thread exists.
pub fn set_cpu_threads(threads: usize) {
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    candle_core::utils::init_global_threadpool();
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
}
