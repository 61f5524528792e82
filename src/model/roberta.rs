//! RoBERTa (`RobertaForSequenceClassification`), and XLM-RoBERTa and
//! CamemBERT, which are the same network: BERT's encoder, positions that
//! start after the padding index and skip pad tokens, one token type, and
//! the head `classifier.dense` + tanh + `classifier.out_proj` on `<s>`.
//! The three differ only in their tokenizers.

use serde::Deserialize;

use super::bert::BertConfig;
use super::config::{Activation, Architecture, Config, Positions};
use super::{HeadNames, WeightNames};

/// HF's `RobertaConfig` (and `XLMRobertaConfig`, `CamembertConfig`):
/// BERT's fields, with RoBERTa's defaults where they differ (a vocabulary
/// of 50265, padding id 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct RobertaConfig(pub BertConfig);

impl RobertaConfig {
    pub fn into_config(self) -> Config {
        let mut config = self.0.network(Architecture::Roberta, 50265, 1);
        config.positions = Positions::AfterPadding {
            padding_idx: config.pad_token_id,
        };
        config
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
