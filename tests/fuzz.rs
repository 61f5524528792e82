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
                Err((message, fields)) => error_record(number, &message, fields.as_ref()),
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
                Ok(ParsedLine::Record { fields, text, .. }) => {
                    let got = fields.get("text").and_then(Result::ok);
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

    /// Any pair, of any lengths (sides past 32 KB are read in pieces):
    /// a distribution, within the limit, and a cut pair fills it.
    #[test]
    fn any_pair_classifies_to_a_distribution_within_the_limit(
        first in any::<String>(),
        second in any::<String>(),
        repeats in (1usize..400, 1usize..400),
    ) {
        let (first, second) = (first.repeat(repeats.0), second.repeat(repeats.1));
        let options = sentiment::ClassifyOptions::default();
        let prediction = tiny().classify_pairs(&[(&first, &second)], &options).unwrap().remove(0);
        let total: f32 = prediction.scores.iter().map(|s| s.score).sum();
        prop_assert!((total - 1.0).abs() < 1e-4);
        prop_assert!(prediction.logits.iter().all(|l| l.is_finite()));
        prop_assert!(prediction.tokens >= 3 && prediction.tokens <= 512);
        if prediction.truncated {
            prop_assert_eq!(prediction.tokens, 512);
        }
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

    /// The kernels this CPU runs fastest.
    fn fastest() -> cpu::CpuKernels {
        cpu::KernelPlan::fastest().cpu.unwrap()
    }

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
            let got = cpu::linear_packed(&x, &packed, bias.as_deref(), rows, epilogue, fastest().linear.kernel);
            prop_assert_eq!(got.is_ok(), fits);
            if let Ok(out) = got {
                prop_assert_eq!(out.len(), rows * out_dim);
            }
            #[cfg(target_arch = "x86_64")]
            for kernel in [cpu::int8::Kernel::Vnni, cpu::int8::Kernel::Avx2] {
                let int8 = cpu::int8::PackedInt8::from_f32(&packed, kernel);
                let got = cpu::linear_int8(&x, &int8, bias.as_deref(), rows, epilogue);
                prop_assert_eq!(got.is_ok(), fits && kernel.available());
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
            let got = cpu::layer_norm(&x, &weight, &bias, 1e-12, fastest().vector);
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
            let got = cpu::attention(fastest().vector, &qkv, &mask, (batch, seq), (n_heads, head_dim));
            prop_assert_eq!(got.is_ok(), fits);
            if let Ok(out) = got {
                prop_assert_eq!(out.len(), batch * seq * dim);
                prop_assert!(out.iter().all(|v| v.is_finite()));
            }
        }
    }
}

/// The loaders and validators that see user files and flags: config.json,
/// tokenizer.json, --revision, and the passthrough of input fields.
mod loaders {
    use super::*;
    use sentiment::input::RawFields;
    use sentiment::model::Config;
    use sentiment::source::{
        is_revision, FileBytes, ModelFiles, TokenizerFiles, Vocabulary, Weights,
    };
    use sentiment::unstable_kernels::TextTokenizer;

    /// Texts that reach the normalizer's every kind of entry.
    const SLOW_TEXTS: [&str; 5] = [
        "a good film",
        "ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ ﬁ ① ² café",
        "東京 😀 👨‍👩‍👧 ภาษาไทย",
        "",
        "  \t\n <mask> @user \u{200b}",
    ];
    use sentiment::{Classifier, ClassifyOptions, Precision};
    use serde_json::Value;

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-z_]{1,12}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// The config fields the loader reads, and a few it does not.
    const CONFIG_FIELDS: [&str; 21] = [
        "model_type",
        "hidden_size",
        "hidden_act",
        "layer_norm_eps",
        "type_vocab_size",
        "num_hidden_layers",
        "architectures",
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "hidden_dim",
        "activation",
        "max_position_embeddings",
        "pad_token_id",
        "sinusoidal_pos_embds",
        "id2label",
        "problem_type",
        "label2id",
        "dropout",
        "other",
    ];

    fn tiny_files(config: Vec<u8>, tokenizer: Vec<u8>) -> ModelFiles {
        let dir = tiny_model_dir();
        ModelFiles {
            name: "fuzzed".into(),
            config: FileBytes {
                origin: dir.join("config.json"),
                bytes: config.into(),
            },
            tokenizer: TokenizerFiles::json(FileBytes {
                origin: dir.join("tokenizer.json"),
                bytes: tokenizer.into(),
            }),
            weights: Weights::Safetensors(dir.join("model.safetensors")),
        }
    }

    fn tiny_json(name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(tiny_model_dir().join(name)).unwrap()).unwrap()
    }

    proptest! {
        /// Any config.json, and the real one with any field set to any
        /// value: loading never panics, and a model that loads classifies.
        #[test]
        fn any_config_loads_or_is_refused(
            whole in json_value(),
            edits in proptest::collection::vec((0..CONFIG_FIELDS.len(), json_value()), 1..4),
        ) {
            // Parsing and validating arbitrary JSON never panics.
            if let Ok(config) = Config::from_json(whole.to_string().as_bytes()) {
                let _ = config.validate();
            }
            let mut config = tiny_json("config.json");
            for (field, value) in edits {
                config[CONFIG_FIELDS[field]] = value;
            }
            let tokenizer = std::fs::read(tiny_model_dir().join("tokenizer.json")).unwrap();
            let files = tiny_files(config.to_string().into_bytes(), tokenizer);
            if let Ok(classifier) = Classifier::from_files(&files, &candle_core::Device::Cpu, Precision::F32) {
                let result = classifier.classify(&["a good film"], &ClassifyOptions::default());
                prop_assert!(result.is_ok(), "{:?}", result.err());
            }
        }

        /// Any tokenizer.json-shaped JSON, and the real one with a section
        /// replaced by any value: loading never panics.
        #[test]
        fn any_tokenizer_loads_or_is_refused(
            section in proptest::sample::select(vec![
                "normalizer", "pre_tokenizer", "post_processor", "decoder", "truncation",
                "padding", "added_tokens", "model",
            ]),
            value in json_value(),
        ) {
            let mut tokenizer = tiny_json("tokenizer.json");
            tokenizer[section] = value;
            let config = std::fs::read(tiny_model_dir().join("config.json")).unwrap();
            let files = tiny_files(config, tokenizer.to_string().into_bytes());
            if let Ok(classifier) = Classifier::from_files(&files, &candle_core::Device::Cpu, Precision::F32) {
                // Per-text failures are errors, never panics.
                let _ = classifier.batcher(ClassifyOptions::default()).run(["a good film", ""], |_: &str, _| Ok::<(), ()>(()));
            }
        }

        /// A SentencePiece model with bytes changed or cut off (most land
        /// in its normalization charsmap, a trie read by unchecked
        /// indexing), with any tokenizer_config.json: building the
        /// tokenizer never panics or aborts, and one that builds encodes
        /// every text to ids or an error.
        #[test]
        fn damaged_sentencepiece_models_build_or_are_refused(
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1..=255u8), 0..24),
            cut in proptest::option::of(any::<proptest::sample::Index>()),
            settings in proptest::option::of(json_value()),
        ) {
            let dir = fixture("hub/twitter-xlm-roberta");
            let mut model = std::fs::read(dir.join("sentencepiece.bpe.model")).unwrap();
            for (at, byte) in flips {
                let at = at.index(model.len());
                model[at] ^= byte;
            }
            if let Some(cut) = cut {
                model.truncate(cut.index(model.len()));
            }
            let file = |name: &str, bytes: Vec<u8>| FileBytes { origin: dir.join(name), bytes: bytes.into() };
            let files = TokenizerFiles {
                vocabulary: Vocabulary::SentencePiece(file("sentencepiece.bpe.model", model)),
                config: settings.map(|v| file("tokenizer_config.json", v.to_string().into_bytes())),
                special_tokens_map: None,
                added_tokens: None,
            };
            if let Ok(tokenizer) = TextTokenizer::from_files(&files, "xlm-roberta", 512) {
                for text in SLOW_TEXTS {
                    let _ = tokenizer.encode(text);
                }
            }
        }

        /// vocab.json as any JSON and merges.txt with any lines: the BPE
        /// builds or is refused, never panics.
        #[test]
        fn any_bpe_files_build_or_are_refused(
            vocab in proptest::option::of(json_value()),
            lines in proptest::collection::vec("[ -~]{0,12}|\\PC{0,6}", 0..12),
        ) {
            let dir = fixture("hub/twitter-roberta");
            let vocab = vocab.map_or_else(|| std::fs::read(dir.join("vocab.json")).unwrap(), |v| v.to_string().into_bytes());
            let mut merges = std::fs::read_to_string(dir.join("merges.txt")).unwrap();
            for line in lines {
                merges.push_str(&line);
                merges.push('\n');
            }
            let file = |name: &str, bytes: Vec<u8>| FileBytes { origin: dir.join(name), bytes: bytes.into() };
            let files = TokenizerFiles {
                vocabulary: Vocabulary::BytePairs { vocab: file("vocab.json", vocab), merges: file("merges.txt", merges.into_bytes()) },
                config: None,
                special_tokens_map: None,
                added_tokens: None,
            };
            if let Ok(tokenizer) = TextTokenizer::from_files(&files, "roberta", 512) {
                for text in SLOW_TEXTS {
                    let _ = tokenizer.encode(text);
                }
            }
        }

        /// A revision that passes the validator names a folder inside the
        /// cache: no parent, root or empty component.
        #[test]
        fn valid_revisions_stay_inside_the_cache(revision in "[ -~]{0,24}|\\PC{0,12}") {
            if is_revision(&revision) {
                let path = std::path::Path::new("/cache/snapshots").join(&revision);
                prop_assert!(path.starts_with("/cache/snapshots/"));
                prop_assert!(path.components().all(|c| matches!(c,
                    std::path::Component::Normal(_) | std::path::Component::RootDir)));
                prop_assert!(!revision.split('/').any(|p| p.is_empty() || p == ".." || p == "."));
            }
        }

        /// Any JSON object passes through byte for byte: each input field,
        /// in order, with its value exactly as written (under `input_<name>`
        /// if a result field takes its name), then the result fields.
        #[test]
        fn passthrough_is_byte_exact(
            fields in proptest::collection::vec((field_name(), raw_json(3)), 0..8),
            text in any::<String>(),
        ) {
            let prediction = predict(tiny(), &["a good film"]).remove(0);
            let mut line = format!("{{\"text\":{}", serde_json::to_string(&text).unwrap());
            for (key, raw) in &fields {
                line.push_str(&format!(",{}:{raw}", serde_json::to_string(key).unwrap()));
            }
            line.push('}');
            let parsed = parse_line(line.as_bytes(), false, InputFormat::Jsonl, "text");
            let parsed = match parsed {
                Ok(parsed) => parsed,
                // A duplicate "text" of another type: an error record, fine.
                Err(message) => { prop_assert!(message.contains("text")); return Ok(()); }
            };
            let out: RawFields = serde_json::from_str(&sentiment::output::line_record(parsed, &prediction)).unwrap();
            let input: Vec<(String, String)> = std::iter::once(("text".to_string(), serde_json::to_string(&text).unwrap()))
                .chain(fields.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect();
            prop_assert_eq!(out.0.len(), input.len() + 4);
            for ((key, raw), (out_key, out_raw)) in input.iter().zip(&out.0) {
                prop_assert!(out_key == key || (out_key.ends_with(key.as_str()) && out_key.starts_with("input_")),
                    "{} became {}", key, out_key);
                prop_assert_eq!(out_raw.get(), raw.as_str());
            }
            let results: Vec<&str> = out.0[input.len()..].iter().map(|(k, _)| k.as_str()).collect();
            prop_assert_eq!(results, ["label", "score", "scores", "truncated"]);
            prop_assert!(!out.0.iter().any(|(k, _)| k == "error"));
        }
    }

    /// Field names, often the ones results use.
    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec![
                "label",
                "score",
                "scores",
                "truncated",
                "windows",
                "error",
                "input_label",
                "input_error",
                "line",
                "id"
            ])
            .prop_map(String::from),
            "[a-z_]{1,10}",
            any::<String>(),
        ]
    }

    /// JSON text written the way people and other tools write it: numbers
    /// beyond f64, exponents, escapes, odd spacing.
    fn raw_json(depth: u32) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,25})?([eE][+-]?[0-9]{1,4})?",
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            "\"(\\\\u00[0-7][0-9a-f]|\\\\[nrt/\\\\\"]|[a-z])*\"",
            Just("true".to_string()),
            Just("null".to_string()),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        prop_oneof![
            3 => leaf,
            1 => proptest::collection::vec(raw_json(depth - 1), 0..4)
                .prop_map(|items| format!("[ {} ]", items.join(" ,"))),
            1 => proptest::collection::vec(("[a-z]{1,5}", raw_json(depth - 1)), 0..4)
                .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect::<Vec<_>>().join(","))),
        ]
        .boxed()
    }
}
