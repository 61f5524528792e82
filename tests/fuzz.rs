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
use sentiment::output::{error_record, line_outcome, line_record};
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
            let number = line.number;
            let record = match line_outcome(line, result) {
                Ok((parsed, prediction)) => line_record(parsed, &prediction),
                Err(message) => error_record(number, &message).to_string(),
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
                    let got = fields.get("text");
                    prop_assert_eq!(got.as_ref().and_then(|v| v.as_str()), Some(text.as_str()));
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

/// A length near `exact`: usually off by a little, sometimes right.
fn near(exact: usize, delta: i64) -> usize {
    (exact as i64 + delta).max(0) as usize
}

/// The CPU kernels behind `sentiment::unstable_kernels` (the model's own
/// calls always fit; these are what any other caller could pass). Each
/// either computes a result of the right size or refuses with an error:
/// never a panic, never an out-of-bounds access.
mod kernels {
    use super::near;
    use proptest::prelude::*;
    use sentiment::unstable_kernels as cpu;

    proptest! {
        #[test]
        fn linear_refuses_mismatched_operands(
            rows in 0usize..6,
            in_dim in 1usize..40,
            out_dim in 1usize..40,
            x_delta in -2i64..=2,
            bias_delta in proptest::option::of(-1i64..=1),
            residual_delta in proptest::option::of(-1i64..=1),
            gelu in any::<bool>(),
        ) {
            let weights = vec![0.25f32; in_dim * out_dim];
            let packed = cpu::PackedWeights::pack(&weights, out_dim, in_dim).unwrap();
            let x = vec![1.0f32; near(rows * in_dim, x_delta)];
            let bias = bias_delta.map(|d| vec![0.5f32; near(out_dim, d)]);
            let residual = residual_delta.map(|d| vec![0.5f32; near(rows * out_dim, d)]);
            let fits = x.len() == rows * in_dim
                && bias.as_ref().is_none_or(|b| b.len() == out_dim)
                && residual.as_ref().is_none_or(|r| r.len() == rows * out_dim);
            let epilogue = cpu::Epilogue {
                residual: residual.as_deref(),
                activation: gelu.then_some(sentiment::model::Activation::Gelu),
            };
            let got = cpu::linear_packed(&x, &packed, bias.as_deref(), rows, epilogue);
            prop_assert_eq!(got.is_ok(), fits);
            if let Ok(out) = got {
                prop_assert_eq!(out.len(), rows * out_dim);
            }
            #[cfg(target_arch = "x86_64")]
            {
                let int8 = cpu::int8::PackedInt8::from_f32(&packed);
                let got = cpu::linear_int8(&x, &int8, bias.as_deref(), rows, epilogue);
                prop_assert_eq!(got.is_ok(), fits && cpu::int8::available());
                if let Ok(out) = got {
                    prop_assert_eq!(out.len(), rows * out_dim);
                }
            }
        }

        #[test]
        fn packing_refuses_a_weight_of_the_wrong_size(
            out_dim in 0usize..40,
            in_dim in 0usize..40,
            delta in -2i64..=2,
        ) {
            let weights = vec![1.0f32; near(out_dim * in_dim, delta)];
            let fits = out_dim > 0 && in_dim > 0 && weights.len() == out_dim * in_dim;
            prop_assert_eq!(cpu::PackedWeights::pack(&weights, out_dim, in_dim).is_ok(), fits);
        }

        #[test]
        fn layer_norm_refuses_partial_rows(
            rows in 0usize..5,
            dim in 0usize..40,
            x_delta in -2i64..=2,
            bias_delta in -1i64..=1,
        ) {
            let x = vec![0.5f32; near(rows * dim, x_delta)];
            let weight = vec![1.0f32; dim];
            let bias = vec![0.0f32; near(dim, bias_delta)];
            let fits = dim > 0 && bias.len() == dim && x.len().is_multiple_of(dim);
            let got = cpu::layer_norm(&x, &weight, &bias, 1e-12);
            prop_assert_eq!(got.is_ok(), fits);
            if let Ok(out) = got {
                prop_assert_eq!(out.len(), x.len());
            }
        }

        #[test]
        fn attention_refuses_mismatched_operands(
            batch in 0usize..3,
            seq in 0usize..6,
            n_heads in 0usize..3,
            head_dim in 0usize..5,
            qkv_delta in -2i64..=2,
            mask_delta in -1i64..=1,
            padding in 0usize..3,
        ) {
            let dim = n_heads * head_dim;
            let qkv = vec![0.1f32; near(batch * seq * 3 * dim, qkv_delta)];
            let mut mask = vec![0.0f32; near(batch * seq, mask_delta)];
            for row in mask.chunks_mut(seq.max(1)) {
                let keep = row.len().saturating_sub(padding).max(1);
                row.iter_mut().skip(keep).for_each(|m| *m = f32::MIN);
            }
            let fits = qkv.len() == batch * seq * 3 * dim && mask.len() == batch * seq;
            let got = cpu::attention(&qkv, &mask, batch, seq, n_heads, head_dim);
            prop_assert_eq!(got.is_ok(), fits);
            if let Ok(out) = got {
                prop_assert_eq!(out.len(), batch * seq * dim);
                prop_assert!(out.iter().all(|v| v.is_finite()));
            }
        }
    }
}
