//! Reading config.json: the architecture it names, HF's field names and
//! defaults for each family, and the size checks made before any weight is
//! read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    Activation, Architecture, Config, ConfigError, Positions, ProblemType, SIZE_LIMITS, SUPPORTED,
};
use crate::json::json_kind;

impl Config {
    /// Parses config.json, which must be a JSON object (serde would also
    /// take an array as a struct, which HF never writes), and reads it as
    /// the architecture it names. An architecture we cannot build is an
    /// error here, naming what the config asked for.
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let syntax = |source| ConfigError::Fields {
            family: "JSON",
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(json).map_err(syntax)?;
        if !value.is_object() {
            return Err(syntax(serde::de::Error::custom(format!(
                "expected a JSON object, found {}",
                json_kind(&value)
            ))));
        }
        let common = Common::deserialize(&value).map_err(syntax)?;
        let (class_name, model_type, architecture) = pick_architecture(&common)?;
        let fields = |family| move |source| ConfigError::Fields { family, source };
        let mut config = match architecture {
            Architecture::DistilBert => DistilBertFields::deserialize(&value)
                .map_err(fields("DistilBERT"))?
                .into_config(),
            Architecture::Bert => BertFields::deserialize(&value)
                .map_err(fields("BERT"))?
                .into_config(),
            Architecture::Roberta => RobertaFields::deserialize(&value)
                .map_err(fields("RoBERTa"))?
                .into_config(),
        };
        config.class_name = class_name.to_string();
        config.model_type = model_type;
        config.id2label = common.id2label;
        config.problem_type = common.problem_type;
        Ok(config)
    }

    /// Checks that the sizes are sane, before any weight is read or any
    /// table allocated.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.intermediate_size,
            self.vocab_size,
            self.max_position_embeddings,
            self.type_vocab_size,
        ];
        for ((field, limit), value) in SIZE_LIMITS.into_iter().zip(sizes) {
            if value > limit {
                return Err(ConfigError::TooLarge {
                    field: self.json_name(field),
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
        // type_vocab_size may be 0 only where the network has no such table.
        let needs_types = self.architecture != Architecture::DistilBert;
        for ((field, _), value) in SIZE_LIMITS.into_iter().zip(sizes) {
            if value == 0 && (field != "type_vocab_size" || needs_types) {
                return Err(ConfigError::Zero {
                    field: self.json_name(field),
                });
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ConfigError::HeadsDoNotDivideDim {
                dim: self.hidden_size,
                heads: self.num_attention_heads,
            });
        }
        if let Positions::AfterPadding { padding_idx } = self.positions {
            if self.max_position_embeddings <= padding_idx + 1 {
                return Err(ConfigError::NoPositionsLeft {
                    positions: self.max_position_embeddings,
                    offset: padding_idx + 1,
                });
            }
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(ConfigError::BadEpsilon(self.layer_norm_eps));
        }
        self.label_names(self.id2label.as_ref().map_or(2, BTreeMap::len))?;
        Ok(())
    }

    /// What this architecture's config.json calls a field (DistilBERT has
    /// its own names), so messages name what the user can find.
    fn json_name(&self, field: &'static str) -> &'static str {
        match self.architecture {
            Architecture::DistilBert => distilbert_json_name(field),
            Architecture::Bert | Architecture::Roberta => field,
        }
    }
}

/// The fields every architecture's config.json shares.
#[derive(Debug, Clone, Deserialize)]
struct Common {
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// `null` in config.json means the default, as in HF.
    #[serde(default)]
    pub problem_type: Option<ProblemType>,
}

/// The supported class this config asks for: from `model_type`, checked
/// against `architectures` when both are present, or from `architectures`
/// alone.
fn pick_architecture(common: &Common) -> Result<(&'static str, String, Architecture), ConfigError> {
    let listed = common.architectures.as_deref().unwrap_or_default();
    let by_class = |class: &str| SUPPORTED.iter().find(|(name, _, _)| *name == class);
    let asked = || match (&common.model_type, listed) {
        (Some(model_type), []) => format!("model_type {model_type:?}"),
        (Some(model_type), classes) => format!("{classes:?} (model_type {model_type:?})"),
        (None, classes) => format!("{classes:?}"),
    };
    match &common.model_type {
        Some(model_type) => {
            let family = SUPPORTED
                .iter()
                .find(|(_, family, _)| family == model_type)
                .ok_or_else(|| ConfigError::Unsupported { asked: asked() })?;
            if listed.is_empty() {
                return Ok((family.0, model_type.clone(), family.2));
            }
            // The listed class must be a classifier of the same network (a
            // RoBERTa model_type may name XLMRobertaForSequenceClassification);
            // another head of the family (a masked LM, say) has no
            // classifier to run.
            let class = listed
                .iter()
                .filter_map(|class| by_class(class))
                .find(|(_, _, architecture)| *architecture == family.2)
                .ok_or_else(|| ConfigError::Unsupported { asked: asked() })?;
            Ok((class.0, model_type.clone(), family.2))
        }
        None if listed.is_empty() => Err(ConfigError::NoArchitecture),
        None => {
            let (class, model_type, architecture) = listed
                .iter()
                .find_map(|class| by_class(class))
                .ok_or_else(|| ConfigError::Unsupported { asked: asked() })?;
            Ok((class, model_type.to_string(), *architecture))
        }
    }
}

/// HF's `DistilBertConfig` fields, with its defaults, so a sparse config
/// means what it means to transformers.
#[derive(Debug, Clone, Deserialize)]
struct DistilBertFields {
    #[serde(default = "distilbert_defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "distilbert_defaults::dim")]
    pub dim: usize,
    #[serde(default = "distilbert_defaults::n_layers")]
    pub n_layers: usize,
    #[serde(default = "distilbert_defaults::n_heads")]
    pub n_heads: usize,
    #[serde(default = "distilbert_defaults::hidden_dim")]
    pub hidden_dim: usize,
    #[serde(default = "distilbert_defaults::activation")]
    pub activation: Activation,
    #[serde(default = "distilbert_defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
}

mod distilbert_defaults {
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

impl DistilBertFields {
    fn into_config(self) -> Config {
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
fn distilbert_json_name(field: &'static str) -> &'static str {
    match field {
        "hidden_size" => "dim",
        "num_hidden_layers" => "n_layers",
        "num_attention_heads" => "n_heads",
        "intermediate_size" => "hidden_dim",
        other => other,
    }
}

/// HF's `BertConfig` fields, with its defaults. RoBERTa's config has the
/// same fields and differs only in two defaults (see [`RobertaFields`]),
/// so those two are None when config.json leaves them out.
#[derive(Debug, Clone, Deserialize)]
struct BertFields {
    /// None: the family's default (BERT 30522).
    #[serde(default)]
    pub vocab_size: Option<usize>,
    #[serde(default = "bert_defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "bert_defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "bert_defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "bert_defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "bert_defaults::hidden_act")]
    pub hidden_act: Activation,
    #[serde(default = "bert_defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "bert_defaults::type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "bert_defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// None: the family's default (BERT 0).
    #[serde(default)]
    pub pad_token_id: Option<usize>,
}

mod bert_defaults {
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

impl BertFields {
    fn into_config(self) -> Config {
        self.network(Architecture::Bert, 30522, 0)
    }

    /// The fields as `architecture`'s [`Config`], with that family's
    /// defaults for the vocabulary size and the padding id; positions from
    /// 0 (RoBERTa sets its own).
    fn network(
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

/// HF's `RobertaConfig` (and `XLMRobertaConfig`, `CamembertConfig`):
/// BERT's fields, with RoBERTa's defaults where they differ (a vocabulary
/// of 50265, padding id 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
struct RobertaFields(BertFields);

impl RobertaFields {
    fn into_config(self) -> Config {
        let mut config = self.0.network(Architecture::Roberta, 50265, 1);
        config.positions = Positions::AfterPadding {
            padding_idx: config.pad_token_id,
        };
        config
    }
}
