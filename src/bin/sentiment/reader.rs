//! Input lines for `batch` and `predict`: read on their own thread, capped
//! in length, parsed, and fed to the batching engine. When input arrives
//! slowly (a terminal, a tail -f), the feed asks the engine to classify
//! what it has, so results never wait for a full window.

use std::cell::RefCell;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use indicatif::ProgressBar;
use sentiment::input::{read_line_capped, InputFormat, Line, TextFields, MAX_LINE_BYTES};
use sentiment::Feed;

/// How long the input may be silent before what has been read is
/// classified anyway (and how often Ctrl-C is checked while waiting).
const SLOW_INPUT: Duration = Duration::from_millis(50);

/// Bytes of input lines the reader may have sent ahead of the engine: the
/// channel is bounded in lines too, but a few hundred lines of megabytes
/// each would otherwise all be held at once.
pub const READ_AHEAD_BYTES: usize = 64 << 20;

/// Bytes read but not yet taken by the engine; the reader waits while a
/// line would take them past the budget (a line alone may, so one huge
/// line still goes through).
#[derive(Default)]
struct ReadAhead {
    bytes: Mutex<usize>,
    taken: Condvar,
}

/// Whether a line of `len` bytes must wait while `held` bytes are read
/// ahead: only when it would pass the budget and something is held (so
/// one line over the budget alone still goes through).
fn must_wait(held: usize, len: usize, budget: usize) -> bool {
    held > 0 && held.saturating_add(len) > budget
}

impl ReadAhead {
    fn reserve(&self, len: usize, budget: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        while must_wait(*bytes, len, budget) {
            bytes = self
                .taken
                .wait(bytes)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *bytes += len;
    }

    fn release(&self, len: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        *bytes = bytes.saturating_sub(len);
        self.taken.notify_one();
    }
}

/// How lines are read and which are skipped.
#[derive(Debug, Clone)]
pub struct LineOptions {
    pub format: InputFormat,
    pub field: String,
    /// The second text of each pair (`--pair-field`).
    pub pair_field: Option<String>,
    /// Lines already classified by an earlier run (`--resume`): read and
    /// counted, never parsed or sent.
    pub skip: u64,
    /// Lines the channel holds: the reader runs this far ahead.
    pub capacity: usize,
}

/// The feed of parsed lines. A read error ends the feed and is kept for
/// [`LineFeed::take_error`].
pub struct LineFeed {
    /// Each line with the bytes it holds of the read-ahead budget.
    lines: Receiver<(std::io::Result<Line>, usize)>,
    read_ahead: Arc<ReadAhead>,
    error: RefCell<Option<std::io::Error>>,
    /// Lines read so far, skipped ones included.
    read: Arc<AtomicU64>,
}

/// Starts the reader thread over `input`; `progress` counts bytes read.
pub fn spawn(
    mut input: impl BufRead + Send + 'static,
    options: LineOptions,
    progress: ProgressBar,
) -> LineFeed {
    let (sender, receiver) = sync_channel(options.capacity.max(1));
    let read = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&read);
    let read_ahead = Arc::new(ReadAhead::default());
    let budget = Arc::clone(&read_ahead);
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            let mut held = 0;
            let line = match read_line_capped(&mut input, &mut buf, MAX_LINE_BYTES) {
                Ok(Some(len)) => {
                    number += 1;
                    counter.store(number, Ordering::SeqCst);
                    progress.inc(len as u64 + 1);
                    if number <= options.skip {
                        continue;
                    }
                    held = len;
                    budget.reserve(held, READ_AHEAD_BYTES);
                    Ok(Line::parse(
                        number,
                        &buf,
                        len,
                        MAX_LINE_BYTES,
                        options.format,
                        TextFields {
                            text: &options.field,
                            pair: options.pair_field.as_deref(),
                        },
                    ))
                }
                Ok(None) => return,
                Err(err) => Err(err),
            };
            let failed = line.is_err();
            if sender.send((line, held)).is_err() || failed {
                return;
            }
        }
    });
    LineFeed {
        lines: receiver,
        read_ahead,
        error: RefCell::default(),
        read,
    }
}

impl LineFeed {
    /// Lines read so far, skipped ones included (all of them once the feed
    /// has ended).
    pub fn lines_read(&self) -> u64 {
        self.read.load(Ordering::SeqCst)
    }

    /// The read error that ended the feed, if one did.
    pub fn take_error(&self) -> Option<std::io::Error> {
        self.error.borrow_mut().take()
    }

    /// The feed as the engine's input: each line, and a flush whenever the
    /// input falls silent.
    pub fn feed(&self) -> impl Iterator<Item = Feed<Line>> + '_ {
        std::iter::from_fn(move || match self.lines.recv_timeout(SLOW_INPUT) {
            Ok((Ok(line), held)) => {
                self.read_ahead.release(held);
                Some(Feed::Item(line))
            }
            Ok((Err(err), _)) => {
                *self.error.borrow_mut() = Some(err);
                None
            }
            Err(RecvTimeoutError::Timeout) => Some(Feed::Flush),
            Err(RecvTimeoutError::Disconnected) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read-ahead holds at most the budget, or one line over it alone:
    /// 64 lines of 8 MB were all read ahead of a slow output before (the
    /// channel was bounded by 512 lines only), 512 MB under a 1 GB cap.
    #[test]
    fn the_read_ahead_is_bounded_in_bytes() {
        let (budget, line) = (READ_AHEAD_BYTES, 8 << 20);
        let mut held = 0;
        let mut lines = 0;
        while !must_wait(held, line, budget) {
            held += line;
            lines += 1;
        }
        assert_eq!(lines, budget / line);
        assert!(held <= budget);
        // One line bigger than the whole budget still goes, alone.
        assert!(!must_wait(0, budget * 2, budget));
        assert!(must_wait(1, budget * 2, budget));
    }

    /// Through the real reader: 320 MB of lines, five budgets' worth, all
    /// get through as the engine takes them (each taken line frees its
    /// bytes), and never more than the budget is read ahead.
    #[test]
    fn every_line_gets_through_the_budget() {
        let line = format!("{{\"text\":\"{}\"}}\n", "a ".repeat(4 << 20));
        let input = std::io::Cursor::new(line.repeat(40).into_bytes());
        let options = LineOptions {
            format: InputFormat::Jsonl,
            field: "text".into(),
            pair_field: None,
            skip: 0,
            capacity: 1000,
        };
        let feed = spawn(input, options, ProgressBar::hidden());
        let mut taken = 0;
        for item in feed.feed() {
            if let Feed::Item(_) = item {
                taken += 1;
                // Every line read so far, minus those taken, fits the budget.
                let ahead = feed.lines_read() - taken;
                assert!(
                    ahead as usize * line.len() <= READ_AHEAD_BYTES + line.len(),
                    "{ahead}"
                );
            }
        }
        assert_eq!(taken, 40);
    }
}
