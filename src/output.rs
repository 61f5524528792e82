//! The last stage: predictions as output lines. JSON records carry the
//! serialized [`Prediction`] (its fields are the contract of `predict
//! --json` and `batch`); the human form is one aligned line per text.
//!
//! Passthrough: an input line's fields are written back exactly as they
//! were read (values byte for byte, order and duplicates kept), then the
//! result fields. An input field whose name a result field (or `error`)
//! uses is kept under `input_<name>` (prefixed again until the name is
//! free), so no input field is lost and only error records have `error`.

use serde_json::{Map, Value};

use crate::error::Result;
use crate::input::{Line, ParsedLine};
use crate::postprocess::Prediction;

/// What became of one input line once the engine delivered it: its parsed
/// form and prediction, or the message for its error record.
pub fn line_outcome(
    line: Line,
    result: Option<Result<Prediction>>,
) -> std::result::Result<(ParsedLine, Prediction), String> {
    match (line.parsed, result) {
        (Ok(parsed), Some(Ok(prediction))) => Ok((parsed, prediction)),
        (Err(message), _) => Err(message),
        (Ok(_), Some(Err(err))) => Err(err.chain_message()),
        (Ok(_), None) => Err("the line was not classified".into()),
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

/// `{"text": ..., <prediction fields>}`: `predict --json`'s line.
pub fn text_record(text: &str, prediction: &Prediction) -> Value {
    let mut record = Map::new();
    record.insert("text".into(), Value::String(text.to_string()));
    record.extend(prediction_fields(prediction));
    Value::Object(record)
}

/// The names result records use besides the prediction's own fields.
const RESERVED: [&str; 1] = ["error"];

/// Prefix for an input field whose name a result field takes.
pub const RENAMED_PREFIX: &str = "input_";

/// A classified input line, as one JSON line (without the newline): its
/// fields passed through as read (a plain-text line becomes `{"text": ...}`),
/// then the prediction's fields (see the module docs for name collisions).
pub fn line_record(parsed: ParsedLine, prediction: &Prediction) -> String {
    let results = prediction_fields(prediction);
    let mut out = String::from("{");
    let push = |out: &mut String, key: &str, value: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String(key.to_string()).to_string());
        out.push(':');
        out.push_str(value);
    };
    match parsed {
        ParsedLine::Record { fields, .. } => {
            let taken = |name: &str| {
                results.contains_key(name)
                    || RESERVED.contains(&name)
                    || fields.0.iter().any(|(key, _)| key == name)
            };
            for (key, value) in &fields.0 {
                let mut name = key.clone();
                if results.contains_key(key) || RESERVED.contains(&key.as_str()) {
                    name = format!("{RENAMED_PREFIX}{name}");
                    while taken(&name) {
                        name = format!("{RENAMED_PREFIX}{name}");
                    }
                }
                push(&mut out, &name, value.get());
            }
        }
        ParsedLine::Text(text) => push(&mut out, "text", &Value::String(text).to_string()),
    }
    for (key, value) in &results {
        push(&mut out, key, &value.to_string());
    }
    out.push('}');
    out
}

/// `{"line": N, "error": "..."}`: what stands in for a line that could not
/// be classified.
pub fn error_record(line: u64, message: &str) -> Value {
    Value::Object(Map::from_iter([
        ("line".to_string(), Value::from(line)),
        ("error".to_string(), Value::String(message.to_string())),
    ]))
}

/// `POSITIVE  0.9998  POSITIVE=0.9998 NEGATIVE=0.0002  the text`
pub fn human_line(text: &str, prediction: &Prediction) -> String {
    let scores: Vec<String> = prediction
        .scores
        .iter()
        .map(|s| format!("{}={:.4}", s.label, s.score))
        .collect();
    let note = match prediction.windows {
        _ if prediction.truncated => " [truncated]".to_string(),
        Some(windows) if windows > 1 => format!(" [{windows} windows]"),
        _ => String::new(),
    };
    format!(
        "{:<8}  {:.4}  {}  {}{note}",
        prediction.label,
        prediction.score,
        scores.join(" "),
        text.replace(['\n', '\r'], " ")
    )
}
