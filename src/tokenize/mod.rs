//! The second stage: tokenization with the `tokenizers` crate, from a
//! model's tokenizer.json or, where the repo has none, from the slow files
//! transformers converts (see [`slow`]).
//!
//! Whatever padding or truncation the file has baked in is replaced: inputs
//! are truncated to the model's limit (or cut into overlapping windows, see
//! [`TextTokenizer::encode_windows`]). Sequences go to the model ragged;
//! the model pads them itself where its path needs padding.

mod pair;
mod slow;
mod split;

use split::{pieces, split_point, SPLIT_MARGIN_TOKENS};
pub use split::{LONG_TEXT_BYTES, MAX_PREFIX_BYTES};

use crate::source::{TokenizerFiles, Vocabulary};
use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// What one prediction is made from: a text, or a pair of texts for models
/// trained on pairs (NLI, paraphrase, question/answer), encoded together as
/// HF's `tokenizer(text, text_pair)` encodes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextInput<'a> {
    Single(&'a str),
    Pair(&'a str, &'a str),
}

impl TextInput<'_> {
    /// Bytes of text, both sides of a pair together.
    pub fn len(&self) -> usize {
        match self {
            Self::Single(text) => text.len(),
            Self::Pair(first, second) => first.len() + second.len(),
        }
    }

    /// Whether there is no text at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a str> for TextInput<'a> {
    fn from(text: &'a str) -> Self {
        Self::Single(text)
    }
}

impl<'a> From<&'a String> for TextInput<'a> {
    fn from(text: &'a String) -> Self {
        Self::Single(text)
    }
}

impl<'a> From<(&'a str, &'a str)> for TextInput<'a> {
    fn from((first, second): (&'a str, &'a str)) -> Self {
        Self::Pair(first, second)
    }
}

/// One text (or pair) as token ids, ready to batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// The tokenizer's mask: 1 for every token, including a literal
    /// "`[PAD]`" typed in the text (only padding the model adds gets 0).
    pub attention_mask: Vec<u32>,
    /// The tokenizer's token type ids: 0 throughout for a single text; a
    /// pair's second text is type 1 where the tokenizer's template says so
    /// (BERT's). Whether the model reads them is its architecture's call.
    pub type_ids: Vec<u32>,
    /// The text had more tokens than the model accepts and was cut.
    pub truncated: bool,
}

impl Encoded {
    /// Tokens, special tokens included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the tokenizer produced no token at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Why a tokenizer.json cannot be used, or a text not encoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The `tokenizers` crate failed (a malformed tokenizer.json, or a text
    /// it cannot encode).
    #[error(transparent)]
    Tokenizers(tokenizers::Error),
    /// The windowing stride leaves no room in a window.
    #[error("the stride ({stride}) must be smaller than the window's {room} text tokens")]
    StrideTooLarge { stride: usize, room: usize },
}

impl From<tokenizers::Error> for TokenizerError {
    fn from(err: tokenizers::Error) -> Self {
        Self::Tokenizers(err)
    }
}

/// A model's tokenizer, set to truncate to the model's limit and never pad.
#[derive(Clone)]
pub struct TextTokenizer {
    /// Truncates to `max_tokens` and adds the special tokens.
    inner: Tokenizer,
    /// The same tokenizer without truncation, for cutting windows.
    untruncated: Tokenizer,
    max_tokens: usize,
}

/// One token as TEI's `/tokenize` shows it: a special token by its own
/// text, any other by its byte span of the input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenSpan {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// Special tokens a window spends on `[CLS]`/`[SEP]`; the stride must leave room.
const SPECIAL_TOKENS: usize = 2;

impl TextTokenizer {
    /// The tokenizer `files` make (`model_type` picks the tokenizer class
    /// for slow files where tokenizer_config.json names none), truncating
    /// to the model's limit or tokenizer_config.json's `model_max_length`,
    /// whichever is smaller. An error names the file at fault.
    pub fn from_files(
        files: &TokenizerFiles,
        model_type: &str,
        model_limit: usize,
    ) -> crate::Result<Self> {
        let (tokenizer, limit) = match &files.vocabulary {
            Vocabulary::Json(json) => {
                let tokenizer = Tokenizer::from_bytes(&json.bytes).map_err(|err| {
                    crate::Error::model_caused(
                        &json.origin,
                        "invalid tokenizer",
                        TokenizerError::from(err),
                    )
                })?;
                (tokenizer, slow::model_max_length(files)?)
            }
            _ => {
                let (tokenizer, settings) = slow::convert(files, model_type)?;
                (tokenizer, settings.model_max_length)
            }
        };
        let max_tokens = limit.map_or(model_limit, |limit| limit.min(model_limit));
        let specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        if max_tokens <= specials {
            let origin = files.config.as_ref().map_or(files.origin(), |c| &c.origin);
            return Err(crate::Error::model(
                origin,
                format!(
                    "model_max_length {max_tokens} leaves no room for text beside the \
                     {specials} special tokens of a pair"
                ),
            ));
        }
        Self::from_tokenizer(tokenizer, max_tokens)
            .map_err(|err| crate::Error::model_caused(files.origin(), "invalid tokenizer", err))
    }

    /// Parses tokenizer.json and sets truncation to `max_tokens` (special
    /// tokens included), with no padding.
    pub fn from_json(json: &[u8], max_tokens: usize) -> Result<Self, TokenizerError> {
        Self::from_tokenizer(Tokenizer::from_bytes(json)?, max_tokens)
    }

    /// `inner` set to truncate to `max_tokens` and never pad.
    fn from_tokenizer(mut inner: Tokenizer, max_tokens: usize) -> Result<Self, TokenizerError> {
        inner.with_padding(None);
        let mut untruncated = inner.clone();
        untruncated.with_truncation(None)?;
        inner.with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))?;
        Ok(Self {
            inner,
            untruncated,
            max_tokens,
        })
    }

    /// The most tokens one sequence may hold, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The largest token id the tokenizer can produce (added tokens
    /// included): it must fit the model's embedding table.
    pub fn max_token_id(&self) -> Option<u32> {
        self.inner.get_vocab(true).into_values().max()
    }

    /// Checks that windows sharing `stride` tokens still advance: the
    /// stride must be smaller than a window's text tokens.
    pub fn check_stride(&self, stride: usize) -> Result<(), TokenizerError> {
        let room = self.max_tokens.saturating_sub(SPECIAL_TOKENS);
        if stride > 0 && stride >= room {
            return Err(TokenizerError::StrideTooLarge { stride, room });
        }
        Ok(())
    }

    /// One text, truncated to the model's limit. A long text is tokenized
    /// a growing prefix at a time (see [`LONG_TEXT_BYTES`]), so a 60 MB line
    /// costs what its first tokens cost.
    pub fn encode(&self, text: &str) -> Result<Encoded, TokenizerError> {
        if text.len() <= LONG_TEXT_BYTES {
            return Ok(into_encoded(self.inner.encode(text, true)?));
        }
        self.encode_bounded(text, false)
    }

    /// One text, its start cut to the model's limit: the last tokens are
    /// kept. A long text is tokenized a growing suffix at a time, as
    /// [`Self::encode`] does with prefixes, so its cost is bounded too.
    pub fn encode_keeping_end(&self, text: &str) -> Result<Encoded, TokenizerError> {
        self.encode_bounded(text, true)
    }

    /// One text cut to the model's limit from its end (or, with
    /// `keep_end`, its start), read a bounded piece at a time.
    fn encode_bounded(&self, text: &str, keep_end: bool) -> Result<Encoded, TokenizerError> {
        let (content, cut) = self.bounded_content(text, self.room(false), keep_end)?;
        let mut encoded = into_encoded(self.inner.post_process(content, None, true)?);
        encoded.truncated = cut;
        Ok(encoded)
    }

    /// A text (or one side of a pair) without special tokens: whole when it
    /// is short, else its first (or, with `from_end`, last) `keep` tokens,
    /// tokenized from pieces of 32 KB, 128 KB, ... cut where the text may be
    /// split, until one holds `keep` tokens plus a margin; and whether it was
    /// cut. The kept tokens are then the whole text's. Longest-first
    /// truncation never keeps more than `keep` tokens of a side, so a pair
    /// comes out as from the whole texts too.
    fn bounded_content(
        &self,
        text: &str,
        keep: usize,
        from_end: bool,
    ) -> Result<(Encoding, bool), TokenizerError> {
        let mut size = LONG_TEXT_BYTES;
        loop {
            let (piece, partial) = match from_end {
                false if size < text.len() => {
                    let cut = split_point(text, size);
                    (&text[..cut], cut < text.len())
                }
                true if size < text.len() => {
                    let from = split_point(text, text.len() - size);
                    (&text[from..], from > 0)
                }
                _ => (text, false),
            };
            let mut content = self.untruncated.encode(piece, false)?;
            // Past MAX_PREFIX_BYTES the piece is what the model gets, however
            // few tokens it holds: a text without whitespace can be one word
            // the tokenizer would otherwise read whole.
            let enough = content.len() >= keep + SPLIT_MARGIN_TOKENS || size >= MAX_PREFIX_BYTES;
            if !partial || enough {
                let cut = partial || content.len() > keep;
                let direction = match from_end {
                    true => TruncationDirection::Left,
                    false => TruncationDirection::Right,
                };
                content.truncate(keep, 0, direction);
                return Ok((content, cut));
            }
            size = size.saturating_mul(4);
        }
    }

    /// Every token of `text` (no truncation), with the special tokens when
    /// `add_special_tokens`, as TEI's `/tokenize` lists them.
    pub fn token_spans(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<TokenSpan>, TokenizerError> {
        let encoding = self.untruncated.encode(text, add_special_tokens)?;
        let spans = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_offsets())
            .zip(encoding.get_special_tokens_mask())
            .zip(encoding.get_tokens())
            .map(|(((&id, &(start, stop)), &special), token)| match special {
                1 => TokenSpan {
                    id,
                    text: token.clone(),
                    special: true,
                    start: None,
                    stop: None,
                },
                _ => TokenSpan {
                    id,
                    text: String::from_utf8_lossy(
                        text.as_bytes().get(start..stop).unwrap_or_default(),
                    )
                    .into_owned(),
                    special: false,
                    start: Some(start),
                    stop: Some(stop),
                },
            })
            .collect();
        Ok(spans)
    }

    /// The text of `ids` (unknown ids are skipped), as TEI's `/decode`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        Ok(self.inner.decode(ids, skip_special_tokens)?)
    }

    /// The content tokens of one sequence (a text's window, or a pair's two
    /// sides together): the model's limit less the special tokens the
    /// post-processor adds to a single text or to a pair; at least one
    /// token per text.
    fn room(&self, pair: bool) -> usize {
        let special = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(pair));
        let texts = if pair { 2 } else { 1 };
        self.max_tokens.saturating_sub(special).max(texts)
    }

    /// Every window of the text, each with its own `[CLS]`/`[SEP]`: the first
    /// is what truncation keeps, then the rest, each window sharing
    /// `stride` tokens with the one before (see [`Self::check_stride`]).
    ///
    /// The windows are cut here rather than by the tokenizer's own overflow
    /// handling: with a stride, tokenizers 0.23.2 returns a short second
    /// window and drops the rest of the text. A long text is tokenized in
    /// pieces (see [`LONG_TEXT_BYTES`]) and only its token ids are kept, so
    /// memory is a few bytes per token, not the tokenizer's hundreds.
    pub fn encode_windows(
        &self,
        text: &str,
        stride: usize,
    ) -> Result<Vec<Encoded>, TokenizerError> {
        let room = self.room(false);
        let ids = self.content_ids(text)?;
        let step = room - stride.min(room - 1);
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let stop = ids.len().min(start + room);
            windows.push(self.window(&ids[start..stop])?);
            if stop == ids.len() {
                return Ok(windows);
            }
            start += step;
        }
    }

    /// The ids of the text's tokens, without special tokens, tokenized a
    /// piece of about [`LONG_TEXT_BYTES`] at a time, split where the text
    /// may be split.
    fn content_ids(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        for piece in pieces(text) {
            ids.extend_from_slice(self.untruncated.encode(piece, false)?.get_ids());
        }
        Ok(ids)
    }

    /// One window's ids with the special tokens added.
    fn window(&self, ids: &[u32]) -> Result<Encoded, TokenizerError> {
        let n = ids.len();
        let content = Encoding::new(
            ids.to_vec(),
            vec![0; n],
            vec![String::new(); n],
            vec![None; n],
            vec![(0, 0); n],
            vec![0; n],
            vec![1; n],
            Vec::new(),
            Default::default(),
        );
        Ok(into_encoded(self.inner.post_process(content, None, true)?))
    }

    /// Encodes several texts or pairs, truncated, spread over the
    /// tokenizer's threads; each goes through [`Self::encode`] or
    /// [`Self::encode_pair`], so a batch cuts as one text at a time does.
    pub fn encode_batch(&self, inputs: &[TextInput]) -> Result<Vec<Encoded>, TokenizerError> {
        use tokenizers::utils::parallelism::MaybeParallelRefIterator;
        inputs
            .maybe_par_iter()
            .map(|input| match *input {
                TextInput::Single(text) => self.encode(text),
                TextInput::Pair(first, second) => self.encode_pair(first, second, false),
            })
            .collect()
    }
}

fn into_encoded(mut encoding: Encoding) -> Encoded {
    let truncated = !encoding.get_overflowing().is_empty();
    // The overflow holds the rest of the text; it is not needed after this.
    encoding.set_overflowing(Vec::new());
    Encoded {
        ids: encoding.get_ids().to_vec(),
        attention_mask: encoding.get_attention_mask().to_vec(),
        type_ids: encoding.get_type_ids().to_vec(),
        truncated,
    }
}

#[cfg(test)]
mod tests;
