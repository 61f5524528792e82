//! The bundled default model: HF parity on its golden file, its SST-2 dev
//! accuracy, and long-text behaviour on a real sentiment model.

mod common;

use candle_core::Device;
use common::*;
use sentiment::{
    Aggregate, Classifier, ClassifyOptions, KernelOptions, LongText, ModelSpec, Precision,
};

/// The dev accuracy the shipped model reached in HF (91.51%,
/// models/minilm-l6-sst2/distillation_report.json), less half a point.
const MIN_DEV_ACCURACY: f64 = 0.9101;

fn bundled() -> Classifier {
    let files = ModelSpec::Bundled.resolve().unwrap();
    Classifier::from_files(&files, &Device::Cpu, Precision::F32).unwrap()
}

#[test]
fn the_default_model_is_the_bundled_one() {
    assert_eq!(ModelSpec::default(), ModelSpec::Bundled);
    assert_eq!(
        ModelSpec::parse("bundled", None).unwrap(),
        ModelSpec::Bundled
    );
    let classifier = bundled();
    assert_eq!(classifier.labels(), ["NEGATIVE", "POSITIVE"]);
}

#[test]
fn bundled_logits_match_hf() {
    let classifier = bundled();
    let golden = golden(&fixture("golden_bundled.json"));
    let mut worst = 0f32;
    for case in &golden.cases {
        let encoded = classifier.encode(&case.text).unwrap();
        assert_eq!(encoded.ids, case.ids, "{:?}", case.text);
        let prediction = &predict(&classifier, &[case.text.as_str()])[0];
        let diff = max_abs_diff(&prediction.logits, &case.logits);
        assert!(diff <= LOGIT_TOLERANCE, "{:?}: {diff}", case.text);
        worst = worst.max(diff);
    }
    worst = worst.max(assert_golden_batches(&classifier, &golden));
    eprintln!("bundled model: max |Δlogit| {worst:e}");
}

#[test]
fn bundled_accuracy_on_sst2_dev() {
    let accuracy = sst2_dev_accuracy(&bundled());
    eprintln!("bundled model SST-2 dev accuracy: {accuracy:.4}");
    assert!(accuracy >= MIN_DEV_ACCURACY, "{accuracy}");
}

/// `--precision int8` keeps accuracy within half a point of f32's,
/// measured in the same test; `tests/portable.rs` checks the same of the
/// AVX2 int8 kernel.
#[test]
#[cfg_attr(
    not(host_avx2),
    ignore = "this CPU has no int8 kernel of ours (AVX2 or VNNI)"
)]
fn int8_accuracy_on_sst2_dev() {
    let kernels = KernelOptions::default();
    let f32 = bundled_accuracy(Precision::F32, &kernels);
    let int8 = bundled_accuracy(Precision::Int8, &kernels);
    eprintln!("bundled model: SST-2 dev accuracy f32 {f32:.4}, int8 {int8:.4}");
    assert!(int8 >= f32 - MAX_NARROW_ACCURACY_LOSS, "{int8} vs {f32}");
}

/// `--precision bf16` stays within 0.3 points of f32's accuracy and agrees
/// with f32's label on at least 99.5% of SST-2 dev: on `vdpbf16ps` where
/// the CPU has AVX512_BF16, elsewhere on the AVX-512F emulation (bf16's
/// numerics, asked for by `bf16_emulation`).
#[test]
#[cfg_attr(
    not(host_avx512),
    ignore = "this CPU lacks AVX-512: no bf16 kernel, bf16 runs f32"
)]
fn bf16_accuracy_and_agreement_on_sst2_dev() {
    let files = ModelSpec::Bundled.resolve().unwrap();
    let kernels = KernelOptions {
        bf16_emulation: true,
        ..KernelOptions::default()
    };
    let bf16 = Classifier::from_files_with_kernels(&files, &Device::Cpu, Precision::Bf16, &kernels)
        .unwrap();
    assert_eq!(bf16.precision(), Precision::Bf16);
    let (f32_labels, bf16_labels) = (sst2_dev_labels(&bundled()), sst2_dev_labels(&bf16));
    let accuracy = |labels: &[(String, String)]| {
        labels.iter().filter(|(p, gold)| p == gold).count() as f64 / labels.len() as f64
    };
    let agreement = f32_labels
        .iter()
        .zip(&bf16_labels)
        .filter(|(a, b)| a.0 == b.0)
        .count() as f64
        / f32_labels.len() as f64;
    let (f32_accuracy, bf16_accuracy) = (accuracy(&f32_labels), accuracy(&bf16_labels));
    eprintln!(
        "bundled model, bf16 ({}): SST-2 dev accuracy {bf16_accuracy:.4} (f32 {f32_accuracy:.4}), \
         label agreement with f32 {agreement:.4}",
        bf16.kernel_plan().bf16_name()
    );
    assert!(
        (bf16_accuracy - f32_accuracy).abs() <= 0.003,
        "{bf16_accuracy} vs {f32_accuracy}"
    );
    assert!(agreement >= 0.995, "{agreement}");
}

/// Without a bf16 kernel (none asked for on a CPU without AVX512_BF16),
/// bf16 runs f32, exactly, and says so.
#[test]
fn bf16_without_a_kernel_runs_f32_exactly() {
    let files = ModelSpec::Bundled.resolve().unwrap();
    let bf16 = Classifier::from_files(&files, &Device::Cpu, Precision::Bf16).unwrap();
    if bf16.precision() == Precision::Bf16 {
        // This CPU has a verified vdpbf16ps: the test above covers it.
        assert_eq!(bf16.kernel_plan().bf16_name(), "vdpbf16ps");
        return;
    }
    assert!(bf16.precision_warning(Precision::Bf16).is_some());
    let texts = ["a triumph", "a dull , lifeless mess"];
    assert_eq!(predict(&bf16, &texts), predict(&bundled(), &texts));
}

/// A neutral plot summary for 600 tokens, then a verdict of the opposite
/// polarity to what the model makes of the summary alone: truncation never
/// sees the verdict, windows do.
#[test]
fn windows_see_sentiment_that_truncation_cuts_off() {
    let summary =
        "the movie follows two brothers who travel across the country by train . ".repeat(40);
    // One loaded model, a different long-text policy per call.
    let classifier = bundled();
    let summary_label = predict(&classifier, &[&summary]).remove(0).label;
    let (verdict, verdict_label) = match summary_label.as_str() {
        "POSITIVE" => (
            "but in the end it is a dreadful , boring , miserable waste of time and i hated every minute . ",
            "NEGATIVE",
        ),
        _ => (
            "but in the end it is a wonderful , moving , brilliant film and i loved every minute . ",
            "POSITIVE",
        ),
    };
    let text = summary + &verdict.repeat(40);
    let truncated = predict(&classifier, &[&text]).remove(0);
    assert!(truncated.truncated);
    assert_eq!(truncated.label, summary_label);
    for aggregate in [Aggregate::Mean, Aggregate::Max] {
        let options = ClassifyOptions::default().with_long_text(LongText::Window {
            stride: 128,
            aggregate,
        });
        let windowed = classifier.classify(&[&text], &options).unwrap().remove(0);
        assert!(windowed.windows.unwrap() > 1 && !windowed.truncated);
        assert_eq!(windowed.label, verdict_label, "{aggregate:?}");
    }
}

/// `--long-text truncate-start` keeps a long review's end, where its
/// verdict is: the library's `TruncateStart` answer, through `batch`; the
/// window-only flags are refused with it.
#[cfg(feature = "cli")]
#[test]
fn truncate_start_from_the_command_line_keeps_the_verdict() {
    let summary =
        "the movie follows two brothers who travel across the country by train . ".repeat(40);
    let verdict = "but in the end it is a dreadful , boring , miserable waste of time . ";
    let text = summary + &verdict.repeat(40);
    let classifier = bundled();
    let options = ClassifyOptions::default().with_long_text(LongText::TruncateStart);
    let want = classifier.classify(&[&text], &options).unwrap().remove(0);
    assert_eq!(want.label, "NEGATIVE");
    let line = serde_json::json!({ "text": text }).to_string() + "\n";
    let output = run_with_stdin(
        sentiment_command(&["batch", "--long-text", "truncate-start"]),
        line.as_bytes(),
    );
    assert_exit_code(&output, 0);
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["label"], want.label.as_str());
    assert_eq!(record["truncated"], true);
    assert!((record["score"].as_f64().unwrap() as f32 - want.score).abs() < 1e-6);
    let refused = run_with_stdin(
        sentiment_command(&["batch", "--long-text", "truncate-start", "--stride", "64"]),
        line.as_bytes(),
    );
    assert_exit_code(&refused, 2);
    assert!(refused.stdout.is_empty());
}
