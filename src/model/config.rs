//! `config.json` of a HuggingFace `DistilBertForSequenceClassification` checkpoint.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The feed-forward activation. HF's "gelu" is the exact, erf-based GELU; the
/// tanh approximation would move logits by ~1e-3 and break parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Gelu,
    Relu,
}

/// How HF turns logits into the scores a user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// Softmax over the labels (HF's default when `problem_type` is absent).
    #[default]
    SingleLabelClassification,
    /// An independent sigmoid per label.
    MultiLabelClassification,
    /// Raw logits.
    Regression,
}

fn default_vocab_size() -> usize {
    30522
}
fn default_dim() -> usize {
    768
}
fn default_n_layers() -> usize {
    6
}
fn default_n_heads() -> usize {
    12
}
fn default_hidden_dim() -> usize {
    3072
}
fn default_max_position_embeddings() -> usize {
    512
}
fn default_activation() -> Activation {
    Activation::Gelu
}

/// The fields of `config.json` that change the computation. Defaults are
/// HF's `DistilBertConfig` defaults, so a sparse config means what it means
/// to transformers.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// HF's name for the architecture family: must be "distilbert".
    #[serde(default)]
    pub model_type: Option<String>,
    /// The model classes the checkpoint was saved from, if listed.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_dim")]
    pub dim: usize,
    #[serde(default = "default_n_layers")]
    pub n_layers: usize,
    #[serde(default = "default_n_heads")]
    pub n_heads: usize,
    #[serde(default = "default_hidden_dim")]
    pub hidden_dim: usize,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
    /// Label names by class index. JSON object keys are strings ("0", "1").
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// `null` in config.json means the default, as in HF.
    #[serde(default)]
    pub problem_type: Option<ProblemType>,
    /// Not in config.json: how the word-embedding table, the biggest
    /// tensor, is held (see [`WordTable`]).
    #[serde(skip)]
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
/// real checkpoint (distilbert-base: dim 768, 6 layers, 30522 tokens), low
/// enough that no config can ask for a table larger than memory before a
/// weight is read.
pub const SIZE_LIMITS: [(&str, usize); 6] = [
    ("dim", 1 << 14),
    ("n_layers", 256),
    ("n_heads", 1 << 10),
    ("hidden_dim", 1 << 16),
    ("vocab_size", 1 << 22),
    ("max_position_embeddings", 1 << 16),
];

/// A config that is well-formed JSON but describes a network we cannot build.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("model_type is {found:?}, not \"distilbert\": this is not a DistilBERT checkpoint")]
    NotDistilBert { found: String },
    #[error("config.json has no model_type (a HF checkpoint's config names its architecture)")]
    NoModelType,
    #[error("architectures lists {found:?}, not DistilBertForSequenceClassification")]
    NotSequenceClassification { found: Vec<String> },
    #[error("dim ({dim}) is not divisible by n_heads ({n_heads})")]
    HeadsDoNotDivideDim { dim: usize, n_heads: usize },
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
    #[error("id2label keys must be the class indices 0..{count}, found {key:?}")]
    BadLabelIndex { key: String, count: usize },
}

impl Config {
    /// Parses config.json, which must be a JSON object (serde would also
    /// take an array as a struct, which HF never writes).
    pub fn from_json(json: &[u8]) -> serde_json::Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(json)?;
        if !value.is_object() {
            return Err(serde::de::Error::custom(format!(
                "expected a JSON object, found {}",
                crate::input::json_kind(&value)
            )));
        }
        serde_json::from_value(value)
    }

    /// Checks that this is a DistilBERT classifier's config whose sizes are
    /// sane, before any weight is read or any table allocated.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.model_type.as_deref() {
            Some("distilbert") => {}
            Some(other) => {
                return Err(ConfigError::NotDistilBert {
                    found: other.to_string(),
                })
            }
            None => return Err(ConfigError::NoModelType),
        }
        if let Some(architectures) = &self.architectures {
            let classifier = |a: &String| a == "DistilBertForSequenceClassification";
            if !architectures.is_empty() && !architectures.iter().any(classifier) {
                return Err(ConfigError::NotSequenceClassification {
                    found: architectures.clone(),
                });
            }
        }
        let sizes = [
            self.dim,
            self.n_layers,
            self.n_heads,
            self.hidden_dim,
            self.vocab_size,
            self.max_position_embeddings,
        ];
        for ((field, limit), value) in SIZE_LIMITS.into_iter().zip(sizes) {
            if value > limit {
                return Err(ConfigError::TooLarge {
                    field,
                    value,
                    limit,
                });
            }
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(ConfigError::PadOutsideVocab {
                pad: self.pad_token_id,
                vocab_size: self.vocab_size,
            });
        }
        for (field, value) in [
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("hidden_dim", self.hidden_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if !self.dim.is_multiple_of(self.n_heads) {
            return Err(ConfigError::HeadsDoNotDivideDim {
                dim: self.dim,
                n_heads: self.n_heads,
            });
        }
        self.label_names(self.id2label.as_ref().map_or(2, BTreeMap::len))?;
        Ok(())
    }

    pub fn problem_type(&self) -> ProblemType {
        self.problem_type.unwrap_or_default()
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
        Ok(names)
    }

    /// The longest input the position table allows, capped at BERT's 512.
    pub fn max_input_tokens(&self) -> usize {
        self.max_position_embeddings.min(512)
    }
}
