//! Request bodies of `/predict` and `/classify`, parsed by hand from bytes
//! so that every way a body can be wrong gets one message saying what is
//! wrong (and a 422), whatever the Content-Type.

use serde_json::Value;

/// TEI's request: `{"inputs": "text" | ["t1", ...], "truncate": bool,
/// "raw_scores": bool}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictRequest {
    pub inputs: Inputs,
    /// None: the server's long-text setting decides.
    pub truncate: Option<bool>,
    /// Logits instead of probabilities (TEI's `raw_scores`).
    pub raw_scores: bool,
    /// Truncation keeps the last tokens (TEI's `"truncation_direction":
    /// "Left"`) rather than the first.
    pub truncate_start: bool,
}

/// One text (answered with one result) or a list (answered with a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    /// The texts, in order.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Self::One(text) => vec![text.as_str()],
            Self::Many(texts) => texts.iter().map(String::as_str).collect(),
        }
    }

    /// How many texts.
    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(texts) => texts.len(),
        }
    }

    /// Whether there is no text at all (an empty list).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a body is not a valid request: said to the client with a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

fn kind(value: &Value) -> &'static str {
    crate::json::json_kind(value)
}

impl PredictRequest {
    /// Parses a body. Unknown fields are refused, as a typo (`"input"`,
    /// `"truncation"`) would otherwise be silently ignored.
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| BodyError(format!("the body is not valid JSON: {err}")))?;
        let Value::Object(mut fields) = value else {
            return Err(BodyError(format!(
                "the body must be a JSON object with \"inputs\", not {}",
                kind(&value)
            )));
        };
        let inputs = match fields.remove("inputs") {
            None => return Err(BodyError("the body has no \"inputs\" field".into())),
            Some(Value::String(text)) => Inputs::One(text),
            Some(Value::Array(items)) => {
                let mut texts = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(text) => texts.push(text),
                        // TEI's batch form: a list of one-text lists.
                        Value::Array(mut one) if one.len() == 1 && one[0].is_string() => {
                            if let Some(Value::String(text)) = one.pop() {
                                texts.push(text);
                            }
                        }
                        Value::Array(_) => {
                            return Err(BodyError(format!(
                                "inputs[{index}] is a list of more than one text: text pairs \
                                 are not supported (a batch is a list of texts, or of one-text \
                                 lists)"
                            )))
                        }
                        other => {
                            return Err(BodyError(format!(
                                "inputs[{index}] must be a string, not {}",
                                kind(&other)
                            )))
                        }
                    }
                }
                Inputs::Many(texts)
            }
            Some(other) => {
                return Err(BodyError(format!(
                    "\"inputs\" must be a string or a list of strings, not {}",
                    kind(&other)
                )))
            }
        };
        let flag =
            |fields: &mut serde_json::Map<String, Value>, name: &str| match fields.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(flag)) => Ok(Some(flag)),
                Some(other) => Err(BodyError(format!(
                    "\"{name}\" must be true or false, not {}",
                    kind(&other)
                ))),
            };
        let truncate = flag(&mut fields, "truncate")?;
        let raw_scores = flag(&mut fields, "raw_scores")?.unwrap_or(false);
        // TEI's truncation_direction: which end of a long text is cut.
        let truncate_start = match fields.remove("truncation_direction") {
            None | Some(Value::Null) => false,
            Some(Value::String(side)) if side.eq_ignore_ascii_case("right") => false,
            Some(Value::String(side)) if side.eq_ignore_ascii_case("left") => true,
            Some(other) => {
                return Err(BodyError(format!(
                    "\"truncation_direction\" must be \"Right\" (cut the end) or \"Left\" (cut the start), not {other}"
                )))
            }
        };
        // Other fields (the HF client's "parameters" among them) are ignored,
        // as TEI ignores them.
        Ok(Self {
            inputs,
            truncate,
            raw_scores,
            truncate_start,
        })
    }
}
