//! The one [`Config`] every architecture's network is built from, in one
//! vocabulary (BERT's names), and the types it is made of. Reading it from
//! config.json (the family, HF's per-family names and defaults, the size
//! checks) is `read.rs`'s job.

mod read;

use std::collections::BTreeMap;

use serde::Deserialize;

/// An activation, as config.json's `hidden_act` (or DistilBERT's
/// `activation`) names it. HF's "gelu" is the exact, erf-based GELU; the
/// tanh approximation would move logits by ~1e-3 and break parity, so the
/// two are distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    #[serde(rename = "gelu")]
    Gelu,
    /// HF's `gelu_new`, `gelu_pytorch_tanh` and `gelu_fast`: one formula.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    /// BERT's pooler and RoBERTa's head.
    #[serde(rename = "tanh")]
    Tanh,
}

/// How HF turns logits into the scores a user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// Softmax over the labels.
    SingleLabelClassification,
    /// An independent sigmoid per label.
    MultiLabelClassification,
    /// Raw logits.
    Regression,
}

/// The network families we build. RoBERTa, XLM-RoBERTa and CamemBERT share
/// one network; they differ in their tokenizers and vocabularies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    DistilBert,
    Bert,
    Roberta,
}

/// The classifier classes we run, by config.json's `architectures` name,
/// with the `model_type` HF writes beside each.
pub const SUPPORTED: [(&str, &str, Architecture); 5] = [
    (
        "DistilBertForSequenceClassification",
        "distilbert",
        Architecture::DistilBert,
    ),
    ("BertForSequenceClassification", "bert", Architecture::Bert),
    (
        "RobertaForSequenceClassification",
        "roberta",
        Architecture::Roberta,
    ),
    (
        "XLMRobertaForSequenceClassification",
        "xlm-roberta",
        Architecture::Roberta,
    ),
    (
        "CamembertForSequenceClassification",
        "camembert",
        Architecture::Roberta,
    ),
];

/// Where a network takes its position ids from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// 0, 1, 2, ... for every sequence (BERT, DistilBERT).
    FromZero,
    /// RoBERTa's `create_position_ids_from_input_ids`: non-pad tokens count
    /// up from `padding_idx + 1`; pad tokens get `padding_idx`.
    AfterPadding { padding_idx: usize },
}

/// What the network needs to know, in one vocabulary for every
/// architecture (the names are BERT's).
#[derive(Debug, Clone)]
pub struct Config {
    pub architecture: Architecture,
    /// config.json's `model_type`, or the one its `architectures` implies.
    pub model_type: String,
    /// The class this checkpoint is run as (e.g. "BertForSequenceClassification").
    pub class_name: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    /// Token-type rows (BERT 2, RoBERTa 1, DistilBERT none). Single texts
    /// always use type 0.
    pub type_vocab_size: usize,
    pub pad_token_id: usize,
    pub positions: Positions,
    /// DistilBERT only: a sinusoidal position table (rebuilt if a file
    /// leaves it out).
    pub sinusoidal_pos_embds: bool,
    /// Label names by class index. JSON object keys are strings ("0", "1").
    pub id2label: Option<BTreeMap<String, String>>,
    /// None: HF's default (see [`Config::problem_type`]).
    pub problem_type: Option<ProblemType>,
    /// Not in config.json: how the word-embedding table, the biggest
    /// tensor, is held (see [`WordTable`]).
    pub word_table: WordTable,
}

/// How the word-embedding table is held. Rows are only ever looked up, so
/// a half-precision table never needs converting as a whole: each looked-up
/// row is upcast to f32, which is exact.
#[derive(Debug, Clone, Copy, Default)]
pub enum WordTable {
    /// Loaded as f32 (f32 checkpoints, and whenever nothing else applies).
    #[default]
    F32,
    /// Loaded in the checkpoint's f16 or bf16.
    Half(candle_core::DType),
    /// Read in place from a safetensors image that lives as long as the
    /// program (the bundled model), f16 or bf16 little-endian: only the pages
    /// of looked-up rows ever become resident (CPU only).
    Static {
        dtype: candle_core::DType,
        bytes: &'static [u8],
    },
}

/// The largest value each size in config.json may take: far beyond any
/// real checkpoint (roberta-large: hidden 1024, 24 layers; XLM-R: 250,002
/// tokens), low enough that no config can ask for a table larger than
/// memory before a weight is read.
pub const SIZE_LIMITS: [(&str, usize); 7] = [
    ("hidden_size", 1 << 14),
    ("num_hidden_layers", 256),
    ("num_attention_heads", 1 << 10),
    ("intermediate_size", 1 << 16),
    ("vocab_size", 1 << 22),
    ("max_position_embeddings", 1 << 16),
    ("type_vocab_size", 1 << 10),
];

fn supported_list() -> String {
    SUPPORTED.map(|(class, _, _)| class).join(", ")
}

/// A config that is well-formed JSON but describes a network we cannot build.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config.json asks for {asked}, which sentiment does not run; supported: {}",
        supported_list()
    )]
    Unsupported { asked: String },
    #[error(
        "config.json names no architecture (no model_type or architectures); supported: {}",
        supported_list()
    )]
    NoArchitecture,
    #[error("hidden size ({dim}) is not divisible by the attention heads ({heads})")]
    HeadsDoNotDivideDim { dim: usize, heads: usize },
    #[error("{field} must be greater than 0")]
    Zero { field: &'static str },
    #[error("{field} is {value}, over the limit of {limit}")]
    TooLarge {
        field: &'static str,
        value: usize,
        limit: usize,
    },
    #[error("pad_token_id ({pad}) is outside the vocabulary of {vocab_size} tokens")]
    PadOutsideVocab { pad: usize, vocab_size: usize },
    #[error(
        "max_position_embeddings ({positions}) leaves no room for a token after \
         RoBERTa's offset of pad_token_id + 1 ({offset})"
    )]
    NoPositionsLeft { positions: usize, offset: usize },
    #[error("layer_norm_eps ({0}) must be a finite number greater than 0")]
    BadEpsilon(f64),
    #[error("id2label keys must be the class indices 0..{count}, found {key:?}")]
    BadLabelIndex { key: String, count: usize },
    /// Two classes with one name: `scores` could not tell them apart, and
    /// would contradict `label`.
    #[error("id2label names {name:?} for both class {first} and class {second}; each class needs its own name")]
    DuplicateLabel {
        name: String,
        first: usize,
        second: usize,
    },
    #[error("id2label gives class {index} an empty name")]
    EmptyLabel { index: usize },
    #[error("invalid {family} config")]
    Fields {
        family: &'static str,
        source: serde_json::Error,
    },
}

impl Config {
    /// A config with an architecture's layout and every other field empty,
    /// for the architecture files to fill.
    fn blank(architecture: Architecture) -> Self {
        Self {
            architecture,
            model_type: String::new(),
            class_name: String::new(),
            vocab_size: 0,
            hidden_size: 0,
            num_hidden_layers: 0,
            num_attention_heads: 0,
            intermediate_size: 0,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            max_position_embeddings: 0,
            type_vocab_size: 0,
            pad_token_id: 0,
            positions: Positions::FromZero,
            sinusoidal_pos_embds: false,
            id2label: None,
            problem_type: None,
            word_table: WordTable::F32,
        }
    }

    /// The rule transformers' text-classification pipeline applies: raw
    /// logits for regression; a sigmoid per label for multi-label models
    /// and for models with a single label; softmax otherwise.
    pub fn problem_type(&self, num_labels: usize) -> ProblemType {
        match self.problem_type {
            Some(ProblemType::Regression) => ProblemType::Regression,
            Some(ProblemType::MultiLabelClassification) => ProblemType::MultiLabelClassification,
            _ if num_labels == 1 => ProblemType::MultiLabelClassification,
            _ => ProblemType::SingleLabelClassification,
        }
    }

    /// Label names in class order. Without `id2label`, HF names classes
    /// `LABEL_0..LABEL_{n-1}`; `num_labels` then comes from the classifier's
    /// weight, which is the only place that knows it.
    pub fn label_names(&self, num_labels: usize) -> Result<Vec<String>, ConfigError> {
        let Some(id2label) = &self.id2label else {
            return Ok((0..num_labels).map(|i| format!("LABEL_{i}")).collect());
        };
        let count = id2label.len();
        let mut names = vec![String::new(); count];
        for (key, name) in id2label {
            match key.parse::<usize>() {
                Ok(index) if index < count => names[index] = name.clone(),
                _ => {
                    return Err(ConfigError::BadLabelIndex {
                        key: key.clone(),
                        count,
                    })
                }
            }
        }
        let mut seen = std::collections::HashMap::new();
        for (index, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(ConfigError::EmptyLabel { index });
            }
            if let Some(first) = seen.insert(name.as_str(), index) {
                return Err(ConfigError::DuplicateLabel {
                    name: name.clone(),
                    first,
                    second: index,
                });
            }
        }
        Ok(names)
    }

    /// The longest input the position table allows, special tokens
    /// included: the table's rows less RoBERTa's offset, capped at 512,
    /// the limit every supported family was trained to.
    pub fn max_input_tokens(&self) -> usize {
        let offset = match self.positions {
            Positions::FromZero => 0,
            Positions::AfterPadding { padding_idx } => padding_idx + 1,
        };
        self.max_position_embeddings.saturating_sub(offset).min(512)
    }
}
