//! DistilBERT (`DistilBertForSequenceClassification`): word and position
//! embeddings (no token types), a post-LN encoder with fixed eps 1e-12, and
//! `pre_classifier` -> ReLU -> `classifier` on `[CLS]`.

use serde::Deserialize;

use super::config::{Activation, Architecture, Config, Positions};
use super::{HeadNames, LayerNames, WeightNames};

/// HF's `DistilBertConfig` fields, with its defaults, so a sparse config
/// means what it means to transformers.
#[derive(Debug, Clone, Deserialize)]
pub struct DistilBertConfig {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "defaults::dim")]
    pub dim: usize,
    #[serde(default = "defaults::n_layers")]
    pub n_layers: usize,
    #[serde(default = "defaults::n_heads")]
    pub n_heads: usize,
    #[serde(default = "defaults::hidden_dim")]
    pub hidden_dim: usize,
    #[serde(default = "defaults::activation")]
    pub activation: Activation,
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
}

mod defaults {
    use super::Activation;
    pub fn vocab_size() -> usize {
        30522
    }
    pub fn dim() -> usize {
        768
    }
    pub fn n_layers() -> usize {
        6
    }
    pub fn n_heads() -> usize {
        12
    }
    pub fn hidden_dim() -> usize {
        3072
    }
    pub fn max_position_embeddings() -> usize {
        512
    }
    pub fn activation() -> Activation {
        Activation::Gelu
    }
}

impl DistilBertConfig {
    pub fn into_config(self) -> Config {
        Config {
            vocab_size: self.vocab_size,
            hidden_size: self.dim,
            num_hidden_layers: self.n_layers,
            num_attention_heads: self.n_heads,
            intermediate_size: self.hidden_dim,
            hidden_act: self.activation,
            // DistilBERT's norms are nn.LayerNorm(dim, eps=1e-12) in code,
            // not in its config.
            layer_norm_eps: 1e-12,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: 0,
            pad_token_id: self.pad_token_id,
            positions: Positions::FromZero,
            sinusoidal_pos_embds: self.sinusoidal_pos_embds,
            ..Config::blank(Architecture::DistilBert)
        }
    }
}

/// DistilBERT's config.json name for a [`Config`] field.
pub(super) fn json_name(field: &'static str) -> &'static str {
    match field {
        "hidden_size" => "dim",
        "num_hidden_layers" => "n_layers",
        "num_attention_heads" => "n_heads",
        "intermediate_size" => "hidden_dim",
        other => other,
    }
}

/// `distilbert.transformer.layer.N.*`, as HF's modeling_distilbert.py names them.
pub const WEIGHTS: WeightNames = WeightNames {
    embeddings: "distilbert.embeddings",
    token_types: false,
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
