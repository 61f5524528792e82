//! The library's error type. Each variant says which stage failed and keeps
//! the error that caused it as its [`source`](std::error::Error::source), so
//! `{:#}` in anyhow (or walking `source()`) shows the whole chain. Exit codes
//! are the binary's business, not the library's.

use std::path::PathBuf;

/// Any error the library's own dependencies raise, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a library call failed. Each variant names the stage; `source()` gives the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model file exists (or should) but cannot be used: missing, corrupt,
    /// inconsistent with the other files. `path` names the file.
    #[error("{}: {message}", path.display())]
    Model {
        path: PathBuf,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// A model that cannot be found locally or fetched from the hub.
    #[error("{message}")]
    ModelUnavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The device was not built in, or cannot be opened.
    #[error("{message}")]
    Device {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// Reading input or writing output failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A text could not be tokenized.
    #[error("tokenization failed")]
    Tokenize {
        #[source]
        source: BoxError,
    },

    /// The forward pass failed.
    #[error("inference failed")]
    Inference {
        #[source]
        source: candle_core::Error,
    },

    /// An option the library was given is out of range or conflicts with
    /// another (a stride wider than the window, a second thread count).
    #[error("{0}")]
    InvalidOption(String),
}

impl Error {
    /// A model error about the file at `path`.
    pub fn model(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Model {
            path: path.into(),
            message: message.to_string(),
            source: None,
        }
    }

    /// A model error caused by `source`.
    pub fn model_caused(
        path: impl Into<PathBuf>,
        message: impl std::fmt::Display,
        source: impl Into<BoxError>,
    ) -> Self {
        let source: BoxError = source.into();
        let source = match source.downcast::<candle_core::Error>() {
            Ok(candle) => Box::new(without_backtrace(*candle)) as BoxError,
            Err(other) => other,
        };
        Self::Model {
            path: path.into(),
            message: message.to_string(),
            source: Some(source),
        }
    }

    /// An I/O error, with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A device error.
    pub fn device(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Device {
            message: message.into(),
            source,
        }
    }

    /// A model that cannot be found or fetched.
    pub fn unavailable(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::ModelUnavailable {
            message: message.into(),
            source,
        }
    }

    pub(crate) fn tokenize(source: impl Into<BoxError>) -> Self {
        Self::Tokenize {
            source: source.into(),
        }
    }

    /// The message and every source, `: `-joined: what a one-line error
    /// record or log line should say.
    pub fn chain_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            message.push_str(": ");
            message.push_str(&err.to_string());
            source = err.source();
        }
        message
    }
}

impl From<candle_core::Error> for Error {
    fn from(source: candle_core::Error) -> Self {
        Self::Inference {
            source: without_backtrace(source),
        }
    }
}

/// candle attaches a backtrace to its errors when RUST_BACKTRACE is set,
/// and prints it in the message: a one-line error record must not carry it.
pub(crate) fn without_backtrace(err: candle_core::Error) -> candle_core::Error {
    match err {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        err => err,
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
