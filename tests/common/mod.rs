//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use sentiment::{
    Classifier, ClassifyOptions, KernelChoice, KernelOptions, ModelSpec, Precision, Prediction,
};
use serde::Deserialize;

pub const LOGIT_TOLERANCE: f32 = 1e-4;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn tiny_model_dir() -> PathBuf {
    fixture("tiny-distilbert")
}

pub fn load(dir: &Path) -> Classifier {
    let files = ModelSpec::Local(dir.to_path_buf())
        .resolve()
        .expect("resolve fixture");
    Classifier::from_files(&files, &Device::Cpu, Precision::F32).expect("load fixture")
}

/// Predictions with the default options (truncation, every label).
pub fn predict(classifier: &Classifier, texts: &[&str]) -> Vec<Prediction> {
    classifier
        .classify(texts, &ClassifyOptions::default())
        .expect("classify")
}

#[derive(Debug, Deserialize)]
pub struct Golden {
    pub labels: Vec<String>,
    pub cases: Vec<GoldenCase>,
    pub batches: Vec<GoldenBatch>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenCase {
    pub text: String,
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub truncated: bool,
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenBatch {
    pub members: Vec<usize>,
    pub logits: Vec<Vec<f32>>,
}

pub fn golden(path: &Path) -> Golden {
    let text = std::fs::read_to_string(path).expect("read golden file");
    serde_json::from_str(&text).expect("parse golden file")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The path of the release/debug binary cargo built for these tests (the
/// tests that run it need the default `cli` feature; see Cargo.toml).
/// `SENTIMENT_TEST_BINARY` runs them against another build instead, to
/// check that a regression test fails on the code before its fix.
#[cfg(feature = "cli")]
pub fn binary() -> PathBuf {
    std::env::var_os("SENTIMENT_TEST_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sentiment")),
        PathBuf::from,
    )
}

/// The binary with `args`, isolated from the caller's environment: no
/// SENTIMENT_MODEL, and the hub offline.
#[cfg(feature = "cli")]
pub fn sentiment_command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(binary());
    command
        .args(args)
        .env_remove("SENTIMENT_MODEL")
        .env("HF_HUB_OFFLINE", "1");
    command
}

/// Runs `command` with `stdin` piped in and its output captured.
pub fn run_with_stdin(mut command: std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sentiment");
    let mut input = child.stdin.take().unwrap();
    // Written from another thread while the output is read here, so that a
    // process whose output fills its pipe before it has read all its input
    // does not deadlock with the test. The process may exit before reading
    // everything; that is its business.
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = input.write_all(stdin);
        });
        child.wait_with_output().unwrap()
    })
}

/// Asserts that a finished command exited with `code`, showing its stderr
/// when it did not.
pub fn assert_exit_code(output: &std::process::Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A prediction's scores in class order (`scores` is best first), as HF's
/// golden probabilities are.
pub fn scores_in_class_order(prediction: &Prediction, labels: &[String]) -> Vec<f32> {
    labels
        .iter()
        .map(|label| prediction.score_of(label).unwrap())
        .collect()
}

/// Asserts every golden text alone: its logits within [`LOGIT_TOLERANCE`]
/// of HF's. Returns the largest difference seen.
pub fn assert_golden_cases(classifier: &Classifier, golden: &Golden) -> f32 {
    let mut worst = 0f32;
    for case in &golden.cases {
        let prediction = &predict(classifier, &[case.text.as_str()])[0];
        let diff = max_abs_diff(&prediction.logits, &case.logits);
        assert!(diff <= LOGIT_TOLERANCE, "{:?}: {diff}", case.text);
        worst = worst.max(diff);
    }
    worst
}

/// Asserts the golden file's padded batches: each member's logits within
/// [`LOGIT_TOLERANCE`] of HF's. Returns the largest difference seen.
pub fn assert_golden_batches(classifier: &Classifier, golden: &Golden) -> f32 {
    let mut worst = 0f32;
    for batch in &golden.batches {
        let texts: Vec<&str> = batch
            .members
            .iter()
            .map(|&i| golden.cases[i].text.as_str())
            .collect();
        let predictions = predict(classifier, &texts);
        for ((prediction, expected), text) in predictions.iter().zip(&batch.logits).zip(&texts) {
            let diff = max_abs_diff(&prediction.logits, expected);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "batch {:?}, {text:?}: {diff}",
                batch.members
            );
            worst = worst.max(diff);
        }
    }
    worst
}

/// Every model with goldens: (model, golden file).
pub fn golden_models() -> Vec<(ModelSpec, &'static str)> {
    let local = |dir: &str| ModelSpec::Local(fixture(dir));
    vec![
        (local("tiny-distilbert"), "golden_tiny.json"),
        (ModelSpec::Bundled, "golden_bundled.json"),
        (local("tiny-bert"), "golden_tiny-bert.json"),
        (local("tiny-roberta"), "golden_tiny-roberta.json"),
        (local("tiny-xlm-roberta"), "golden_tiny-xlm-roberta.json"),
    ]
}

/// Every model's goldens on `device`, one text at a time and in padded
/// batches, with our fastest CPU kernels; returns the largest logit difference.
pub fn assert_parity(device: &Device) -> f32 {
    assert_parity_with(device, KernelChoice::Fastest)
}

/// [`assert_parity`] with the CPU kernels `kernels` allows.
pub fn assert_parity_with(device: &Device, kernels: KernelChoice) -> f32 {
    let options = KernelOptions {
        kernels,
        ..KernelOptions::default()
    };
    let mut worst = 0f32;
    for (spec, golden_file) in golden_models() {
        let files = spec.resolve().unwrap();
        let classifier =
            Classifier::from_files_with_kernels(&files, device, Precision::F32, &options).unwrap();
        let golden = golden(&fixture(golden_file));
        eprintln!("{golden_file}");
        worst = worst.max(assert_golden_cases(&classifier, &golden));
        worst = worst.max(assert_golden_batches(&classifier, &golden));
    }
    worst
}

/// The classifier's label for every SST-2 dev sentence, and the gold label.
pub fn sst2_dev_labels(classifier: &Classifier) -> Vec<(String, String)> {
    let dev = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test_data/sst2_dev.jsonl"
    ))
    .unwrap();
    let rows: Vec<serde_json::Value> = dev
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 872);
    let mut labels = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|r| r["text"].as_str().unwrap()).collect();
        for (prediction, row) in predict(classifier, &texts).iter().zip(chunk) {
            labels.push((
                prediction.label.clone(),
                row["label"].as_str().unwrap().to_string(),
            ));
        }
    }
    labels
}

/// Share of SST-2 dev sentences the classifier labels correctly.
pub fn sst2_dev_accuracy(classifier: &Classifier) -> f64 {
    let labels = sst2_dev_labels(classifier);
    let correct = labels
        .iter()
        .filter(|(predicted, gold)| predicted == gold)
        .count();
    correct as f64 / labels.len() as f64
}

/// How far int8 and bf16 may fall below f32 on SST-2 dev, both measured
/// in the same test.
pub const MAX_NARROW_ACCURACY_LOSS: f64 = 0.005;

/// The bundled model's SST-2 dev accuracy in `precision` on the kernels
/// `kernels` allows; the precision must run as asked.
pub fn bundled_accuracy(precision: Precision, kernels: &KernelOptions) -> f64 {
    let files = ModelSpec::Bundled.resolve().unwrap();
    let classifier =
        Classifier::from_files_with_kernels(&files, &Device::Cpu, precision, kernels).unwrap();
    assert_eq!(classifier.precision(), precision);
    sst2_dev_accuracy(&classifier)
}
