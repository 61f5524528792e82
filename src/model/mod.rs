//! Sequence classifiers as candle modules that mirror HF transformers'
//! `*ForSequenceClassification` weight for weight.
//!
//! One encoder (`encoder.rs`) and one set of kernels (`cpu/`) serve every
//! architecture. Each architecture is a small file ([`distilbert`],
//! [`bert`], [`roberta`]) that names its weights ([`WeightNames`]); reading
//! config.json into the shared [`Config`] is [`config`]'s job. The
//! embeddings and the head differ only in what those names and the config
//! say.

pub mod bert;
pub mod config;
pub(crate) mod cpu;
pub mod distilbert;
pub(crate) mod embeddings;
pub(crate) mod encoder;
pub(crate) mod head;
pub(crate) mod linear;
pub mod names;
pub(crate) mod norm;
pub mod roberta;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{Activation, Architecture, Config, ProblemType, WordTable};
use cpu::KernelPlan;
use embeddings::Embeddings;
use encoder::Encoder;
use head::ClassificationHead;
pub use names::{HeadNames, LayerNames, TokenTypes, WeightNames};

/// The names `architecture`'s checkpoints use.
pub fn weight_names(architecture: Architecture) -> &'static WeightNames {
    match architecture {
        Architecture::DistilBert => &distilbert::WEIGHTS,
        Architecture::Bert => &bert::WEIGHTS,
        Architecture::Roberta => &roberta::WEIGHTS,
    }
}

/// A batch as the model takes it: the sequences' token ids end to end,
/// every one real, each sequence's length (TEI's `Batch`, with lengths in
/// place of cumulative offsets) and, where any is not 0, the token type
/// ids beside the ids. Padding, where a path needs it, is made from this
/// by [`SequenceClassifier::forward`] alone.
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
    fn padded(&self, pad_id: u32) -> Padded {
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
struct Padded {
    ids: Vec<u32>,
    mask: Vec<u32>,
    type_ids: Option<Vec<u32>>,
    shape: (usize, usize),
}

/// Any supported `*ForSequenceClassification`: embeddings, encoder, head.
#[derive(Debug, Clone)]
pub struct SequenceClassifier {
    embeddings: Embeddings,
    encoder: Encoder,
    head: ClassificationHead,
    /// The plan the layers were built for.
    plan: KernelPlan,
    pad_token_id: u32,
    device: candle_core::Device,
}

impl SequenceClassifier {
    /// `vb` is rooted at the checkpoint's top level (where `bert.*` or
    /// `distilbert.*` and the head live); `num_labels` is the classifier's
    /// row count, read from the weights; `plan` says which kernels run.
    pub fn load(vb: VarBuilder, cfg: &Config, num_labels: usize, plan: KernelPlan) -> Result<Self> {
        let names = weight_names(cfg.architecture);
        let device = vb.device().clone();
        Ok(Self {
            embeddings: Embeddings::load(vb.pp(names.embeddings), cfg, names, &plan)?,
            encoder: Encoder::load(vb.pp(names.layers), cfg, &names.layer, &plan)?,
            head: ClassificationHead::load(vb, cfg, &names.head, num_labels, &plan)?,
            plan,
            pad_token_id: cfg.pad_token_id as u32,
            device,
        })
    }

    /// Narrows the encoder's linear layers to int8 or bf16 (see
    /// `Linear::narrowed`). Embeddings, norms, attention and the
    /// small classification head stay f32.
    pub fn narrow(&mut self, to: linear::Narrow) -> Result<()> {
        self.encoder.narrow(to)
    }

    /// The kernels this model runs.
    pub fn plan(&self) -> &KernelPlan {
        &self.plan
    }

    /// Whether batches run ragged (our CPU kernels) rather than padded.
    pub fn runs_unpadded(&self) -> bool {
        self.plan.cpu.is_some()
    }

    /// Logits (batch, num_labels) in f32 for a ragged batch.
    ///
    /// On our CPU kernels the batch runs as it is, its tokens end to end:
    /// no row of any layer is spent on padding, and the head reads each
    /// sequence's first row. Elsewhere (candle's generic ops) it is padded
    /// here, with HF's attention mask.
    pub fn forward(&self, batch: &RaggedBatch) -> Result<Tensor> {
        if self.runs_unpadded() {
            if u32::try_from(batch.ids.len()).is_err() {
                candle_core::bail!("a batch of {} tokens is too large", batch.ids.len());
            }
            let embedded = self.embeddings.forward_unpadded(batch, &self.device)?;
            let hidden = self.encoder.forward_unpadded(embedded, &batch.lengths)?;
            let firsts: Vec<u32> = batch
                .lengths
                .iter()
                .scan(0u32, |row, &len| {
                    let first = *row;
                    *row += len as u32;
                    Some(first)
                })
                .collect();
            let firsts = Tensor::from_vec(firsts, batch.lengths.len(), hidden.device())?;
            let first_rows = hidden.index_select(&firsts, 0)?.unsqueeze(1)?;
            return self.head.forward(&first_rows);
        }
        let padded = batch.padded(self.pad_token_id);
        let embedded = self.embeddings.forward_padded(
            &padded.ids,
            padded.type_ids.as_deref(),
            padded.shape,
            &self.device,
        )?;
        let attention_mask = Tensor::from_vec(padded.mask, padded.shape, &self.device)?;
        let hidden = self.encoder.forward(embedded, &attention_mask)?;
        self.head.forward(&hidden)
    }
}
