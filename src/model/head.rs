//! The sequence-classification head on the first token (`[CLS]` or `<s>`):
//! `out_proj(activation(dense(x)))`. DistilBERT's `pre_classifier` + ReLU +
//! `classifier`, BERT's pooler (dense + tanh) + `classifier` and RoBERTa's
//! `classifier.dense` + tanh + `classifier.out_proj` are all this shape;
//! [`HeadNames`] says which.
//!
//! Its layers are ours ([`Linear`], packed for the CPU kernel) rather than
//! candle_nn's: candle's matmul blocks the product by the batch size, so a
//! text's logits moved in the last bits with the batch it landed in. Ours
//! computes every output in the same order whatever the batch, so a text
//! gets the same scores alone, in any batch, on any partition.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, Config};
use super::cpu::KernelPlan;
use super::linear::Linear;
use super::names::HeadNames;

#[derive(Debug, Clone)]
pub struct ClassificationHead {
    dense: Linear,
    activation: Activation,
    out_proj: Linear,
}

impl ClassificationHead {
    /// `vb` is the checkpoint's root; `num_labels` is the classifier's row
    /// count, read from the weights.
    pub fn load(
        vb: VarBuilder,
        cfg: &Config,
        names: &HeadNames,
        num_labels: usize,
        plan: &KernelPlan,
    ) -> Result<Self> {
        let dim = cfg.hidden_size;
        Ok(Self {
            dense: Linear::load(dim, dim, vb.pp(names.dense), plan)?,
            activation: names.activation,
            out_proj: Linear::load(dim, num_labels, vb.pp(names.out_proj), plan)?,
        })
    }
}

impl Module for ClassificationHead {
    /// `hidden`: (batch, seq, dim). Returns logits (batch, num_labels).
    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        ensure_finite(&first)?;
        let pooled = self
            .dense
            .forward_fused(&first, None, Some(self.activation))?;
        self.out_proj.forward(&pooled)
    }
}

/// Refuses a head input holding NaN or an infinity (the encoder overflowed):
/// the head's ReLU or tanh can turn it into a finite, and wrong, answer.
fn ensure_finite(rows: &Tensor) -> Result<()> {
    match super::cpu::first_non_finite(rows)? {
        None => Ok(()),
        Some(_) => Err(candle_core::Error::Msg(
            "the encoder computed a non-finite hidden state (NaN or infinity), so no label is \
             reported; the model's weights overflow on this text"
                .into(),
        )),
    }
}
