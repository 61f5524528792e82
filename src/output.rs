//! The last stage: predictions as output lines. JSON records carry the
//! serialized [`Prediction`] (its fields are the contract of `predict
//! --json` and `batch`); the human form is one aligned line per text.

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

/// A classified input line: its JSON fields passed through (a plain-text
/// line becomes `{"text": ...}`), with the prediction's fields added.
pub fn line_record(parsed: ParsedLine, prediction: &Prediction) -> Value {
    let mut record = match parsed {
        ParsedLine::Record { fields, .. } => fields,
        ParsedLine::Text(text) => Map::from_iter([("text".to_string(), Value::String(text))]),
    };
    record.extend(prediction_fields(prediction));
    Value::Object(record)
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
