//! The tokenizer classes slow files are read as, and their special tokens:
//! what a file names, else the class's own.

use std::path::Path;

use tokenizers::Tokenizer;

use super::settings::{Named, Settings, ROLES};
use crate::error::{Error, Result};
use crate::source::FileBytes;

/// Which of transformers' tokenizer classes the files are read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Bert,
    Roberta,
    XlmRoberta,
    Camembert,
}

impl Family {
    /// From tokenizer_config.json's `tokenizer_class`, as AutoTokenizer
    /// picks, else from config.json's `model_type`.
    pub(super) fn pick(
        settings: &Settings,
        model_type: &str,
        config: Option<&FileBytes>,
    ) -> Result<Self> {
        if let Some(class) = &settings.tokenizer_class {
            return match class.trim_end_matches("Fast") {
                "BertTokenizer" | "DistilBertTokenizer" => Ok(Self::Bert),
                "RobertaTokenizer" => Ok(Self::Roberta),
                "XLMRobertaTokenizer" => Ok(Self::XlmRoberta),
                "CamembertTokenizer" => Ok(Self::Camembert),
                _ => Err(Error::model(
                    config.map_or(Path::new("tokenizer_config.json"), |c| &c.origin),
                    format!(
                        "names tokenizer_class {class:?}, which sentiment cannot build from slow \
                         files (it can: BertTokenizer, DistilBertTokenizer, RobertaTokenizer, \
                         XLMRobertaTokenizer, CamembertTokenizer); save the tokenizer with \
                         transformers to get a tokenizer.json"
                    ),
                )),
            };
        }
        Ok(match model_type {
            "roberta" => Self::Roberta,
            "xlm-roberta" => Self::XlmRoberta,
            "camembert" => Self::Camembert,
            _ => Self::Bert,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Bert => "BertTokenizer",
            Self::Roberta => "RobertaTokenizer",
            Self::XlmRoberta => "XLMRobertaTokenizer",
            Self::Camembert => "CamembertTokenizer",
        }
    }

    /// The class's own special tokens, where no file names them.
    fn default_token(self, role: &str) -> Option<&'static str> {
        let bert = [
            ("unk_token", "[UNK]"),
            ("sep_token", "[SEP]"),
            ("pad_token", "[PAD]"),
            ("cls_token", "[CLS]"),
            ("mask_token", "[MASK]"),
        ];
        let roberta = [
            ("bos_token", "<s>"),
            ("eos_token", "</s>"),
            ("sep_token", "</s>"),
            ("cls_token", "<s>"),
            ("unk_token", "<unk>"),
            ("pad_token", "<pad>"),
            ("mask_token", "<mask>"),
        ];
        let table: &[(&str, &str)] = match self {
            Self::Bert => &bert,
            _ => &roberta,
        };
        table.iter().find(|(r, _)| *r == role).map(|(_, t)| *t)
    }
}

/// The named special tokens with the family's defaults filled in.
pub(super) struct Specials {
    pub(super) family: Family,
    pub(super) roles: Vec<(&'static str, Named)>,
}

impl Specials {
    pub(super) fn new(settings: &Settings, family: Family) -> Self {
        let mut roles: Vec<_> = ROLES
            .iter()
            .filter_map(|&role| Some((role, settings.role(role, family.default_token(role))?)))
            .collect();
        // CamembertTokenizer's own <mask> strips the space before it.
        if family == Family::Camembert {
            for (role, named) in &mut roles {
                if *role == "mask_token" && named.origin.is_none() {
                    named.token = named.token.clone().lstrip(true);
                }
            }
        }
        Self { family, roles }
    }

    /// The token a role names; a role the family needs and a file set to
    /// null is an error naming the vocabulary it was needed for.
    pub(super) fn get(&self, role: &str, vocabulary: &Path) -> Result<&Named> {
        self.roles
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, named)| named)
            .ok_or_else(|| {
                Error::model(
                    vocabulary,
                    format!(
                        "{} needs a {role}, and the settings set it to null",
                        self.family.name()
                    ),
                )
            })
    }

    pub(super) fn content(&self, role: &str, vocabulary: &Path) -> Result<String> {
        Ok(self.get(role, vocabulary)?.token.content.clone())
    }
}

pub(super) fn invalid(file: &FileBytes, why: impl std::fmt::Display) -> Error {
    Error::model(&file.origin, why)
}

/// The id of a special token the post-processor adds, which `vocabulary`
/// must have.
pub(super) fn special_id(
    tokenizer: &Tokenizer,
    token: &str,
    vocabulary: &FileBytes,
) -> Result<u32> {
    tokenizer
        .token_to_id(token)
        .ok_or_else(|| invalid(vocabulary, format!("has no {token:?}")))
}
