//! The library's batching engine (`Batcher`) and per-call options, through
//! the public API only, on the tiny test model.

mod common;

use std::cell::Cell;

use common::*;
use sentiment::input::{InputFormat, Line};
use sentiment::{Aggregate, CancelFlag, ClassifyOptions, Feed, LongText};

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| "word ".repeat(1 + (i * 7) % 23) + &i.to_string())
        .collect()
}

#[test]
fn results_come_back_in_input_order_whatever_the_length_sorting() {
    let classifier = load(&tiny_model_dir());
    let texts = texts(50);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let together = classifier
        .batcher(ClassifyOptions::default())
        .with_batch_size(4)
        .with_window(20);
    let mut batched = Vec::new();
    let summary = together
        .run(refs.iter().copied(), |text: &str, result| {
            batched.push((text.to_string(), result.unwrap().unwrap()));
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(summary.delivered, 50);
    for (text, (delivered, prediction)) in refs.iter().zip(&batched) {
        assert_eq!(text, delivered);
        let alone = predict(&classifier, &[text]).remove(0);
        assert!(max_abs_diff(&alone.logits, &prediction.logits) <= LOGIT_TOLERANCE);
    }
}

#[test]
fn options_are_per_call_on_one_loaded_model() {
    let classifier = load(&tiny_model_dir());
    let long = "word ".repeat(1500);
    let all = classifier
        .classify(&[long.as_str()], &ClassifyOptions::default())
        .unwrap()
        .remove(0);
    assert_eq!(all.scores.len(), classifier.labels().len());
    assert!(all.truncated && all.windows.is_none());
    let options = ClassifyOptions::default()
        .with_top_k(Some(1))
        .with_long_text(LongText::Window {
            stride: 0,
            aggregate: Aggregate::Max,
        });
    let windowed = classifier
        .classify(&[long.as_str()], &options)
        .unwrap()
        .remove(0);
    assert_eq!(windowed.scores.len(), 1);
    assert_eq!(windowed.scores[0].label, windowed.label);
    assert!(!windowed.truncated && windowed.windows.unwrap() >= 3);
    // And the first call's policy did not stick.
    let again = classifier
        .classify(&[long.as_str()], &ClassifyOptions::default())
        .unwrap()
        .remove(0);
    assert_eq!(again, all);
}

#[test]
fn a_stride_that_leaves_no_room_is_refused_up_front() {
    let classifier = load(&tiny_model_dir());
    let options = ClassifyOptions::default().with_long_text(LongText::Window {
        stride: 510,
        aggregate: Aggregate::Mean,
    });
    let err = classifier.classify(&["text"], &options).unwrap_err();
    assert!(matches!(err, sentiment::Error::InvalidOption(_)), "{err}");
}

#[test]
fn items_without_text_keep_their_place() {
    let classifier = load(&tiny_model_dir());
    let lines: Vec<Line> = [r#"{"text":"good"}"#, "not json", r#"{"text":"bad"}"#]
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            Line::parse(
                i as u64 + 1,
                raw.as_bytes(),
                raw.len(),
                1 << 20,
                InputFormat::Jsonl,
                "text",
            )
        })
        .collect();
    let mut seen = Vec::new();
    let summary = classifier
        .batcher(ClassifyOptions::default())
        .run(lines, |line: Line, result| {
            seen.push((line.number, result.map(|r| r.is_ok())));
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(seen, [(1, Some(true)), (2, None), (3, Some(true))]);
    assert_eq!(
        (summary.delivered, summary.failed, summary.without_text),
        (3, 0, 1)
    );
}

#[test]
fn cancelling_stops_between_windows_and_delivers_only_whole_ones() {
    let classifier = load(&tiny_model_dir());
    let texts = texts(40);
    let cancel = CancelFlag::new();
    let batcher = classifier
        .batcher(ClassifyOptions::default())
        .with_batch_size(2)
        .with_window(10)
        .with_cancel(cancel.clone());
    let mut delivered = 0;
    let summary = batcher
        .run(texts.iter().map(String::as_str), |_: &str, _| {
            delivered += 1;
            if delivered == 10 {
                cancel.cancel(); // Ctrl-C during the first window's output.
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    assert!(summary.cancelled);
    assert_eq!((delivered, summary.delivered), (10, 10));

    let none = batcher
        .run(["a", "b"], |_: &str, _| Ok::<(), ()>(()))
        .unwrap();
    assert!(none.cancelled && none.delivered == 0);
}

#[test]
fn a_flush_delivers_the_partial_window_before_reading_on() {
    let classifier = load(&tiny_model_dir());
    let pulled = Cell::new(0);
    let feed = [
        Feed::Item("first"),
        Feed::Item("second"),
        Feed::Flush,
        Feed::Item("third"),
    ]
    .into_iter()
    .inspect(|feed| {
        if matches!(feed, Feed::Item(_)) {
            pulled.set(pulled.get() + 1);
        }
    });
    let mut pulled_at_delivery = Vec::new();
    classifier
        .batcher(ClassifyOptions::default())
        .run(feed, |text: &str, _| {
            pulled_at_delivery.push((text.to_string(), pulled.get()));
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(
        pulled_at_delivery,
        [
            ("first".into(), 2),
            ("second".into(), 2),
            ("third".to_string(), 3)
        ]
    );
}

/// A text's scores do not depend on the batch it lands in: with the
/// AVX-512 kernels every output is computed in the same order whatever the
/// batch (the portable path stays within rounding). Spark partitions and
/// resumed runs rely on this to reproduce one run's output exactly.
#[test]
fn a_texts_logits_do_not_depend_on_its_batch() {
    let classifier = load(&tiny_model_dir());
    let texts = texts(40);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    #[cfg(target_arch = "x86_64")]
    let exact = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let exact = false;
    let runs: Vec<Vec<Vec<f32>>> = [1, 3, 7, 32]
        .iter()
        .map(|&batch_size| {
            let mut logits = Vec::new();
            classifier
                .batcher(ClassifyOptions::default())
                .with_batch_size(batch_size)
                .run(refs.iter().copied(), |_: &str, result| {
                    logits.push(result.unwrap().unwrap().logits);
                    Ok::<(), ()>(())
                })
                .unwrap();
            logits
        })
        .collect();
    for run in &runs[1..] {
        for (a, b) in runs[0].iter().zip(run) {
            if exact {
                assert_eq!(a, b);
            } else {
                assert!(max_abs_diff(a, b) <= 1e-5);
            }
        }
    }
}

/// Texts tokenized apart from the run (as a server does, off the model
/// thread) and run under a padded-token cap get exactly the predictions of
/// an ordinary run; a tokenization failure stays its own text's result.
#[test]
fn pre_encoded_texts_under_a_token_cap_match_an_ordinary_run() {
    let classifier = load(&tiny_model_dir());
    let texts = texts(40);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ordinary = predict(&classifier, &refs);
    let inputs: Vec<sentiment::TextInput> = refs.iter().map(|&text| text.into()).collect();
    for cap in [1, 64, 200, 100_000] {
        let batcher = classifier
            .batcher(ClassifyOptions::default())
            .with_max_batch_tokens(cap)
            .with_max_padding(if cap == 200 { 0.0 } else { 0.25 });
        let encoded = batcher.encode_all(&inputs);
        assert!(encoded.iter().all(|e| e.as_ref().unwrap().sequences() == 1));
        let results = batcher.classify_encoded(encoded).unwrap();
        for (got, want) in results.iter().zip(&ordinary) {
            assert_eq!(got.as_ref().unwrap().logits, want.logits, "cap {cap}");
        }
    }
    let batcher = classifier.batcher(ClassifyOptions::default());
    let mut encoded = batcher.encode_all(&inputs[..3]);
    encoded[1] = Err(sentiment::Error::InvalidOption("bad".into()));
    let results = batcher.classify_encoded(encoded).unwrap();
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
}
