//! BERT (`BertForSequenceClassification`): word + position + token-type
//! embeddings, a post-LN encoder, and the pooler (`bert.pooler.dense` +
//! tanh on `[CLS]`) followed by `classifier`.

use serde::Deserialize;

use super::config::{Activation, Architecture, Config, Positions};
use super::{HeadNames, LayerNames, WeightNames};

/// HF's `BertConfig` fields, with its defaults. RoBERTa's config has the
/// same fields and differs only in two defaults (see [`super::roberta`]),
/// so those two are None when config.json leaves them out.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// None: the family's default (BERT 30522).
    #[serde(default)]
    pub vocab_size: Option<usize>,
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
    /// None: the family's default (BERT 0).
    #[serde(default)]
    pub pad_token_id: Option<usize>,
}

mod defaults {
    use super::Activation;
    pub fn hidden_size() -> usize {
        768
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn hidden_act() -> Activation {
        Activation::Gelu
    }
    pub fn max_position_embeddings() -> usize {
        512
    }
    pub fn type_vocab_size() -> usize {
        2
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
}

impl BertConfig {
    pub fn into_config(self) -> Config {
        self.network(Architecture::Bert, 30522, 0)
    }

    /// The fields as `architecture`'s [`Config`], with that family's
    /// defaults for the vocabulary size and the padding id; positions from
    /// 0 (RoBERTa sets its own).
    pub(super) fn network(
        self,
        architecture: Architecture,
        default_vocab_size: usize,
        default_pad_token_id: usize,
    ) -> Config {
        Config {
            vocab_size: self.vocab_size.unwrap_or(default_vocab_size),
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            pad_token_id: self.pad_token_id.unwrap_or(default_pad_token_id),
            positions: Positions::FromZero,
            ..Config::blank(architecture)
        }
    }
}

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
    token_types: true,
    layers: "bert.encoder.layer",
    layer: LAYER,
    head: HeadNames {
        dense: "bert.pooler.dense",
        activation: Activation::Tanh,
        out_proj: "classifier",
    },
};
