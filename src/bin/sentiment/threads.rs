//! The CPU thread count, decided once at start: `--threads`, else
//! `RAYON_NUM_THREADS` or `CANDLE_NUM_THREADS` (checked as `--threads` is),
//! else what the library picks (the CPUs this process may use, at most the
//! physical cores). The library's pool takes it; candle's own ops and the
//! tokenizer read it from `RAYON_NUM_THREADS`, set here to the same count.

use sentiment::device::{default_threads, MAX_THREADS};

use crate::exit::UsageError;

/// The count, and where it came from (for `bench` and warnings).
#[derive(Debug, Clone, Copy)]
pub struct Threads {
    pub count: usize,
    pub source: &'static str,
}

static IN_FORCE: std::sync::OnceLock<Threads> = std::sync::OnceLock::new();

/// The count [`init`] decided (the library's default before it ran).
pub fn get() -> Threads {
    IN_FORCE.get().copied().unwrap_or(Threads {
        count: default_threads(),
        source: "the CPUs this process may use",
    })
}

/// Resolves the count from the flag and the environment, warns when it is
/// more than the CPUs this process may use, and points candle's and the
/// tokenizer's pools at it. Call it first, before any thread exists.
pub fn init(flag: Option<u16>) -> Result<Threads, UsageError> {
    let threads = resolve(flag, |name| std::env::var(name).ok())?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads.count > cpus {
        crate::exit::diagnostic(format_args!(
            "warning: {} {} is more than the {cpus} CPUs this process may use; expect it to \
             run slower, not faster",
            threads.source, threads.count
        ));
    }
    for name in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        // The process has one thread yet: nothing reads the environment
        // while it changes.
        std::env::set_var(name, threads.count.to_string());
    }
    let _ = IN_FORCE.set(threads);
    Ok(threads)
}

/// [`init`]'s decision, with the environment as `var` reads it.
fn resolve(flag: Option<u16>, var: impl Fn(&str) -> Option<String>) -> Result<Threads, UsageError> {
    if let Some(count) = flag {
        return Ok(Threads {
            count: usize::from(count),
            source: "--threads",
        });
    }
    for source in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        let Some(value) = var(source) else { continue };
        return match value.trim().parse::<usize>() {
            Ok(count) if (1..=MAX_THREADS).contains(&count) => Ok(Threads { count, source }),
            _ => Err(UsageError(format!(
                "invalid value '{value}' for {source}: threads must be 1 to {MAX_THREADS}, as \
                 for --threads"
            ))),
        };
    }
    Ok(Threads {
        count: default_threads(),
        source: "the CPUs this process may use",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_flag_wins_then_rayon_then_candle_then_the_default() {
        let both = [("RAYON_NUM_THREADS", "3"), ("CANDLE_NUM_THREADS", "5")];
        assert_eq!(resolve(Some(7), env(&both)).unwrap().count, 7);
        let rayon = resolve(None, env(&both)).unwrap();
        assert_eq!((rayon.count, rayon.source), (3, "RAYON_NUM_THREADS"));
        let candle = resolve(None, env(&both[1..])).unwrap();
        assert_eq!((candle.count, candle.source), (5, "CANDLE_NUM_THREADS"));
        assert_eq!(resolve(None, env(&[])).unwrap().count, default_threads());
    }

    #[test]
    fn the_environment_is_checked_as_the_flag_is() {
        for bad in ["0", "5000", "-1", "two", ""] {
            let err = resolve(None, env(&[("RAYON_NUM_THREADS", bad)])).unwrap_err();
            assert!(
                err.0.contains("RAYON_NUM_THREADS") && err.0.contains("1 to 1024"),
                "{err:?}"
            );
        }
    }
}
