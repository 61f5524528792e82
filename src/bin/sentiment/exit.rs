//! Exit codes (also in `sentiment --help` and the README), and which error
//! maps to which. Only the binary knows about exit codes.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether descriptor 1 was open when the process started, recorded by
/// [`record_stdout`] before Rust's runtime puts /dev/null in place of a
/// closed one (after which a closed stdout, `>&-`, and a /dev/null given on
/// purpose, `subprocess.DEVNULL`, look the same).
static STDOUT_OPEN_AT_START: AtomicBool = AtomicBool::new(true);

/// Runs from `.init_array`, before `main` and before std's set-up.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static RECORD_STDOUT: extern "C" fn() = record_stdout;

#[cfg(target_os = "linux")]
extern "C" fn record_stdout() {
    // SAFETY: F_GETFD reads descriptor 1's flags and changes nothing.
    let open = unsafe { libc::fcntl(1, libc::F_GETFD) } != -1;
    STDOUT_OPEN_AT_START.store(open, Ordering::Relaxed);
}

/// Whether stdout was open when the process started (always true where
/// that cannot be told).
pub fn stdout_is_open() -> bool {
    STDOUT_OPEN_AT_START.load(Ordering::Relaxed)
}

/// Writes a diagnostic to stderr. Never panics: a closed or full stderr
/// (`2>/dev/full`) loses the message, not the run.
/// It is one line, safe for a terminal: a message quotes paths, names and
/// values from outside (a folder's name, a model file's contents).
pub fn diagnostic(message: impl Display) {
    let message = message.to_string();
    let message = sentiment::output::terminal_safe(&message);
    let _ = writeln!(std::io::stderr().lock(), "sentiment: {message}");
}
