//! Property tests (the project's fuzzing): the line parser, the batching
//! engine over a whole stream, tokenize + forward on the tiny model, and
//! the CPU kernels never panic and keep their contracts on arbitrary input.
//!
//! CI runs the default 256 cases per property. A longer run:
//!     PROPTEST_CASES=20000 cargo test --release --test fuzz
//! Failures proptest finds are saved under tests/fuzz.proptest-regressions
//! and replayed first on every run.

mod common;

use std::io::BufRead;
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use sentiment::input::{
    parse_line, read_line_capped, InputFormat, Line, ParsedLine, MAX_LINE_BYTES,
};
use sentiment::output::{error_record, line_record};
use sentiment::{Classifier, ClassifyOptions};

/// What `sentiment batch` does, through the library: every line read and
/// parsed, run through the batching engine, written as its record.
fn classify_stream(input: &[u8], batch_size: usize) -> (Vec<u8>, u64) {
    let mut reader = std::io::Cursor::new(input);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    while let Some(len) = read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES).unwrap() {
        let number = lines.len() as u64 + 1;
        lines.push(Line::parse(
            number,
            &buf,
            len,
            MAX_LINE_BYTES,
            InputFormat::Jsonl,
            "text",
        ));
    }
    assert!(reader.fill_buf().unwrap().is_empty());
    let mut out = Vec::new();
    let summary = tiny()
        .batcher(ClassifyOptions::default())
        .with_batch_size(batch_size)
        .run(lines, |line: Line, result| {
            let record = match (line.parsed, result) {
                (Ok(parsed), Some(Ok(prediction))) => line_record(parsed, &prediction),
                (Err(message), _) => error_record(line.number, &message),
                (Ok(_), Some(Err(err))) => error_record(line.number, &err.chain_message()),
                (Ok(_), None) => panic!("a parsed line has a text"),
            };
            out.extend_from_slice(record.to_string().as_bytes());
            out.push(b'\n');
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    (out, summary.delivered)
}

fn tiny() -> &'static Classifier {
    static MODEL: OnceLock<Classifier> = OnceLock::new();
    MODEL.get_or_init(|| load(&tiny_model_dir()))
}

/// Bytes that look like JSONL often enough to reach the deep paths.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<String>().prop_map(|s| serde_json::json!({ "text": s, "id": 1 })
            .to_string()
            .into_bytes()),
        any::<String>().prop_map(|s| format!("{{\"text\":{s}}}").into_bytes()),
        "[\\PC\\x00-\\x1f\"{}\\[\\]:,\\\\]{0,40}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn parser_never_panics_and_keeps_the_text(raw in line_bytes(), first in any::<bool>()) {
        for format in [InputFormat::Jsonl, InputFormat::Text] {
            match parse_line(&raw, first, format, "text") {
                Ok(ParsedLine::Record { fields, text }) => {
                    prop_assert_eq!(fields.get("text").and_then(|v| v.as_str()), Some(text.as_str()));
                }
                Ok(ParsedLine::Text(text)) => prop_assert!(raw.len() >= text.len()),
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
    }

    #[test]
    fn stream_gives_one_json_line_per_input_line(
        lines in proptest::collection::vec(line_bytes(), 0..12),
        batch_size in 1usize..5,
        final_newline in any::<bool>(),
    ) {
        // A line may not contain '\n' itself; each becomes exactly one line.
        let lines: Vec<Vec<u8>> = lines
            .into_iter()
            .map(|l| l.into_iter().filter(|&b| b != b'\n').collect())
            .collect();
        let mut input = lines.join(&b'\n');
        if final_newline && !lines.is_empty() {
            input.push(b'\n');
        }
        // Without a final newline, an empty last line is no line at all.
        let expected = match lines.last() {
            Some(last) if last.is_empty() && !final_newline => lines.len() - 1,
            _ => lines.len(),
        };
        let (out, delivered) = classify_stream(&input, batch_size);
        let text = String::from_utf8(out).unwrap();
        prop_assert_eq!(text.lines().count(), expected);
        prop_assert_eq!(delivered as usize, expected);
        for (i, line) in text.lines().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(n) = value.get("line") {
                prop_assert_eq!(n.as_u64(), Some(i as u64 + 1));
            } else {
                prop_assert!(value["label"].is_string());
            }
        }
    }

    #[test]
    fn any_text_classifies_to_a_distribution(text in any::<String>()) {
        let prediction = predict(tiny(), &[&text]).remove(0);
        let total: f32 = prediction.scores.iter().map(|s| s.score).sum();
        prop_assert!((total - 1.0).abs() < 1e-4);
        prop_assert!(prediction.logits.iter().all(|l| l.is_finite()));
        prop_assert!(prediction.tokens >= 2 && prediction.tokens <= 512);
    }
}
