//! DistilBERT for sequence classification, as candle modules that mirror
//! HF transformers' `DistilBertForSequenceClassification` weight for weight.

pub mod config;
pub(crate) mod cpu;
pub mod embeddings;
pub mod encoder;
pub mod head;
pub mod linear;
pub mod norm;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{Activation, Config, ProblemType, WordTable};
use embeddings::Embeddings;
use encoder::Transformer;
use head::ClassificationHead;

#[derive(Debug, Clone)]
pub struct DistilBertForSequenceClassification {
    embeddings: Embeddings,
    transformer: Transformer,
    head: ClassificationHead,
}

impl DistilBertForSequenceClassification {
    /// `vb` is rooted at the checkpoint's top level (where `distilbert.*`,
    /// `pre_classifier.*` and `classifier.*` live).
    pub fn load(vb: VarBuilder, cfg: &Config, num_labels: usize) -> Result<Self> {
        let encoder = vb.pp("distilbert");
        Ok(Self {
            embeddings: Embeddings::load(encoder.pp("embeddings"), cfg)?,
            transformer: Transformer::load(encoder.pp("transformer"), cfg)?,
            head: ClassificationHead::load(vb, cfg, num_labels)?,
        })
    }

    /// Quantizes the encoder's linear layers to int8 (see
    /// [`linear::Linear::to_int8`]). Embeddings, norms and the small
    /// classification head stay f32.
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.transformer.quantize_int8()
    }

    /// `input_ids` and `attention_mask`: (batch, seq) u32. Returns logits
    /// (batch, num_labels) in f32.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let embedded = self.embeddings.forward(input_ids)?;
        let hidden = self.transformer.forward(&embedded, attention_mask)?;
        self.head.forward(&hidden)
    }
}
