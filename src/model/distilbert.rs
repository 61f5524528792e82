//! DistilBERT (`DistilBertForSequenceClassification`): word and position
//! embeddings (no token types), a post-LN encoder with fixed eps 1e-12, and
//! `pre_classifier` -> ReLU -> `classifier` on `[CLS]`.

use super::config::Activation;
use super::names::{HeadNames, LayerNames, TokenTypes, WeightNames};

/// `distilbert.transformer.layer.N.*`, as HF's modeling_distilbert.py names them.
pub const WEIGHTS: WeightNames = WeightNames {
    embeddings: "distilbert.embeddings",
    token_types: TokenTypes::None,
    layers: "distilbert.transformer.layer",
    layer: LayerNames {
        query: "attention.q_lin",
        key: "attention.k_lin",
        value: "attention.v_lin",
        attention_output: "attention.out_lin",
        attention_norm: "sa_layer_norm",
        intermediate: "ffn.lin1",
        output: "ffn.lin2",
        output_norm: "output_layer_norm",
    },
    head: HeadNames {
        dense: "pre_classifier",
        activation: Activation::Relu,
        out_proj: "classifier",
    },
};
