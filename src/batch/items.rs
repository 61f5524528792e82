//! What the engine takes and reports besides predictions: the items it
//! classifies ([`Classifiable`]), the feed's flush requests ([`Feed`]), the
//! stop signal ([`CancelFlag`]) and a run's tally ([`RunSummary`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::input::Line;
use crate::tokenize::TextInput;

/// Something with (maybe) a text, or a pair of texts, to classify. Items
/// without one (a line that failed to parse, say) keep their place in the
/// output.
pub trait Classifiable {
    /// What to classify, or None to deliver the item untouched.
    fn input(&self) -> Option<TextInput<'_>>;
}

impl Classifiable for &str {
    fn input(&self) -> Option<TextInput<'_>> {
        Some(TextInput::Single(self))
    }
}

impl Classifiable for String {
    fn input(&self) -> Option<TextInput<'_>> {
        Some(TextInput::Single(self))
    }
}

impl Classifiable for TextInput<'_> {
    fn input(&self) -> Option<TextInput<'_>> {
        Some(*self)
    }
}

impl Classifiable for (&str, &str) {
    fn input(&self) -> Option<TextInput<'_>> {
        Some(TextInput::Pair(self.0, self.1))
    }
}

impl Classifiable for (String, String) {
    fn input(&self) -> Option<TextInput<'_>> {
        Some(TextInput::Pair(&self.0, &self.1))
    }
}

impl Classifiable for Line {
    fn input(&self) -> Option<TextInput<'_>> {
        self.parsed.as_ref().ok().map(|parsed| parsed.input())
    }
}

/// One element of the input of `Batcher::run`: an item, or a request to
/// classify and deliver what the window holds now (for input that arrives
/// slowly, where latency matters more than the fullest batches).
#[derive(Debug, Clone, PartialEq)]
pub enum Feed<T> {
    /// An item for the current window.
    Item(T),
    /// Classify and deliver what the window holds now.
    Flush,
}

impl<T> From<T> for Feed<T> {
    fn from(item: T) -> Self {
        Self::Item(item)
    }
}

/// A shareable stop signal: set it (from a Ctrl-C handler, a server's
/// shutdown) and runs stop between batches.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: every run sharing it stops at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelFlag::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a run saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Items handed to the sink.
    pub delivered: u64,
    /// Of those, items with a text that could not be classified.
    pub failed: u64,
    /// Of those, items without a text (delivered with `None`).
    pub without_text: u64,
    /// The run stopped on its [`CancelFlag`]; every delivered item is
    /// complete and the rest were not delivered.
    pub cancelled: bool,
}
