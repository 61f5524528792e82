//! Errors that end a run, and the exit code each one maps to.
//!
//! Exit codes (also in `sentiment --help` and the README):
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (also: stdout closed early, e.g. by `head`) |
//! | 1    | `batch` finished, but at least one line could not be classified |
//! | 2    | usage error: unknown flag, bad value |
//! | 3    | model error: a model file is missing, corrupt or inconsistent |
//! | 4    | model not available: not in the HF cache and it cannot be downloaded |
//! | 5    | device error: the device was not built in or cannot be opened |
//! | 6    | input/output error: an input file cannot be read or output written |
//! | 7    | inference failed |
//! | 130  | interrupted (Ctrl-C) |

use std::path::PathBuf;

pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const LINES_FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const MODEL: i32 = 3;
    pub const MODEL_UNAVAILABLE: i32 = 4;
    pub const DEVICE: i32 = 5;
    pub const IO: i32 = 6;
    pub const INFERENCE: i32 = 7;
    pub const INTERRUPTED: i32 = 130;
}

/// The text of the exit-code table, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success (also when stdout is closed early, e.g. by `head`)
  1    batch: at least one input line could not be classified
  2    usage error: unknown flag or bad value
  3    model error: a model file is missing, corrupt or inconsistent
  4    model not available: not cached and cannot be downloaded
  5    device error: device not built in or cannot be opened
  6    input/output error: cannot read input or write output
  7    inference failed
  130  interrupted (Ctrl-C)";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file exists (or should) but cannot be used.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },

    /// A model named on the command line that cannot be found or fetched.
    #[error("{0}")]
    ModelUnavailable(String),

    #[error("{0}")]
    Device(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("inference failed: {0}")]
    Inference(String),

    #[error("interrupted")]
    Interrupted,

    /// A combination of arguments clap cannot check on its own.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn model(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Model {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Model { .. } => exit::MODEL,
            Self::ModelUnavailable(_) => exit::MODEL_UNAVAILABLE,
            Self::Device(_) => exit::DEVICE,
            Self::Io { .. } => exit::IO,
            Self::Inference(_) => exit::INFERENCE,
            Self::Interrupted => exit::INTERRUPTED,
            Self::Usage(_) => exit::USAGE,
        }
    }

    /// True when the error is stdout going away (EPIPE), which is a quiet exit.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Self::Inference(err.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
