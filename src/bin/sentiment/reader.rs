//! Input lines for `batch` and `predict`: read on their own thread, capped
//! in length, parsed, and fed to the batching engine. When input arrives
//! slowly (a terminal, a tail -f), the feed asks the engine to classify
//! what it has, so results never wait for a full window.

use std::cell::RefCell;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use sentiment::input::{read_line_capped, InputFormat, Line, MAX_LINE_BYTES};
use sentiment::Feed;

/// How long the input may be silent before what has been read is
/// classified anyway (and how often Ctrl-C is checked while waiting).
const SLOW_INPUT: Duration = Duration::from_millis(50);

/// How lines are read and which are skipped.
#[derive(Debug, Clone)]
pub struct LineOptions {
    pub format: InputFormat,
    pub field: String,
    /// Lines already classified by an earlier run (`--resume`): read and
    /// counted, never parsed or sent.
    pub skip: u64,
    /// Lines the channel holds: the reader runs this far ahead.
    pub capacity: usize,
}

/// The feed of parsed lines. A read error ends the feed and is kept for
/// [`LineFeed::take_error`].
pub struct LineFeed {
    lines: Receiver<std::io::Result<Line>>,
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
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            let line = match read_line_capped(&mut input, &mut buf, MAX_LINE_BYTES) {
                Ok(Some(len)) => {
                    number += 1;
                    counter.store(number, Ordering::SeqCst);
                    progress.inc(len as u64 + 1);
                    if number <= options.skip {
                        continue;
                    }
                    Ok(Line::parse(
                        number,
                        &buf,
                        len,
                        MAX_LINE_BYTES,
                        options.format,
                        &options.field,
                    ))
                }
                Ok(None) => return,
                Err(err) => Err(err),
            };
            let failed = line.is_err();
            if sender.send(line).is_err() || failed {
                return;
            }
        }
    });
    LineFeed {
        lines: receiver,
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
            Ok(Ok(line)) => Some(Feed::Item(line)),
            Ok(Err(err)) => {
                *self.error.borrow_mut() = Some(err);
                None
            }
            Err(RecvTimeoutError::Timeout) => Some(Feed::Flush),
            Err(RecvTimeoutError::Disconnected) => None,
        })
    }
}
