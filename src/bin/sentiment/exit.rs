//! Exit codes (also in `sentiment --help` and the README), and which error
//! maps to which. Only the binary knows about exit codes.

use std::fmt::Display;
use std::io::Write;

pub const SUCCESS: u8 = 0;
pub const LINES_FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const MODEL: u8 = 3;
pub const MODEL_UNAVAILABLE: u8 = 4;
pub const DEVICE: u8 = 5;
pub const IO: u8 = 6;
pub const INFERENCE: u8 = 7;
pub const INTERRUPTED: u8 = 130;

/// The text of the exit-code table, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success (also when stdout is closed early, e.g. by `head`)
  1    batch, predict: at least one input line could not be classified
  2    usage error: unknown flag or bad value
  3    model error: a model file is missing, corrupt or inconsistent
  4    model not available: not cached and cannot be downloaded
  5    device error: device not built in or cannot be opened
  6    input/output error: cannot read input or write output
  7    inference failed
  130  interrupted (Ctrl-C)";

/// A bad combination of arguments that clap cannot check on its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error that ended the run: the first cause in its
/// chain that says what kind of failure it was.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(err) = cause.downcast_ref::<sentiment::Error>() {
            return match err {
                sentiment::Error::Model { .. } => MODEL,
                sentiment::Error::ModelUnavailable { .. } => MODEL_UNAVAILABLE,
                sentiment::Error::Device { .. } => DEVICE,
                sentiment::Error::Io { .. } => IO,
                sentiment::Error::InvalidOption(_) => USAGE,
                _ => INFERENCE,
            };
        }
        if cause.is::<UsageError>() {
            return USAGE;
        }
        if cause.is::<std::io::Error>() {
            return IO;
        }
    }
    INFERENCE
}

/// True when the error is stdout going away (EPIPE): a quiet exit.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether stdout was open when the process started. Rust's runtime opens
/// /dev/null read-write on a closed descriptor 1 (`>&-`) before `main`, so
/// every result would vanish with exit 0; a shell's `> /dev/null` opens it
/// write-only, which is how the two are told apart.
pub fn stdout_is_open() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: fstat into a zeroed stat and F_GETFL read descriptor 1's
        // state and change nothing.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            let null = libc::fstat(1, &mut stat) == 0
                && (stat.st_mode & libc::S_IFMT) == libc::S_IFCHR
                && libc::major(stat.st_rdev) == 1
                && libc::minor(stat.st_rdev) == 3;
            let read_write = libc::fcntl(1, libc::F_GETFL) & libc::O_ACCMODE == libc::O_RDWR;
            !(null && read_write)
        }
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Writes a diagnostic to stderr. Never panics: a closed or full stderr
/// (`2>/dev/full`) loses the message, not the run.
pub fn diagnostic(message: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "sentiment: {message}");
}
