//! The sequence-classification head: the `[CLS]` vector -> `pre_classifier`
//! -> ReLU -> `classifier`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::config::Config;

#[derive(Debug, Clone)]
pub struct ClassificationHead {
    pre_classifier: Linear,
    classifier: Linear,
}

impl ClassificationHead {
    /// `num_labels` is the classifier's row count, read from the weights.
    pub fn load(vb: VarBuilder, cfg: &Config, num_labels: usize) -> Result<Self> {
        Ok(Self {
            pre_classifier: linear(cfg.dim, cfg.dim, vb.pp("pre_classifier"))?,
            classifier: linear(cfg.dim, num_labels, vb.pp("classifier"))?,
        })
    }
}

impl Module for ClassificationHead {
    /// `hidden`: (batch, seq, dim). Returns logits (batch, num_labels).
    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pre_classifier.forward(&cls)?.relu()?;
        self.classifier.forward(&pooled)
    }
}
