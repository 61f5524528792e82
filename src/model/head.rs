//! The sequence-classification head: the `[CLS]` vector -> `pre_classifier`
//! -> ReLU -> `classifier`.
//!
//! Its layers are ours ([`Linear`], packed for the CPU kernel) rather than
//! candle_nn's: candle's matmul blocks the product by the batch size, so a
//! text's logits moved in the last bits with the batch it landed in. Ours
//! computes every output in the same order whatever the batch, so a text
//! gets the same scores alone, in any batch, on any partition.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, Config};
use super::linear::Linear;

#[derive(Debug, Clone)]
pub struct ClassificationHead {
    pre_classifier: Linear,
    classifier: Linear,
}

impl ClassificationHead {
    /// `num_labels` is the classifier's row count, read from the weights.
    pub fn load(vb: VarBuilder, cfg: &Config, num_labels: usize) -> Result<Self> {
        Ok(Self {
            pre_classifier: Linear::load(cfg.dim, cfg.dim, vb.pp("pre_classifier"))?,
            classifier: Linear::load(cfg.dim, num_labels, vb.pp("classifier"))?,
        })
    }
}

impl Module for ClassificationHead {
    /// `hidden`: (batch, seq, dim). Returns logits (batch, num_labels).
    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self
            .pre_classifier
            .forward_fused(&cls, None, Some(Activation::Relu))?;
        self.classifier.forward(&pooled)
    }
}
