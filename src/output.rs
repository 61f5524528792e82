//! The last stage: predictions as output lines. JSON records carry the
//! serialized [`Prediction`] (its fields are the contract of `predict
//! --json` and `batch`); the human form is one aligned line per text.
//!
//! Passthrough: an input line's fields are written back exactly as they
//! were read (values byte for byte, order and duplicates kept), then the
//! result fields. An input field whose name a result field (or `error`)
//! uses is kept under `input_<name>` (prefixed again until the name is
//! free), so no input field is lost and only error records have `error`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::error::Result;
use crate::input::{Line, ParsedLine, RawFields};
use crate::postprocess::Prediction;
use crate::tokenize::TextInput;

/// What became of one input line once the engine delivered it: its parsed
/// form and prediction, or the message and (for a JSON object) the fields
/// for its error record.
pub fn line_outcome(
    line: Line,
    result: Option<Result<Prediction>>,
) -> std::result::Result<(ParsedLine, Prediction), (String, Option<RawFields>)> {
    let fields_of = |parsed: ParsedLine| match parsed {
        ParsedLine::Record { fields, .. } => Some(fields),
        ParsedLine::Text(_) => None,
    };
    match (line.parsed, result) {
        (Ok(parsed), Some(Ok(prediction))) => Ok((parsed, prediction)),
        (Err(message), _) => Err((message, line.failed_fields)),
        (Ok(parsed), Some(Err(err))) => Err((err.chain_message(), fields_of(parsed))),
        (Ok(parsed), None) => Err(("the line was not classified".into(), fields_of(parsed))),
    }
}

/// The prediction's serialized fields.
pub fn prediction_fields(prediction: &Prediction) -> Map<String, Value> {
    match serde_json::to_value(prediction) {
        Ok(Value::Object(fields)) => fields,
        // A struct of strings, numbers and maps always serializes to an object.
        _ => Map::new(),
    }
}

/// `{"text": ..., <prediction fields>}` (and `"text_pair"` after the text
/// for a pair): `predict --json`'s line.
pub fn text_record<'t>(input: impl Into<TextInput<'t>>, prediction: &Prediction) -> Value {
    let mut record = Map::new();
    match input.into() {
        TextInput::Single(text) => {
            record.insert("text".into(), Value::String(text.to_string()));
        }
        TextInput::Pair(first, second) => {
            record.insert("text".into(), Value::String(first.to_string()));
            record.insert("text_pair".into(), Value::String(second.to_string()));
        }
    }
    record.extend(prediction_fields(prediction));
    Value::Object(record)
}

/// The names result records use besides the prediction's own fields.
const RESERVED: [&str; 1] = ["error"];

/// Prefix for an input field whose name a result field takes.
pub const RENAMED_PREFIX: &str = "input_";

/// A JSON object written a field at a time, values as raw JSON text.
struct Object(String);

impl Object {
    fn new() -> Self {
        Self(String::from("{"))
    }

    fn push(&mut self, key: &str, raw: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&Value::String(key.to_string()).to_string());
        self.0.push(':');
        self.0.push_str(raw);
    }

    /// The input's fields in order, values as read; a field whose name is
    /// `reserved` goes under `input_<name>` (prefixed until free). Linear in
    /// the fields: their names are looked up in a set, and each reserved
    /// name is resolved once, however often it repeats.
    fn push_passthrough(&mut self, fields: &RawFields, reserved: impl Fn(&str) -> bool) {
        let names: HashSet<&str> = fields.0.iter().map(|(key, _)| key.as_str()).collect();
        let mut renamed: HashMap<&str, String> = HashMap::new();
        for (key, value) in &fields.0 {
            if !reserved(key) {
                self.push(key, value.get());
                continue;
            }
            let name = renamed.entry(key.as_str()).or_insert_with(|| {
                let mut name = format!("{RENAMED_PREFIX}{key}");
                while reserved(&name) || names.contains(name.as_str()) {
                    name.insert_str(0, RENAMED_PREFIX);
                }
                name
            });
            let name = name.clone();
            self.push(&name, value.get());
        }
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A classified input line, as one JSON line (without the newline): its
/// fields passed through as read (a plain-text line becomes `{"text": ...}`),
/// then the prediction's fields (see the module docs for name collisions).
pub fn line_record(parsed: ParsedLine, prediction: &Prediction) -> String {
    let results = prediction_fields(prediction);
    let mut out = Object::new();
    match parsed {
        ParsedLine::Record { fields, .. } => out.push_passthrough(&fields, |name| {
            results.contains_key(name) || RESERVED.contains(&name)
        }),
        ParsedLine::Text(text) => out.push("text", &Value::String(text).to_string()),
    }
    for (key, value) in &results {
        out.push(key, &value.to_string());
    }
    out.finish()
}

/// What stands in for a line that could not be classified, as one JSON
/// line: `{"line": N, "error": "...", ...}`, followed by the line's fields
/// when it was a JSON object (an input `line` or `error` field is kept as
/// `input_line` / `input_error`), so an id survives a bad text.
pub fn error_record(line: u64, message: &str, fields: Option<&RawFields>) -> String {
    let mut out = Object::new();
    out.push("line", &line.to_string());
    out.push("error", &Value::String(message.to_string()).to_string());
    if let Some(fields) = fields {
        out.push_passthrough(fields, |name| name == "line" || name == "error");
    }
    out.finish()
}

/// `POSITIVE  0.9998  POSITIVE=0.9998 NEGATIVE=0.0002  the text`: every
/// string in it (label names from the model's config, the text) made safe
/// for a terminal first, so that a model's files cannot forge a line.
pub fn human_line<'t>(input: impl Into<TextInput<'t>>, prediction: &Prediction) -> String {
    let scores: Vec<String> = prediction
        .scores
        .iter()
        .map(|s| format!("{}={:.4}", terminal_safe(&s.label), s.score))
        .collect();
    let note = match prediction.windows {
        _ if prediction.truncated => " [truncated]".to_string(),
        Some(windows) if windows > 1 => format!(" [{windows} windows]"),
        _ => String::new(),
    };
    format!(
        "{:<8}  {:.4}  {}  {}{note}",
        terminal_safe(&prediction.label),
        prediction.score,
        scores.join(" "),
        match input.into() {
            TextInput::Single(text) => terminal_safe(text),
            TextInput::Pair(first, second) => {
                format!("{} | {}", terminal_safe(first), terminal_safe(second)).into()
            }
        }
    )
}

/// A string on one line of a terminal, changing nothing else on it: line
/// breaks and tabs become spaces; other control characters (an ANSI escape,
/// a bell), Unicode's line and paragraph separators and the bidirectional
/// overrides that reorder what is shown are written as `\u{..}` escapes.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return text.into();
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => safe.push(' '),
            c if unsafe_char(c) => safe.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => safe.push(c),
        }
    }
    safe.into()
}
