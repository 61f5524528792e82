//! RoBERTa (`RobertaForSequenceClassification`), and XLM-RoBERTa and
//! CamemBERT, which are the same network: BERT's encoder, positions that
//! start after the padding index and skip pad tokens, one token type, and
//! the head `classifier.dense` + tanh + `classifier.out_proj` on `<s>`.
//! The three differ only in their tokenizers.

use super::config::Activation;
use super::names::{HeadNames, TokenTypes, WeightNames};

/// `roberta.encoder.layer.N.*`: BERT's layer names under `roberta`. HF
/// saves XLM-R and CamemBERT classifiers under `roberta` too.
pub const WEIGHTS: WeightNames = WeightNames {
    embeddings: "roberta.embeddings",
    token_types: TokenTypes::AlwaysZero,
    layers: "roberta.encoder.layer",
    layer: super::bert::LAYER,
    head: HeadNames {
        dense: "classifier.dense",
        activation: Activation::Tanh,
        out_proj: "classifier.out_proj",
    },
};
