//! One module per subcommand, plus how a prediction is written out.

pub mod batch;
pub mod bench;
pub mod predict;

use std::io::Write;

use serde_json::{Map, Value};

use crate::classifier::{LongText, Prediction};
use crate::error::{Error, Result};

/// The result fields HF's pipeline uses (`label`, `score`), plus every
/// label's score in `scores` (best first, cut to `top_k`), whether the text
/// was truncated to fit the model and, in window mode, how many windows
/// were classified.
pub fn result_fields(
    prediction: &Prediction,
    top_k: Option<u32>,
    long_text: LongText,
) -> Map<String, Value> {
    let k = top_k.map_or(prediction.scores.len(), |k| k as usize);
    let scores: Map<String, Value> = prediction
        .top_k(k)
        .into_iter()
        .map(|s| (s.label.clone(), json_number(s.score)))
        .collect();
    let mut fields = Map::new();
    fields.insert("label".into(), Value::String(prediction.label.clone()));
    fields.insert("score".into(), json_number(prediction.score));
    fields.insert("scores".into(), Value::Object(scores));
    fields.insert("truncated".into(), Value::Bool(prediction.truncated));
    if matches!(long_text, LongText::Window { .. }) {
        fields.insert("windows".into(), Value::from(prediction.windows));
    }
    fields
}

/// f32 scores as JSON numbers (NaN, which JSON cannot hold, becomes null).
fn json_number(x: f32) -> Value {
    serde_json::Number::from_f64(f64::from(x)).map_or(Value::Null, Value::Number)
}

/// Writes one line to stdout, mapping failures (EPIPE included) to an I/O
/// error that `main` turns into a quiet exit or exit code 6.
pub fn write_line(out: &mut impl Write, line: &str) -> Result<()> {
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|err| Error::io("cannot write output", err))
}

pub fn flush(out: &mut impl Write) -> Result<()> {
    out.flush()
        .map_err(|err| Error::io("cannot write output", err))
}
