//! Small JSON helpers shared by the input, model and serve layers.

use serde_json::Value;

/// "a number", "an array", ...: for messages about JSON values.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
