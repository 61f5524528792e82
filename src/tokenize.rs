//! The second stage: tokenization with the `tokenizers` crate, from a
//! model's tokenizer.json.
//!
//! Whatever padding or truncation the file has baked in is replaced: inputs
//! are truncated to the model's limit (or cut into overlapping windows, see
//! [`TextTokenizer::encode_windows`]) and padded per batch, to the longest
//! sequence in that batch, by [`pad_batch`].

use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// One text as token ids, ready to batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// 1 for every real token, including a literal "`[PAD]`" typed in the
    /// text; only padding added by [`pad_batch`] gets 0.
    pub attention_mask: Vec<u32>,
    /// The text had more tokens than the model accepts and was cut.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

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

#[derive(Clone)]
pub struct TextTokenizer {
    /// Truncates to `max_tokens` and adds the special tokens.
    inner: Tokenizer,
    /// The same tokenizer without truncation, for cutting windows.
    untruncated: Tokenizer,
    max_tokens: usize,
}

/// Special tokens a window spends on `[CLS]`/`[SEP]`; the stride must leave room.
const SPECIAL_TOKENS: usize = 2;

impl TextTokenizer {
    /// Parses tokenizer.json and sets truncation to `max_tokens` (special
    /// tokens included), with no padding.
    pub fn from_json(json: &[u8], max_tokens: usize) -> Result<Self, TokenizerError> {
        let mut inner = Tokenizer::from_bytes(json)?;
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

    pub fn encode(&self, text: &str) -> Result<Encoded, TokenizerError> {
        let encoding = self.inner.encode(text, true)?;
        Ok(into_encoded(encoding))
    }

    /// Every window of the text, each with its own `[CLS]`/`[SEP]`: the first
    /// is what truncation keeps, then the rest, each window sharing
    /// `stride` tokens with the one before (see [`Self::check_stride`]).
    ///
    /// The windows are cut here rather than by the tokenizer's own overflow
    /// handling: with a stride, tokenizers 0.23.2 returns a short second
    /// window and drops the rest of the text.
    pub fn encode_windows(
        &self,
        text: &str,
        stride: usize,
    ) -> Result<Vec<Encoded>, TokenizerError> {
        let special = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let room = self.max_tokens.saturating_sub(special).max(1);
        let mut content = self.untruncated.encode(text, false)?;
        content.truncate(room, stride.min(room - 1), TruncationDirection::Right);
        let rest = content.take_overflowing();
        std::iter::once(content)
            .chain(rest)
            .map(|piece| Ok(into_encoded(self.inner.post_process(piece, None, true)?)))
            .collect()
    }

    /// Encodes several texts; the tokenizer parallelises over them.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>, TokenizerError> {
        let encodings = self.inner.encode_batch(texts.to_vec(), true)?;
        Ok(encodings.into_iter().map(into_encoded).collect())
    }
}

fn into_encoded(mut encoding: Encoding) -> Encoded {
    let truncated = !encoding.get_overflowing().is_empty();
    // The overflow holds the rest of the text; it is not needed after this.
    encoding.set_overflowing(Vec::new());
    Encoded {
        ids: encoding.get_ids().to_vec(),
        attention_mask: encoding.get_attention_mask().to_vec(),
        truncated,
    }
}

/// A batch padded on the right to its longest member, flattened row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub batch_size: usize,
    pub seq_len: usize,
}

pub fn pad_batch(items: &[&Encoded], pad_token_id: u32) -> PaddedBatch {
    let seq_len = items.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(items.len() * seq_len);
    let mut attention_mask = Vec::with_capacity(items.len() * seq_len);
    for item in items {
        let padding = seq_len - item.len();
        ids.extend_from_slice(&item.ids);
        ids.extend(std::iter::repeat_n(pad_token_id, padding));
        attention_mask.extend_from_slice(&item.attention_mask);
        attention_mask.extend(std::iter::repeat_n(0, padding));
    }
    PaddedBatch {
        ids,
        attention_mask,
        batch_size: items.len(),
        seq_len,
    }
}
