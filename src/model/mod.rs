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
mod ragged;
pub mod roberta;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{Activation, Architecture, Config, ProblemType, WordTable};
use cpu::KernelPlan;
use embeddings::Embeddings;
use encoder::Encoder;
use head::ClassificationHead;
pub use names::{HeadNames, LayerNames, TokenTypes, WeightNames};
pub use ragged::RaggedBatch;

/// The names `architecture`'s checkpoints use.
pub fn weight_names(architecture: Architecture) -> &'static WeightNames {
    match architecture {
        Architecture::DistilBert => &distilbert::WEIGHTS,
        Architecture::Bert => &bert::WEIGHTS,
        Architecture::Roberta => &roberta::WEIGHTS,
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
