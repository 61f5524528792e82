//! RoBERTa (`RobertaForSequenceClassification`), and XLM-RoBERTa and
//! CamemBERT, which are the same network: BERT's encoder, positions that
//! start after the padding index and skip pad tokens, one token type, and
//! the head `classifier.dense` + tanh + `classifier.out_proj` on `<s>`.
//! The three differ only in their tokenizers.

use serde::Deserialize;

use super::bert::defaults;
use super::config::{Activation, Architecture, Config, Positions};
use super::{HeadNames, WeightNames};

/// HF's `RobertaConfig` (and `XLMRobertaConfig`, `CamembertConfig`)
/// fields: BERT's, with RoBERTa's defaults where they differ.
#[derive(Debug, Clone, Deserialize)]
pub struct RobertaConfig {
    #[serde(default = "roberta_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: Activation,
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "defaults::type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "roberta_pad_token_id")]
    pub pad_token_id: usize,
}

fn roberta_vocab_size() -> usize {
    50265
}
fn roberta_pad_token_id() -> usize {
    1
}

impl RobertaConfig {
    pub fn into_config(self) -> Config {
        Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            pad_token_id: self.pad_token_id,
            positions: Positions::AfterPadding {
                padding_idx: self.pad_token_id,
            },
            ..Config::blank(Architecture::Roberta)
        }
    }
}

/// `roberta.encoder.layer.N.*`: BERT's layer names under `roberta`. HF
/// saves XLM-R and CamemBERT classifiers under `roberta` too.
pub const WEIGHTS: WeightNames = WeightNames {
    embeddings: "roberta.embeddings",
    token_types: true,
    layers: "roberta.encoder.layer",
    layer: super::bert::LAYER,
    head: HeadNames {
        dense: "classifier.dense",
        activation: Activation::Tanh,
        out_proj: "classifier.out_proj",
    },
};
