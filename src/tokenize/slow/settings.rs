//! What tokenizer_config.json, special_tokens_map.json and added_tokens.json
//! say, read as transformers 5's `from_pretrained` reads them: the options,
//! the length limit, the named special tokens and the added tokens.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::AddedToken;

use crate::error::{Error, Result};
use crate::json::json_kind;
use crate::source::{FileBytes, TokenizerFiles};

/// The named special tokens, in transformers' order
/// (`SPECIAL_TOKENS_ATTRIBUTES`), which is the order new ones are added in.
pub const ROLES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A token and the file that named it, for messages (None: the tokenizer
/// class's own default).
#[derive(Debug, Clone)]
pub struct Named {
    pub token: AddedToken,
    pub origin: Option<PathBuf>,
}

impl Named {
    /// The file that named the token, else `fallback`.
    pub fn file_or<'a>(&'a self, fallback: &'a Path) -> &'a Path {
        self.origin.as_deref().unwrap_or(fallback)
    }
}

/// The settings of one tokenizer, every field None or empty where no file
/// says it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub tokenizer_class: Option<String>,
    pub do_lower_case: Option<bool>,
    pub strip_accents: Option<bool>,
    pub tokenize_chinese_chars: Option<bool>,
    pub add_prefix_space: Option<bool>,
    pub trim_offsets: Option<bool>,
    /// `model_max_length` (or the legacy `max_len`); None where it is
    /// absent or transformers' "no limit" (a number past 10^12).
    pub model_max_length: Option<usize>,
    /// The named special tokens, by role; a role a file sets to null is
    /// absent.
    roles: Vec<(&'static str, Named)>,
    /// Roles a file set to null (no such token).
    nulls: Vec<&'static str>,
    /// `additional_special_tokens` / `extra_special_tokens`.
    pub extra_special: Vec<Named>,
    /// Added tokens with the id a file gives them (`added_tokens_decoder`,
    /// or added_tokens.json), sorted by id.
    pub added: Vec<(u32, Named)>,
}

/// What transformers writes for "no limit" is 10^30; a limit past this is none.
const NO_LIMIT: f64 = 1e12;

impl Settings {
    /// The settings in `files`. tokenizer_config.json's
    /// `added_tokens_decoder`, where present, is the whole story and the
    /// two legacy files are not read, as in transformers.
    pub fn read(files: &TokenizerFiles) -> Result<Self> {
        let mut settings = Self::default();
        let config = files.config.as_ref().map(object).transpose()?;
        let mut has_decoder = false;
        if let (Some(file), Some(config)) = (&files.config, &config) {
            settings.read_config(&file.origin, config)?;
            has_decoder = config.get("added_tokens_decoder").is_some();
        }
        if !has_decoder {
            if let Some(file) = &files.special_tokens_map {
                settings.read_roles(&file.origin, &object(file)?)?;
            }
            if let Some(file) = &files.added_tokens {
                settings.read_added_tokens(&file.origin, &object(file)?)?;
            }
        }
        Ok(settings)
    }

    /// The token for `role`: what a file says, else `default` (None: the
    /// family has no such token).
    pub fn role(&self, role: &str, default: Option<&str>) -> Option<Named> {
        if let Some((_, named)) = self.roles.iter().find(|(r, _)| *r == role) {
            return Some(named.clone());
        }
        match self.nulls.contains(&role) {
            true => None,
            false => default.map(|content| Named {
                token: AddedToken::from(content, true),
                origin: None,
            }),
        }
    }

    fn read_config(&mut self, origin: &Path, config: &Map<String, Value>) -> Result<()> {
        let flag = |key: &str| -> Result<Option<bool>> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(value)) => Ok(Some(*value)),
                Some(other) => Err(bad(origin, key, "true or false", other)),
            }
        };
        self.do_lower_case = flag("do_lower_case")?;
        self.strip_accents = flag("strip_accents")?;
        self.tokenize_chinese_chars = flag("tokenize_chinese_chars")?;
        self.add_prefix_space = flag("add_prefix_space")?;
        self.trim_offsets = flag("trim_offsets")?;
        self.tokenizer_class = match config.get("tokenizer_class") {
            None | Some(Value::Null) => None,
            Some(Value::String(class)) => Some(class.clone()),
            Some(other) => return Err(bad(origin, "tokenizer_class", "a class name", other)),
        };
        self.model_max_length = length_limit(origin, config)?;
        self.read_roles(origin, config)?;
        if let Some(decoder) = config.get("added_tokens_decoder") {
            let Value::Object(decoder) = decoder else {
                return Err(bad(origin, "added_tokens_decoder", "an object", decoder));
            };
            for (id, value) in decoder {
                let id = id.parse::<u32>().map_err(|_| {
                    Error::model(
                        origin,
                        format!("added_tokens_decoder has the id {id:?}, not a number"),
                    )
                })?;
                let token = added_token(origin, "added_tokens_decoder", value, None)?;
                self.add(id, token, origin);
            }
            self.added.sort_by_key(|(id, _)| *id);
            // A role's token takes the flags the decoder gives it.
            for (_, named) in &mut self.roles {
                if let Some((_, added)) = self
                    .added
                    .iter()
                    .find(|(_, a)| a.token.content == named.token.content)
                {
                    named.token = added.token.clone();
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, id: u32, token: AddedToken, origin: &Path) {
        let origin = Some(origin.to_path_buf());
        self.added.push((id, Named { token, origin }));
    }

    /// The named roles and the extra special tokens in `map`: a later file's
    /// (special_tokens_map.json's) override an earlier one's.
    fn read_roles(&mut self, origin: &Path, map: &Map<String, Value>) -> Result<()> {
        for role in ROLES {
            match map.get(role) {
                None => {}
                Some(Value::Null) => {
                    self.roles.retain(|(r, _)| *r != role);
                    self.nulls.push(role);
                }
                Some(value) => {
                    let token = added_token(origin, role, value, Some(true))?;
                    self.roles.retain(|(r, _)| *r != role);
                    self.nulls.retain(|r| *r != role);
                    self.roles.push((
                        role,
                        Named {
                            token,
                            origin: Some(origin.to_path_buf()),
                        },
                    ));
                }
            }
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            match map.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(tokens)) => {
                    self.extra_special.clear();
                    for value in tokens {
                        let token = added_token(origin, key, value, Some(true))?;
                        self.extra_special.push(Named {
                            token,
                            origin: Some(origin.to_path_buf()),
                        });
                    }
                }
                Some(other) => return Err(bad(origin, key, "a list of tokens", other)),
            }
        }
        Ok(())
    }

    /// added_tokens.json: `{token: id}`; a token is special when it is one
    /// of the named or extra special tokens.
    fn read_added_tokens(&mut self, origin: &Path, map: &Map<String, Value>) -> Result<()> {
        for (content, id) in map {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| bad(origin, content, "a token id", id))?;
            let special = self.roles.iter().any(|(_, n)| n.token.content == *content)
                || self
                    .extra_special
                    .iter()
                    .any(|n| n.token.content == *content);
            let token = AddedToken::from(content.clone(), special).normalized(!special);
            self.add(id, token, origin);
        }
        self.added.sort_by_key(|(id, _)| *id);
        Ok(())
    }
}

/// `model_max_length` (or the legacy `max_len`) in tokenizer_config.json,
/// the one setting a tokenizer.json takes from it.
pub fn model_max_length(files: &TokenizerFiles) -> Result<Option<usize>> {
    match &files.config {
        Some(file) => length_limit(&file.origin, &object(file)?),
        None => Ok(None),
    }
}

fn length_limit(origin: &Path, config: &Map<String, Value>) -> Result<Option<usize>> {
    let limit = match config.get("model_max_length") {
        None | Some(Value::Null) => config.get("max_len"),
        found => found,
    };
    match limit {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(n) if n >= NO_LIMIT => Ok(None),
            Some(n) if n >= 1.0 && n.fract() == 0.0 => Ok(Some(n as usize)),
            _ => Err(Error::model(
                origin,
                format!("model_max_length should be a positive whole number, not {n}"),
            )),
        },
        Some(other) => Err(bad(origin, "model_max_length", "a number", other)),
    }
}

/// A settings file as a JSON object.
fn object(file: &FileBytes) -> Result<Map<String, Value>> {
    match serde_json::from_slice(&file.bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::model(
            &file.origin,
            format!("expected a JSON object, found {}", json_kind(&other)),
        )),
        Err(err) => Err(Error::model_caused(&file.origin, "is not valid JSON", err)),
    }
}

fn bad(origin: &Path, key: &str, expected: &str, found: &Value) -> Error {
    Error::model(
        origin,
        format!("{key} should be {expected}, not {}", json_kind(found)),
    )
}

/// A token as transformers writes one: a string, or an `AddedToken`'s
/// fields. `special` overrides the fields' own flag (special_tokens_map.json's
/// tokens are special whatever they say).
fn added_token(
    origin: &Path,
    key: &str,
    value: &Value,
    special: Option<bool>,
) -> Result<AddedToken> {
    match value {
        Value::String(content) if !content.is_empty() => {
            Ok(AddedToken::from(content.clone(), special.unwrap_or(true)))
        }
        Value::Object(fields) => {
            let Some(Value::String(content)) = fields.get("content") else {
                return Err(bad(origin, key, "a token with a \"content\" string", value));
            };
            if content.is_empty() {
                return Err(Error::model(origin, format!("{key} is an empty token")));
            }
            let flag = |name: &str, default: bool| -> Result<bool> {
                match fields.get(name) {
                    None | Some(Value::Null) => Ok(default),
                    Some(Value::Bool(b)) => Ok(*b),
                    Some(other) => Err(bad(
                        origin,
                        &format!("{key}.{name}"),
                        "true or false",
                        other,
                    )),
                }
            };
            let special = match special {
                Some(special) => special,
                None => flag("special", false)?,
            };
            Ok(AddedToken::from(content.clone(), special)
                .single_word(flag("single_word", false)?)
                .lstrip(flag("lstrip", false)?)
                .rstrip(flag("rstrip", false)?)
                .normalized(flag("normalized", !special)?))
        }
        Value::String(_) => Err(Error::model(origin, format!("{key} is an empty token"))),
        other => Err(bad(origin, key, "a token (a string or an object)", other)),
    }
}
