//! The batch the model takes: sequences end to end, ragged, and the
//! padded form built from it where a path needs padding.

/// A batch as the model takes it: the sequences' token ids end to end,
/// every one real, each sequence's length (TEI's `Batch`, with lengths in
/// place of cumulative offsets) and, where any is not 0, the token type
/// ids beside the ids. Padding, where a path needs it, is made from this
/// by [`super::SequenceClassifier::forward`] alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaggedBatch {
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
    /// None when every token is type 0 (every single text).
    pub type_ids: Option<Vec<u32>>,
}

impl RaggedBatch {
    /// Sequences (ids, type ids) laid end to end; None where one is empty
    /// (no model takes an empty sequence) or its type ids are not one per
    /// token.
    pub fn new<'a>(sequences: impl IntoIterator<Item = (&'a [u32], &'a [u32])>) -> Option<Self> {
        let mut batch = Self::default();
        let mut type_ids = Vec::new();
        for (ids, types) in sequences {
            if ids.is_empty() || types.len() != ids.len() {
                return None;
            }
            batch.ids.extend_from_slice(ids);
            batch.lengths.push(ids.len());
            type_ids.extend_from_slice(types);
        }
        batch.type_ids = type_ids.iter().any(|&t| t != 0).then_some(type_ids);
        Some(batch)
    }

    /// Single texts (every token type 0) laid end to end.
    pub fn of_texts<'a>(sequences: impl IntoIterator<Item = &'a [u32]>) -> Option<Self> {
        let sequences: Vec<&[u32]> = sequences.into_iter().collect();
        let zeros = vec![0u32; sequences.iter().map(|ids| ids.len()).max().unwrap_or(0)];
        Self::new(sequences.into_iter().map(|ids| (ids, &zeros[..ids.len()])))
    }

    /// The longest sequence's length.
    pub fn max_length(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// (batch, max_length) ids right-padded with `pad_id`, the 1/0
    /// attention mask HF builds for them, and the type ids padded with 0
    /// (HF's `pad_token_type_id`) where there are any.
    pub(super) fn padded(&self, pad_id: u32) -> Padded {
        let width = self.max_length();
        let rows = self.lengths.len();
        let mut padded = Padded {
            ids: Vec::with_capacity(rows * width),
            mask: Vec::with_capacity(rows * width),
            type_ids: self
                .type_ids
                .as_ref()
                .map(|_| Vec::with_capacity(rows * width)),
            shape: (rows, width),
        };
        let mut start = 0;
        for &len in &self.lengths {
            let pad = width - len;
            padded.ids.extend_from_slice(&self.ids[start..start + len]);
            padded.ids.extend(std::iter::repeat_n(pad_id, pad));
            padded.mask.extend(std::iter::repeat_n(1u32, len));
            padded.mask.extend(std::iter::repeat_n(0u32, pad));
            if let (Some(out), Some(types)) = (&mut padded.type_ids, &self.type_ids) {
                out.extend_from_slice(&types[start..start + len]);
                out.extend(std::iter::repeat_n(0u32, pad));
            }
            start += len;
        }
        padded
    }
}

/// A [`RaggedBatch`] padded to its longest sequence, row-major.
pub(super) struct Padded {
    pub ids: Vec<u32>,
    pub mask: Vec<u32>,
    pub type_ids: Option<Vec<u32>>,
    pub shape: (usize, usize),
}
