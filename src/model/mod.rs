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
pub use names::{HeadNames, LayerNames, WeightNames};

/// The names `architecture`'s checkpoints use.
pub fn weight_names(architecture: Architecture) -> &'static WeightNames {
    match architecture {
        Architecture::DistilBert => &distilbert::WEIGHTS,
        Architecture::Bert => &bert::WEIGHTS,
        Architecture::Roberta => &roberta::WEIGHTS,
    }
}

/// A batch as the model takes it: the sequences' token ids end to end,
/// every one real, and each sequence's length (TEI's `Batch`, with lengths
/// in place of cumulative offsets). Padding, where a path needs it, is made
/// from this by [`SequenceClassifier::forward`] alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaggedBatch {
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
}

impl RaggedBatch {
    /// Sequences laid end to end; None where one is empty (no model takes
    /// an empty sequence).
    pub fn new<'a>(sequences: impl IntoIterator<Item = &'a [u32]>) -> Option<Self> {
        let mut batch = Self::default();
        for ids in sequences {
            if ids.is_empty() {
                return None;
            }
            batch.ids.extend_from_slice(ids);
            batch.lengths.push(ids.len());
        }
        Some(batch)
    }

    /// The longest sequence's length.
    pub fn max_length(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// (batch, max_length) ids right-padded with `pad_id`, and the 1/0
    /// attention mask HF builds for them, on `device`.
    fn padded(&self, pad_id: u32, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
        let width = self.max_length();
        let mut ids = Vec::with_capacity(self.lengths.len() * width);
        let mut mask = Vec::with_capacity(self.lengths.len() * width);
        let mut start = 0;
        for &len in &self.lengths {
            ids.extend_from_slice(&self.ids[start..start + len]);
            ids.extend(std::iter::repeat_n(pad_id, width - len));
            mask.extend(std::iter::repeat_n(1u32, len));
            mask.extend(std::iter::repeat_n(0u32, width - len));
            start += len;
        }
        let shape = (self.lengths.len(), width);
        Ok((
            Tensor::from_vec(ids, shape, device)?,
            Tensor::from_vec(mask, shape, device)?,
        ))
    }
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
            let embedded =
                self.embeddings
                    .forward_unpadded(&batch.ids, &batch.lengths, &self.device)?;
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
        let (input_ids, attention_mask) = batch.padded(self.pad_token_id, &self.device)?;
        let embedded = self.embeddings.forward(&input_ids)?;
        let hidden = self.encoder.forward(embedded, &attention_mask)?;
        self.head.forward(&hidden)
    }
}
