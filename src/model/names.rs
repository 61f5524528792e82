//! Where an architecture keeps its weights: the shared shape of the names
//! each architecture file fills in.

use super::config::Activation;

/// Where an architecture keeps its weights: HF's names, relative to the
/// checkpoint's root.
#[derive(Debug, Clone, Copy)]
pub struct WeightNames {
    /// The embeddings module; its tables are `word_embeddings`,
    /// `position_embeddings`, `token_type_embeddings` and `LayerNorm` in
    /// every family.
    pub embeddings: &'static str,
    /// Whether there is a `token_type_embeddings` table, and what indexes it.
    pub token_types: TokenTypes,
    /// The encoder's layers, each under `{layers}.{index}`.
    pub layers: &'static str,
    pub layer: LayerNames,
    pub head: HeadNames,
}

/// An architecture's token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypes {
    /// No `token_type_embeddings` table (DistilBERT).
    None,
    /// A table whose row 0 every token gets: HF's tokenizers for the family
    /// return no `token_type_ids` (RoBERTa, XLM-R, CamemBERT), so a pair's
    /// second text is type 0 too.
    AlwaysZero,
    /// A table indexed by the tokenizer's type ids (BERT: a pair's second
    /// text is type 1).
    FromTokenizer,
}

/// One encoder layer's modules, relative to the layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_norm: &'static str,
}

/// The classification head on the first token: `out_proj(activation(dense(x)))`.
#[derive(Debug, Clone, Copy)]
pub struct HeadNames {
    pub dense: &'static str,
    pub activation: Activation,
    pub out_proj: &'static str,
}

impl WeightNames {
    /// The word-embedding table: the largest tensor, and the one that says
    /// whether a file holds this architecture at all.
    pub fn word_embeddings(&self) -> String {
        format!("{}.word_embeddings.weight", self.embeddings)
    }

    /// The head's last layer, whose rows are the labels.
    pub fn classifier(&self) -> String {
        format!("{}.weight", self.head.out_proj)
    }
}
