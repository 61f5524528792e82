//! The batching engine: any number of texts, classified in bounded windows.
//!
//! Items are taken from the input a window at a time (by default 16
//! batches' worth, or 64 MiB of text, whichever comes first). Inside a
//! window every sequence (one per text, or each window of a long text) is
//! sorted by token count so batches pad little, run through the model a
//! batch at a time, and folded back into its text's prediction. Results are
//! handed to the caller's sink in input order, a window at a time. Memory
//! is bounded by the window, never by the input.
//!
//! A batch that fails is retried one sequence at a time, so one bad text
//! fails alone. A [`CancelFlag`] stops the run between batches; the window
//! in progress is then dropped, never half-delivered.

use crate::classifier::{Classifier, ClassifyOptions, LongText};
use crate::error::{Error, Result};
use crate::postprocess::{Aggregate, Prediction, Scored};
use crate::tokenize::{Encoded, TextInput};

mod items;

pub use items::{CancelFlag, Classifiable, Feed, RunSummary};

/// Texts per forward pass unless told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// The largest batch size accepted: a batch of 4096 sequences of 512
/// tokens already takes gigabytes of activations.
pub const MAX_BATCH_SIZE: usize = 4096;

/// The fewest sequences a forward pass is cut to for padding's sake
/// ([`Batcher::with_max_padding`]): smaller passes cost more per sequence
/// than the padding they save.
pub const MIN_SPLIT_BATCH: usize = 8;

/// Batches per window: enough for length sorting to pay off, few enough
/// to keep the window small.
pub const WINDOW_BATCHES: usize = 16;

/// A window also ends once it holds this many bytes of text.
pub const WINDOW_BYTES: usize = 64 << 20;

/// One text, tokenized for a [`Batcher`]: its sequence, or each of its
/// windows. Made by [`Batcher::encode`], on any thread, so that a server
/// can tokenize off the thread that runs the model.
#[derive(Debug, Clone)]
pub struct EncodedText {
    sequences: Vec<Encoded>,
}

impl EncodedText {
    /// A text's sequences; a text that gave no token at all cannot be run.
    pub(crate) fn new(sequences: Vec<Encoded>) -> Result<Self> {
        if sequences.is_empty() || sequences.iter().any(Encoded::is_empty) {
            return Err(Error::tokenize(
                "the tokenizer produced no tokens for the text",
            ));
        }
        Ok(Self { sequences })
    }

    /// Tokens over every sequence, special tokens included.
    pub fn tokens(&self) -> usize {
        self.sequences.iter().map(Encoded::len).sum()
    }

    /// Sequences (1, or the number of windows).
    pub fn sequences(&self) -> usize {
        self.sequences.len()
    }

    /// The longest sequence's tokens: what it pads a batch to.
    pub fn longest(&self) -> usize {
        self.sequences.iter().map(Encoded::len).max().unwrap_or(0)
    }

    /// Whether the text was cut to the model's limit.
    pub fn truncated(&self) -> bool {
        self.sequences.iter().any(|e| e.truncated)
    }
}

/// The batching engine over one loaded model (see the module docs).
#[derive(Debug, Clone)]
pub struct Batcher<'a> {
    classifier: &'a Classifier,
    options: ClassifyOptions,
    batch_size: usize,
    /// At most this many padded tokens (longest × count) per forward pass.
    max_batch_tokens: Option<usize>,
    /// Start a new forward pass rather than let padding exceed this
    /// fraction of the real tokens (see [`Batcher::with_max_padding`]).
    max_padding: Option<f32>,
    window_items: usize,
    window_bytes: usize,
    cancel: Option<CancelFlag>,
}

impl<'a> Batcher<'a> {
    /// `batch_size` is clamped to 1..=[`MAX_BATCH_SIZE`].
    pub fn new(classifier: &'a Classifier, options: ClassifyOptions, batch_size: usize) -> Self {
        let batch_size = batch_size.clamp(1, MAX_BATCH_SIZE);
        Self {
            classifier,
            options,
            batch_size,
            max_batch_tokens: None,
            max_padding: None,
            window_items: batch_size * WINDOW_BATCHES,
            window_bytes: WINDOW_BYTES,
            cancel: None,
        }
    }

    /// Also caps each forward pass at `tokens` padded tokens (the longest
    /// sequence's length times the sequences), as TEI's `--max-batch-tokens`
    /// counts them. A sequence longer than the cap still runs, alone.
    pub fn with_max_batch_tokens(mut self, tokens: usize) -> Self {
        self.max_batch_tokens = Some(tokens.max(1));
        self
    }

    /// Sequences per forward pass (clamped to 1..=[`MAX_BATCH_SIZE`]); the
    /// window becomes [`WINDOW_BATCHES`] batches.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.clamp(1, MAX_BATCH_SIZE);
        self.window_items = self.batch_size * WINDOW_BATCHES;
        self
    }

    /// Splits a run's length-sorted sequences into more forward passes
    /// rather than pad any pass by more than `fraction` of its real tokens
    /// (once it holds [`MIN_SPLIT_BATCH`] sequences). For a server, whose
    /// batches are whatever requests arrived together: 30 sentences of 5 to
    /// 60 tokens padded to the longest cost twice their real tokens.
    pub fn with_max_padding(mut self, fraction: f32) -> Self {
        self.max_padding = Some(fraction.max(0.0));
        self
    }

    /// Items per window (at least 1): length sorting happens inside a
    /// window, and a window is what the engine holds in memory.
    pub fn with_window(mut self, items: usize) -> Self {
        self.window_items = items.max(1);
        self
    }

    /// Stops runs between batches once `cancel` is set.
    pub fn with_cancel(mut self, cancel: CancelFlag) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Sequences per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelFlag::is_cancelled)
    }

    /// Classifies every item of `input` and hands each to `sink` with its
    /// result, in input order: `None` for an item without a text, else the
    /// prediction or why it failed. Stops early, delivering nothing of the
    /// window in progress, when the cancel flag is set; fails only when the
    /// sink does.
    pub fn run<T, I, E>(
        &self,
        input: impl IntoIterator<Item = I>,
        sink: impl FnMut(T, Option<Result<Prediction>>) -> Result<(), E>,
    ) -> Result<RunSummary, E>
    where
        T: Classifiable,
        I: Into<Feed<T>>,
    {
        self.run_into(input, &mut ClosureSink(sink))
    }

    /// [`Batcher::run`] into a [`Sink`], which also hears when each window
    /// is complete (to flush output there, say).
    pub fn run_into<T, I, S>(
        &self,
        input: impl IntoIterator<Item = I>,
        sink: &mut S,
    ) -> Result<RunSummary, S::Error>
    where
        T: Classifiable,
        I: Into<Feed<T>>,
        S: Sink<T>,
    {
        let mut summary = RunSummary::default();
        let mut window: Vec<T> = Vec::new();
        let mut bytes = 0usize;
        for feed in input {
            if self.cancelled() {
                summary.cancelled = true;
                return Ok(summary);
            }
            let flush = match feed.into() {
                Feed::Item(item) => {
                    bytes = bytes.saturating_add(item.input().map_or(0, |input| input.len()));
                    window.push(item);
                    window.len() >= self.window_items || bytes >= self.window_bytes
                }
                Feed::Flush => !window.is_empty(),
            };
            if flush {
                bytes = 0;
                if !self.deliver(&mut window, sink, &mut summary)? {
                    return Ok(summary);
                }
            }
        }
        if !window.is_empty() {
            self.deliver(&mut window, sink, &mut summary)?;
        }
        Ok(summary)
    }

    /// Classifies and delivers the window, emptying it. False when the run
    /// was cancelled first (and nothing was delivered).
    fn deliver<T: Classifiable, S: Sink<T>>(
        &self,
        window: &mut Vec<T>,
        sink: &mut S,
        summary: &mut RunSummary,
    ) -> Result<bool, S::Error> {
        let Some(results) = self.classify_window(window) else {
            summary.cancelled = true;
            return Ok(false);
        };
        for (item, result) in window.drain(..).zip(results) {
            summary.delivered += 1;
            summary.failed += u64::from(matches!(result, Some(Err(_))));
            summary.without_text += u64::from(result.is_none());
            sink.deliver(item, result)?;
        }
        sink.window_done()?;
        Ok(true)
    }

    /// Classifies one window: per item, `None` without a text, else its
    /// prediction or error, in the window's order. `None` overall when the
    /// run was cancelled before the window finished.
    pub fn classify_window<T: Classifiable>(
        &self,
        items: &[T],
    ) -> Option<Vec<Option<Result<Prediction>>>> {
        let inputs: Vec<TextInput> = items.iter().filter_map(Classifiable::input).collect();
        let mut results = self.classify_encoded(self.encode_all(&inputs))?.into_iter();
        Some(
            items
                .iter()
                .map(|item| item.input().and_then(|_| results.next()))
                .collect(),
        )
    }

    /// One text's (or pair's) sequences under this batcher's options
    /// (truncated, or every window). Any thread may call this.
    pub fn encode<'t>(&self, input: impl Into<TextInput<'t>>) -> Result<EncodedText> {
        EncodedText::new(self.classifier.encode_text(input, self.options.long_text)?)
    }

    /// [`Batcher::encode`] for many texts or pairs. Truncation encodes them
    /// in one call (the tokenizer parallelises it) and retries one by one
    /// only if that call fails, so only the offending inputs fail.
    pub fn encode_all(&self, inputs: &[TextInput]) -> Vec<Result<EncodedText>> {
        let batch = match self.options.long_text {
            LongText::Truncate => self.classifier.encode_batch(inputs).ok(),
            LongText::TruncateStart | LongText::Window { .. } => None,
        };
        match batch {
            Some(encoded) => encoded
                .into_iter()
                .map(|e| EncodedText::new(vec![e]))
                .collect(),
            None => inputs.iter().map(|&input| self.encode(input)).collect(),
        }
    }

    /// Classifies already-encoded texts (a tokenization error stays that
    /// text's result): every sequence sorted by length, run in batches of
    /// at most the batch size and the token cap, and folded back into its
    /// text's prediction. `None` when the run was cancelled first.
    pub fn classify_encoded(
        &self,
        texts: Vec<Result<EncodedText>>,
    ) -> Option<Vec<Result<Prediction>>> {
        let post = self.classifier.postprocessor();
        let (windowed, aggregate) = match self.options.long_text {
            LongText::Truncate | LongText::TruncateStart => (false, Aggregate::Mean),
            LongText::Window { aggregate, .. } => (true, aggregate),
        };
        let mut states: Vec<State> = Vec::with_capacity(texts.len());
        let mut encoded: Vec<(usize, EncodedText)> = Vec::with_capacity(texts.len());
        for (i, text) in texts.into_iter().enumerate() {
            match text {
                Ok(text) => {
                    states.push(State::Pending(None));
                    encoded.push((i, text));
                }
                Err(err) => states.push(State::Failed(err)),
            }
        }

        // Every sequence of every text, sorted by length so batches pad little.
        let mut order: Vec<(usize, &Encoded)> = encoded
            .iter()
            .flat_map(|(i, text)| text.sequences.iter().map(move |e| (*i, e)))
            .collect();
        order.sort_by_key(|(_, e)| e.len());
        for chunk in self.chunks(&order) {
            if self.cancelled() {
                return None;
            }
            for (item, result) in self.logits_isolating_failures(chunk) {
                let State::Pending(acc) = &mut states[item] else {
                    continue; // An earlier window of this text failed.
                };
                match result {
                    Ok((logits, encoded)) => {
                        let scored = post.score(logits, encoded.len(), encoded.truncated);
                        *acc = Some(post.fold_window(acc.take(), scored, aggregate));
                    }
                    Err(err) => states[item] = State::Failed(err),
                }
            }
        }
        Some(
            states
                .into_iter()
                .map(|state| match state {
                    State::Failed(err) => Err(err),
                    State::Pending(Some(scored)) => {
                        Ok(post.finish(scored, aggregate, windowed, self.options.top_k))
                    }
                    State::Pending(None) => Err(Error::tokenize(
                        "the tokenizer produced no sequence for the text",
                    )),
                })
                .collect(),
        )
    }

    /// Consecutive runs of the length-sorted sequences, each at most the
    /// batch size and (when set) the padded-token cap.
    fn chunks<'o, 'e>(&self, order: &'o [(usize, &'e Encoded)]) -> Vec<&'o [(usize, &'e Encoded)]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            let mut real = order[start].1.len();
            while end < order.len() && end - start < self.batch_size {
                // Sorted ascending: the newest sequence is the longest.
                let longest = order[end].1.len();
                let padded = (end - start + 1) * longest;
                if self.max_batch_tokens.is_some_and(|cap| padded > cap) {
                    break;
                }
                real += longest;
                let wasteful = self.max_padding.is_some_and(|fraction| {
                    end - start >= MIN_SPLIT_BATCH && padded as f32 > (1.0 + fraction) * real as f32
                });
                if wasteful {
                    break;
                }
                end += 1;
            }
            chunks.push(&order[start..end]);
            start = end;
        }
        chunks
    }

    /// Logits for each (item, sequence) of a batch. If the batch fails as a
    /// whole, each sequence is run alone so that only the culprit fails.
    fn logits_isolating_failures<'e>(
        &self,
        chunk: &[(usize, &'e Encoded)],
    ) -> Vec<SequenceLogits<'e>> {
        let batch: Vec<&Encoded> = chunk.iter().map(|(_, e)| *e).collect();
        match self.classifier.logits(&batch) {
            Ok(logits) => chunk
                .iter()
                .zip(logits)
                .map(|(&(item, encoded), logits)| (item, Ok((logits, encoded))))
                .collect(),
            Err(err) if chunk.len() == 1 => vec![(chunk[0].0, Err(err))],
            Err(_) => chunk
                .iter()
                .map(|&(item, encoded)| {
                    let result = self
                        .classifier
                        .logits(&[encoded])
                        .map(|mut logits| (logits.remove(0), encoded));
                    (item, result)
                })
                .collect(),
        }
    }
}

/// Where [`Batcher::run_into`] delivers results.
pub trait Sink<T> {
    /// What a failed delivery returns (and the run with it).
    type Error;

    /// One item and its result (`None`: the item had no text), in input order.
    fn deliver(&mut self, item: T, result: Option<Result<Prediction>>) -> Result<(), Self::Error>;

    /// Every item of a window has been delivered.
    fn window_done(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A closure as a [`Sink`] (for [`Batcher::run`]).
struct ClosureSink<F>(F);

impl<T, E, F> Sink<T> for ClosureSink<F>
where
    F: FnMut(T, Option<Result<Prediction>>) -> Result<(), E>,
{
    type Error = E;

    fn deliver(&mut self, item: T, result: Option<Result<Prediction>>) -> Result<(), E> {
        (self.0)(item, result)
    }
}

/// One sequence's item index and its logits (with the sequence), or why
/// they could not be computed.
type SequenceLogits<'e> = (usize, Result<(Vec<f32>, &'e Encoded)>);

/// Where one item of a window stands.
enum State {
    /// Scored so far (None until its first sequence is back).
    Pending(Option<Scored>),
    Failed(Error),
}

impl Classifier {
    /// Classifies `texts`, returning one prediction per text in order.
    /// Texts are batched by length in bounded windows (see [`Batcher`]);
    /// the first text that cannot be classified fails the call (use
    /// [`Classifier::batcher`] for per-text results).
    pub fn classify<S: AsRef<str>>(
        &self,
        texts: &[S],
        options: &ClassifyOptions,
    ) -> Result<Vec<Prediction>> {
        self.classify_inputs(
            texts.iter().map(|text| TextInput::Single(text.as_ref())),
            texts.len(),
            options,
        )
    }

    /// Classifies pairs of texts (premise and hypothesis, question and
    /// answer) with a model trained on pairs, one prediction per pair in
    /// order, each pair encoded as HF's `tokenizer(first, second)`. Long
    /// pairs are cut longer side first; with [`LongText::Window`] too.
    pub fn classify_pairs<A: AsRef<str>, B: AsRef<str>>(
        &self,
        pairs: &[(A, B)],
        options: &ClassifyOptions,
    ) -> Result<Vec<Prediction>> {
        self.classify_inputs(
            pairs
                .iter()
                .map(|(first, second)| TextInput::Pair(first.as_ref(), second.as_ref())),
            pairs.len(),
            options,
        )
    }

    fn classify_inputs<'t>(
        &self,
        inputs: impl Iterator<Item = TextInput<'t>>,
        count: usize,
        options: &ClassifyOptions,
    ) -> Result<Vec<Prediction>> {
        self.check_options(options)?;
        let mut predictions = Vec::with_capacity(count);
        self.batcher(*options).run(inputs, |_: TextInput, result| {
            if let Some(result) = result {
                predictions.push(result?);
            }
            Ok::<(), Error>(())
        })?;
        Ok(predictions)
    }

    /// The batching engine over this model, for streams and per-text
    /// results, with [`DEFAULT_BATCH_SIZE`] until told otherwise.
    pub fn batcher(&self, options: ClassifyOptions) -> Batcher<'_> {
        Batcher::new(self, options, DEFAULT_BATCH_SIZE)
    }
}
