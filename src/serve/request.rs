//! Request bodies of `/predict` (and TEI's other predict routes) and
//! `/classify`, parsed by hand from bytes so that every way a body can be
//! wrong gets one message saying what is wrong (and a 422), whatever the
//! Content-Type.

use serde_json::Value;

use crate::tokenize::TextInput;

/// TEI's request: `{"inputs": ..., "truncate": bool, "raw_scores": bool,
/// "truncation_direction": "Right" | "Left"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictRequest {
    pub inputs: Inputs,
    /// None: the server's long-text setting decides.
    pub truncate: Option<bool>,
    /// Logits instead of probabilities (TEI's `raw_scores`).
    pub raw_scores: bool,
    /// Truncation keeps the last tokens (TEI's `"truncation_direction":
    /// "Left"`) rather than the first (`"Right"`); None: not given, the
    /// server's setting decides.
    pub truncate_start: Option<bool>,
    /// `parameters.top_k`, the HF Inference API's (and huggingface_hub's
    /// InferenceClient's) task parameter; read where POST / answers in that
    /// API's shape, ignored by TEI's routes as TEI ignores it.
    pub top_k: Option<usize>,
}

/// How a route reads `inputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputForm {
    /// TEI's predict: `"text"`, `["text"]` or a pair `["first", "second"]`
    /// (one answer), or a batch of one- and two-text lists `[["a"], ["b",
    /// "c"]]` (a list of answers).
    Tei,
    /// `/classify`: `"text"` or `{"text": ..., "text_pair": ...}` (HF's
    /// pipeline's pair) for one answer; a list of those, or of TEI's one-
    /// and two-text lists, for a list of answers.
    Classify,
}

/// What one answer is computed from: a text or a pair of texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequence {
    Single(String),
    Pair(String, String),
}

impl Sequence {
    /// The sequence as the library takes it.
    pub fn input(&self) -> TextInput<'_> {
        match self {
            Self::Single(text) => TextInput::Single(text),
            Self::Pair(first, second) => TextInput::Pair(first, second),
        }
    }
}

/// One sequence (answered with one result) or a batch (answered with a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    One(Sequence),
    Many(Vec<Sequence>),
}

impl Inputs {
    /// The sequences, in order.
    pub fn sequences(&self) -> &[Sequence] {
        match self {
            Self::One(sequence) => std::slice::from_ref(sequence),
            Self::Many(sequences) => sequences,
        }
    }

    /// How many sequences.
    pub fn len(&self) -> usize {
        self.sequences().len()
    }

    /// Whether there is no sequence at all (an empty list).
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

/// TEI's forms, as TEI's own parser reads them: a list of strings is one
/// sequence (a text, or a pair), a list of lists a batch.
fn tei_inputs(value: Value) -> Result<Inputs, BodyError> {
    const FORMS: &str = "\"inputs\" must be a text, a pair [\"first\", \"second\"] or a \
                         batch of one- and two-text lists [[\"a\"], [\"b\", \"c\"]]";
    let items = match value {
        Value::String(text) => return Ok(Inputs::One(Sequence::Single(text))),
        Value::Array(items) => items,
        other => return Err(BodyError(format!("{FORMS}, not {}", kind(&other)))),
    };
    match items.first() {
        // TEI's parser refuses an empty list outright (a 422), before its
        // handler's Empty check could see it.
        None => Err(BodyError(format!("{FORMS}, not an empty list"))),
        Some(Value::String(_)) => {
            let texts = strings(items, "inputs")?;
            sequence_of(texts, "inputs", FORMS).map(Inputs::One)
        }
        Some(_) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("inputs[{index}]");
                match item {
                    Value::Array(texts) => sequence_of(strings(texts, &at)?, &at, FORMS),
                    other => Err(BodyError(format!(
                        "{at} must be a list of one or two texts, as every item of a batch, \
                         not {}",
                        kind(&other)
                    ))),
                }
            })
            .collect::<Result<_, _>>()
            .map(Inputs::Many),
    }
}

/// `/classify`'s forms: a text or an HF pipeline pair object alone, or a
/// list whose items are texts, pair objects, or TEI's one- and two-text lists.
fn classify_inputs(value: Value) -> Result<Inputs, BodyError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("inputs[{index}]");
                match item {
                    Value::String(text) => Ok(Sequence::Single(text)),
                    Value::Object(fields) => pair_object(fields, &at),
                    Value::Array(texts) => sequence_of(
                        strings(texts, &at)?,
                        &at,
                        "an item that is a list holds one text or a pair of two",
                    ),
                    other => Err(BodyError(format!(
                        "{at} must be a text, a {{\"text\", \"text_pair\"}} object or a list \
                         of one or two texts, not {}",
                        kind(&other)
                    ))),
                }
            })
            .collect::<Result<_, _>>()
            .map(Inputs::Many),
        Value::String(text) => Ok(Inputs::One(Sequence::Single(text))),
        Value::Object(fields) => pair_object(fields, "inputs").map(Inputs::One),
        other => Err(BodyError(format!(
            "\"inputs\" must be a text, a {{\"text\", \"text_pair\"}} object or a list of \
             them, not {}",
            kind(&other)
        ))),
    }
}

/// HF's pipeline's `{"text": ..., "text_pair": ...}` (`text_pair` optional).
fn pair_object(
    mut fields: serde_json::Map<String, Value>,
    at: &str,
) -> Result<Sequence, BodyError> {
    let mut text = |name: &str| match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(BodyError(format!(
            "{at}.{name} must be a string, not {}",
            kind(&other)
        ))),
    };
    let first = text("text")?;
    let second = text("text_pair")?;
    if let Some(name) = fields.keys().next() {
        return Err(BodyError(format!(
            "{at} has a field {name:?}: a pair object holds \"text\" and \"text_pair\" only"
        )));
    }
    match (first, second) {
        (Some(first), Some(second)) => Ok(Sequence::Pair(first, second)),
        (Some(text), None) => Ok(Sequence::Single(text)),
        (None, _) => Err(BodyError(format!("{at} has no \"text\" field"))),
    }
}

/// A list's items as strings, or which one is not.
fn strings(items: Vec<Value>, at: &str) -> Result<Vec<String>, BodyError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(text) => Ok(text),
            other => Err(BodyError(format!(
                "{at}[{index}] must be a string, not {}",
                kind(&other)
            ))),
        })
        .collect()
}

/// One text or a pair from a list of one or two texts.
fn sequence_of(mut texts: Vec<String>, at: &str, forms: &str) -> Result<Sequence, BodyError> {
    match texts.len() {
        1 => Ok(Sequence::Single(texts.remove(0))),
        2 => {
            let second = texts.remove(1);
            Ok(Sequence::Pair(texts.remove(0), second))
        }
        n => Err(BodyError(format!(
            "{at} holds {n} texts, but a list here is one text or a pair of two: {forms}"
        ))),
    }
}

impl PredictRequest {
    /// Parses a body, reading `inputs` in `form`. Unknown fields are
    /// ignored, as TEI ignores them.
    pub fn parse(body: &[u8], form: InputForm) -> Result<Self, BodyError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| BodyError(format!("the body is not valid JSON: {err}")))?;
        let Value::Object(mut fields) = value else {
            return Err(BodyError(format!(
                "the body must be a JSON object with \"inputs\", not {}",
                kind(&value)
            )));
        };
        let inputs = match (fields.remove("inputs"), form) {
            (None, _) => return Err(BodyError("the body has no \"inputs\" field".into())),
            (Some(value), InputForm::Tei) => tei_inputs(value)?,
            (Some(value), InputForm::Classify) => classify_inputs(value)?,
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
            None | Some(Value::Null) => None,
            Some(Value::String(side)) if side.eq_ignore_ascii_case("right") => Some(false),
            Some(Value::String(side)) if side.eq_ignore_ascii_case("left") => Some(true),
            Some(other) => {
                return Err(BodyError(format!(
                    "\"truncation_direction\" must be \"Right\" (cut the end) or \"Left\" (cut the start), not {other}"
                )))
            }
        };
        let top_k = match fields.remove("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(parameters)) => match parameters.get("top_k") {
                None | Some(Value::Null) => None,
                Some(k) => Some(
                    k.as_u64()
                        .filter(|&k| k >= 1)
                        .and_then(|k| usize::try_from(k).ok())
                        .ok_or_else(|| {
                            BodyError(format!(
                                "\"parameters.top_k\" must be a whole number from 1, not {k}"
                            ))
                        })?,
                ),
            },
            Some(other) => {
                return Err(BodyError(format!(
                    "\"parameters\" must be an object, not {}",
                    kind(&other)
                )))
            }
        };
        // Other fields are ignored, as TEI ignores them.
        Ok(Self {
            inputs,
            truncate,
            raw_scores,
            truncate_start,
            top_k,
        })
    }
}
