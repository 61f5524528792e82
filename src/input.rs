//! The first stage: input lines, read with a cap on their length and parsed
//! into texts (with their JSON fields, for passthrough). Every front end
//! that reads lines (`batch`, `predict` on stdin, `bench --dataset`) parses
//! them here, so they agree on what a bad line is.

use std::io::BufRead;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::json_kind;

/// Lines longer than this become an error record (and are not buffered),
/// so one runaway line cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// How each input line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum InputFormat {
    /// One JSON object per line; the text is in a named field.
    #[default]
    Jsonl,
    /// One text per line.
    Text,
}

/// A JSON object's fields in input order, each value exactly as it was
/// written (numbers keep every digit, strings every escape), duplicates
/// kept: what passes through to the output.
#[derive(Debug, Clone, Default)]
pub struct RawFields(pub Vec<(String, Box<RawValue>)>);

impl RawFields {
    /// The value of `name` (the last one, if the object repeats it), parsed:
    /// None where the field is absent, an error (said for a record) where it
    /// is present but cannot be read as a value (a lone surrogate escape, a
    /// number past f64, nesting past serde_json's 128 levels).
    pub fn get(&self, name: &str) -> Option<Result<Value, String>> {
        let (_, raw) = self.0.iter().rev().find(|(key, _)| key == name)?;
        Some(
            serde_json::from_str(raw.get())
                .map_err(|err| format!("field {name:?} cannot be read: {err}")),
        )
    }
}

impl PartialEq for RawFields {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && v1.get() == v2.get())
    }
}

impl<'de> Deserialize<'de> for RawFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = RawFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(field);
                }
                Ok(RawFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// Which fields of a JSON line hold what to classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextFields<'a> {
    /// The text (`--field`).
    pub text: &'a str,
    /// The second text of a pair, for models trained on pairs
    /// (`--pair-field`); every line must then have it.
    pub pair: Option<&'a str>,
}

impl<'a> From<&'a str> for TextFields<'a> {
    fn from(text: &'a str) -> Self {
        Self { text, pair: None }
    }
}

impl<'a> From<&'a String> for TextFields<'a> {
    fn from(text: &'a String) -> Self {
        Self { text, pair: None }
    }
}

/// One input line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedLine {
    /// A JSON object (whose fields are passed through), its text and, with
    /// a pair field, the pair's second text.
    Record {
        fields: RawFields,
        text: String,
        pair: Option<String>,
    },
    /// A plain-text line.
    Text(String),
}

impl ParsedLine {
    /// The text to classify.
    pub fn text(&self) -> &str {
        match self {
            Self::Record { text, .. } | Self::Text(text) => text,
        }
    }

    /// What to classify.
    pub fn input(&self) -> crate::TextInput<'_> {
        match self {
            Self::Record {
                text,
                pair: Some(pair),
                ..
            } => crate::TextInput::Pair(text, pair),
            _ => crate::TextInput::Single(self.text()),
        }
    }
}

/// Parses one line (without its `\n`). `first` marks line 1, where a UTF-8
/// byte-order mark is dropped; a trailing `\r` is dropped everywhere. The
/// error is the message for the line's error record.
pub fn parse_line<'f>(
    raw: &[u8],
    first: bool,
    format: InputFormat,
    fields: impl Into<TextFields<'f>>,
) -> Result<ParsedLine, String> {
    let names = fields.into();
    let raw = strip_line_ends(raw, first);
    let line = std::str::from_utf8(raw).map_err(|err| {
        format!(
            "line is not valid UTF-8 (invalid byte at offset {})",
            err.valid_up_to()
        )
    })?;
    match format {
        InputFormat::Text => Ok(ParsedLine::Text(line.to_string())),
        InputFormat::Jsonl => {
            if line.trim().is_empty() {
                return Err("blank line: expected a JSON object".into());
            }
            if !line.trim_start().starts_with('{') {
                // Not an object: parse it anyway, to say what it is.
                let value: Value =
                    serde_json::from_str(line).map_err(|err| format!("invalid JSON: {err}"))?;
                return Err(format!(
                    "expected a JSON object, found {}",
                    json_kind(&value)
                ));
            }
            let fields: RawFields =
                serde_json::from_str(line).map_err(|err| format!("invalid JSON: {err}"))?;
            let string = |field: &str| match fields.get(field).transpose()? {
                Some(Value::String(text)) => Ok(text),
                Some(other) => Err(format!(
                    "field {field:?} must be a string, found {}",
                    json_kind(&other)
                )),
                None => Err(format!("field {field:?} is missing")),
            };
            let text = string(names.text)?;
            let pair = names.pair.map(string).transpose()?;
            Ok(ParsedLine::Record { fields, text, pair })
        }
    }
}

/// A line without its `\r` and, on line 1, its UTF-8 byte-order mark.
fn strip_line_ends(raw: &[u8], first: bool) -> &[u8] {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if first {
        raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
    } else {
        raw
    }
}

/// Reads one line into `buf` (without the `\n`), keeping at most `max`
/// bytes; the rest of a longer line is consumed and dropped. Returns the
/// line's full length, or None at the end of input.
pub fn read_line_capped(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0usize;
    let mut saw_any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if chunk.is_empty() {
            return Ok(saw_any.then_some(total));
        }
        saw_any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(end) => (&chunk[..end], Some(end + 1)),
            None => (chunk, None),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        total = total.saturating_add(part.len());
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(total));
        }
    }
}

/// One line as read and parsed: its number (from 1) and its text, or the
/// message for its error record.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The line's number in the input, from 1.
    pub number: u64,
    /// The parsed line, or the message for its error record.
    pub parsed: Result<ParsedLine, String>,
    /// A JSON object whose text could not be used (missing, not a string)
    /// still has fields: kept here for its error record.
    pub failed_fields: Option<RawFields>,
}

impl Line {
    /// Parses a line of `len` bytes of which `raw` holds at most `max`:
    /// a longer line is an error, whatever its first bytes say.
    pub fn parse<'f>(
        number: u64,
        raw: &[u8],
        len: usize,
        max: usize,
        format: InputFormat,
        fields: impl Into<TextFields<'f>>,
    ) -> Self {
        let parsed = if len > max {
            Err(format!(
                "line is {len} bytes, over the limit of {max} bytes"
            ))
        } else {
            parse_line(raw, number == 1, format, fields)
        };
        let failed_fields = match (&parsed, format) {
            (Err(_), InputFormat::Jsonl) if len <= max => {
                serde_json::from_slice(strip_line_ends(raw, number == 1)).ok()
            }
            _ => None,
        };
        Self {
            number,
            parsed,
            failed_fields,
        }
    }

    /// A line with its text already in hand (`predict`'s arguments).
    pub fn text(number: u64, text: String) -> Self {
        Self {
            number,
            parsed: Ok(ParsedLine::Text(text)),
            failed_fields: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<ParsedLine, String> {
        parse_line(raw, false, InputFormat::Jsonl, "text")
    }

    #[test]
    fn parses_objects_and_rejects_everything_else() {
        assert_eq!(parse(br#"{"text":"hi","id":3}"#).unwrap().text(), "hi");
        assert!(parse(b"{not json").unwrap_err().starts_with("invalid JSON"));
        assert!(parse(b"[1,2]").unwrap_err().contains("an array"));
        assert!(parse(br#"{"id":1}"#).unwrap_err().contains("missing"));
        assert!(parse(br#"{"text":null}"#).unwrap_err().contains("null"));
        assert!(parse(br#"{"text":5}"#).unwrap_err().contains("a number"));
        assert!(parse(br#"{"text":["a"]}"#)
            .unwrap_err()
            .contains("an array"));
        assert!(parse(b"").unwrap_err().contains("blank"));
        assert!(parse(b"\xff\xfe").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn strips_crlf_and_a_leading_bom_only_on_line_one() {
        let bom_line = b"\xEF\xBB\xBF{\"text\":\"a\"}\r";
        assert_eq!(
            parse_line(bom_line, true, InputFormat::Jsonl, "text")
                .unwrap()
                .text(),
            "a"
        );
        assert!(parse_line(bom_line, false, InputFormat::Jsonl, "text").is_err());
        assert_eq!(
            parse_line(b"plain\r", false, InputFormat::Text, "text")
                .unwrap()
                .text(),
            "plain"
        );
    }

    #[test]
    fn capped_reader_drops_the_tail_of_long_lines() {
        let mut input: &[u8] = b"abcdef\nxy\nlast";
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), Some(6));
        assert_eq!(buf, b"abc");
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), Some(2));
        assert_eq!(buf, b"xy");
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), Some(4));
        assert_eq!(buf, b"las");
        assert_eq!(read_line_capped(&mut input, &mut buf, 3).unwrap(), None);
    }

    #[test]
    fn a_pair_field_makes_a_pair_and_must_be_there() {
        let names = TextFields {
            text: "premise",
            pair: Some("hypothesis"),
        };
        let parse = |raw: &[u8]| parse_line(raw, false, InputFormat::Jsonl, names);
        let line = parse(br#"{"premise":"a","hypothesis":"b","id":1}"#).unwrap();
        assert_eq!(line.input(), crate::TextInput::Pair("a", "b"));
        assert_eq!(
            parse(br#"{"premise":"a"}"#).unwrap_err(),
            "field \"hypothesis\" is missing"
        );
        assert!(parse(br#"{"premise":"a","hypothesis":null}"#)
            .unwrap_err()
            .contains("must be a string, found null"));
        assert!(parse(br#"{"hypothesis":"b"}"#)
            .unwrap_err()
            .contains("\"premise\" is missing"));
    }

    /// A field that is there but cannot be read is said to be so, with
    /// what is wrong, never called missing (issue 40, item 7).
    #[test]
    fn a_present_but_unreadable_field_is_not_called_missing() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for (line, says) in [
            (r#"{"text":"\ud800"}"#.to_string(), "escape"),
            (r#"{"text":"a \udfff b"}"#.to_string(), "escape"),
            (r#"{"text":1e400}"#.to_string(), "out of range"),
            (format!(r#"{{"text":{deep}}}"#), "recursion limit"),
        ] {
            let err = parse_line(line.as_bytes(), false, InputFormat::Jsonl, "text").unwrap_err();
            assert!(
                err.contains("field \"text\" cannot be read") && err.contains(says),
                "{err}"
            );
        }
        // A field beside the text that cannot be read is still passed through.
        let parsed = parse_line(
            br#"{"text":"ok","other":1e400}"#,
            false,
            InputFormat::Jsonl,
            "text",
        );
        assert!(parsed.is_ok());
    }

    #[test]
    fn a_line_over_the_cap_is_an_error_whatever_it_starts_with() {
        let line = Line::parse(2, br#"{"text":"a"}"#, 100, 12, InputFormat::Jsonl, "text");
        assert!(line.parsed.unwrap_err().contains("over the limit"));
    }
}
