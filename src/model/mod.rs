//! Sequence classifiers as candle modules that mirror HF transformers'
//! `*ForSequenceClassification` weight for weight.
//!
//! One encoder ([`encoder`]) and one set of kernels (`cpu`) serve every
//! architecture. Each architecture is a small file ([`distilbert`],
//! [`bert`], [`roberta`]) that reads its config.json fields and names its
//! weights ([`WeightNames`]); the embeddings and the head differ only in
//! what those names and the [`Config`] say.

pub mod bert;
pub mod config;
pub(crate) mod cpu;
pub mod distilbert;
pub mod embeddings;
pub mod encoder;
pub mod head;
pub mod linear;
pub mod norm;
pub mod roberta;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{Activation, Architecture, Config, ProblemType, WordTable};
use embeddings::Embeddings;
use encoder::Encoder;
use head::ClassificationHead;

/// Where an architecture keeps its weights: HF's names, relative to the
/// checkpoint's root.
#[derive(Debug, Clone, Copy)]
pub struct WeightNames {
    /// The embeddings module; its tables are `word_embeddings`,
    /// `position_embeddings`, `token_type_embeddings` and `LayerNorm` in
    /// every family.
    pub embeddings: &'static str,
    /// Whether there is a `token_type_embeddings` table.
    pub token_types: bool,
    /// The encoder's layers, each under `{layers}.{index}`.
    pub layers: &'static str,
    pub layer: LayerNames,
    pub head: HeadNames,
}

/// One encoder layer's modules, relative to the layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_norm: &'static str,
}

/// The classification head on the first token: `out_proj(activation(dense(x)))`.
#[derive(Debug, Clone, Copy)]
pub struct HeadNames {
    pub dense: &'static str,
    pub activation: Activation,
    pub out_proj: &'static str,
}

impl WeightNames {
    /// The names `architecture`'s checkpoints use.
    pub fn of(architecture: Architecture) -> &'static Self {
        match architecture {
            Architecture::DistilBert => &distilbert::WEIGHTS,
            Architecture::Bert => &bert::WEIGHTS,
            Architecture::Roberta => &roberta::WEIGHTS,
        }
    }

    /// The word-embedding table: the largest tensor, and the one that says
    /// whether a file holds this architecture at all.
    pub fn word_embeddings(&self) -> String {
        format!("{}.word_embeddings.weight", self.embeddings)
    }

    /// The head's last layer, whose rows are the labels.
    pub fn classifier(&self) -> String {
        format!("{}.weight", self.head.out_proj)
    }
}

/// Any supported `*ForSequenceClassification`: embeddings, encoder, head.
#[derive(Debug, Clone)]
pub struct SequenceClassifier {
    embeddings: Embeddings,
    encoder: Encoder,
    head: ClassificationHead,
}

impl SequenceClassifier {
    /// `vb` is rooted at the checkpoint's top level (where `bert.*` or
    /// `distilbert.*` and the head live); `num_labels` is the classifier's
    /// row count, read from the weights.
    pub fn load(vb: VarBuilder, cfg: &Config, num_labels: usize) -> Result<Self> {
        let names = WeightNames::of(cfg.architecture);
        Ok(Self {
            embeddings: Embeddings::load(vb.pp(names.embeddings), cfg, names)?,
            encoder: Encoder::load(vb.pp(names.layers), cfg, &names.layer)?,
            head: ClassificationHead::load(vb, cfg, &names.head, num_labels)?,
        })
    }

    /// Narrows the encoder's linear layers to int8 or bf16 (see
    /// [`linear::Linear::narrowed`]). Embeddings, norms, attention and the
    /// small classification head stay f32.
    pub fn narrow(&mut self, to: linear::Narrow) -> Result<()> {
        self.encoder.narrow(to)
    }

    /// `input_ids` and `attention_mask`: (batch, seq) u32. Returns logits
    /// (batch, num_labels) in f32.
    ///
    /// On the CPU kernels a right-padded batch runs unpadded from the
    /// embeddings on (see [`encoder::Sequences::Unpadded`]): no row of any
    /// layer is spent on padding, and the head reads each sequence's first
    /// row.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        if let Some(lengths) = encoder::unpadded_lengths(input_ids.device(), attention_mask)? {
            let embedded = self.embeddings.forward_unpadded(input_ids, &lengths)?;
            let hidden = self.encoder.forward_unpadded(embedded, &lengths)?;
            let firsts: Vec<u32> = lengths
                .iter()
                .scan(0u32, |row, &len| {
                    let first = *row;
                    *row += len as u32;
                    Some(first)
                })
                .collect();
            let firsts = Tensor::from_vec(firsts, lengths.len(), hidden.device())?;
            let first_rows = hidden.index_select(&firsts, 0)?.unsqueeze(1)?;
            return self.head.forward(&first_rows);
        }
        let embedded = self.embeddings.forward(input_ids)?;
        let hidden = self.encoder.forward(embedded, attention_mask)?;
        self.head.forward(&hidden)
    }
}
