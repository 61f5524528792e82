//! BERT (`BertForSequenceClassification`): word + position + token-type
//! embeddings, a post-LN encoder, and the pooler (`bert.pooler.dense` +
//! tanh on `[CLS]`) followed by `classifier`.

use super::config::Activation;
use super::names::{HeadNames, LayerNames, TokenTypes, WeightNames};

/// The encoder layer's names, shared with RoBERTa.
pub(super) const LAYER: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

/// `bert.encoder.layer.N.*`, as HF's modeling_bert.py names them.
pub const WEIGHTS: WeightNames = WeightNames {
    embeddings: "bert.embeddings",
    token_types: TokenTypes::FromTokenizer,
    layers: "bert.encoder.layer",
    layer: LAYER,
    head: HeadNames {
        dense: "bert.pooler.dense",
        activation: Activation::Tanh,
        out_proj: "classifier",
    },
};
