//! Benchmarks of a model: load time, first-inference time, batch-1 latency
//! at fixed token lengths (tokenization and model timed apart), throughput
//! over a dataset at several batch sizes through the batching engine,
//! accuracy when the dataset has labels, peak RSS and system info.
//! Warm-up runs are excluded from every figure. [`report`] renders the
//! result as a console table, JSON, CSV or Markdown.

#[cfg(feature = "plot")]
pub mod plot;
pub mod report;
pub mod sysinfo;

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::classifier::{Classifier, ClassifyOptions, Precision};
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::input::{parse_line, InputFormat, ParsedLine};
use crate::model::cpu::{KernelOptions, KernelPlan};
use crate::source::ModelSpec;
use crate::tokenize::TextTokenizer;
use sysinfo::{peak_rss_bytes, SystemInfo};

/// SST-2 dev (872 labelled sentences), compiled in so `bench` runs anywhere.
pub const SST2_DEV: &str = include_str!("../../test_data/sst2_dev.jsonl");

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Batch-1 latency is measured at these token counts (special tokens included).
    pub lengths: Vec<usize>,
    pub batch_sizes: Vec<usize>,
    pub runs: usize,
    pub warmup: usize,
    /// JSONL with "text" and, optionally, "label" (a label name or index).
    pub dataset: String,
    pub dataset_name: String,
    /// Passes over the dataset per batch size; the median pass is reported.
    pub dataset_passes: usize,
    /// Which CPU kernels may run.
    pub kernels: KernelOptions,
    /// How long a hub download waits.
    pub hub_timeouts: crate::source::HubTimeouts,
    /// Where the thread count came from, for the report.
    pub threads_source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub mean_ms: f64,
    pub p5_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
}

impl Stats {
    /// Nearest-rank percentiles over the samples, in milliseconds.
    pub fn from_ms(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        let rank = |q: f64| sorted[((q * n).ceil() as usize).clamp(1, sorted.len()) - 1];
        let mean = sorted.iter().sum::<f64>() / n;
        let variance = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean_ms: mean,
            p5_ms: rank(0.05),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            min_ms: sorted[0],
            max_ms: sorted[sorted.len() - 1],
            stddev_ms: variance.sqrt(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub tokens: usize,
    pub runs: usize,
    pub total: Stats,
    pub tokenize: Stats,
    pub model: Stats,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    pub batch_size: usize,
    pub sentences: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub sentences_per_s: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub device: String,
    /// "f32", "bf16" or "int8" (the one that ran): a report may compare precisions as well as devices.
    pub precision: String,
    pub load_ms: f64,
    pub tokenizer_load_ms: f64,
    pub first_inference_ms: f64,
    pub latency: Vec<LatencyRow>,
    pub throughput: Vec<ThroughputRow>,
    /// Accuracy on the dataset, when it has labels.
    pub accuracy: Option<f64>,
}

impl DeviceReport {
    /// "cpu f32": the device and precision, one series of a comparison.
    pub fn series(&self) -> String {
        format!("{} {}", self.device, self.precision)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    /// The precisions measured, comma-separated (see [`Precision`]).
    pub precision: String,
    pub dataset: String,
    pub threads: usize,
    /// Where the thread count came from (a flag, a variable, the CPUs).
    pub threads_source: String,
    pub system: SystemInfo,
    pub devices: Vec<DeviceReport>,
    pub peak_rss_bytes: Option<u64>,
    /// Why a figure is missing (accuracy without usable labels, say).
    pub notes: Vec<String>,
}

/// Runs every measurement on every device in every precision, reporting
/// each step to `progress` (a front end may show it; the library prints
/// nothing).
pub fn run_bench(
    spec: &ModelSpec,
    devices: &[DeviceSpec],
    precisions: &[Precision],
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let threads = crate::device::configure_threads(None)?;
    let files = spec.resolve_with(&options.hub_timeouts, &mut |_, _, _| {})?;
    let dataset = parse_dataset(&options.dataset)?;
    let mut reports = Vec::new();
    let mut notes = Vec::new();
    let series = devices
        .iter()
        .flat_map(|device| precisions.iter().map(move |precision| (device, *precision)));
    for (device_spec, precision) in series {
        let name = format!("{device_spec} {precision}");
        progress(&format!("{name}: loading"));
        let device = device_spec.open()?;
        let started = Instant::now();
        let classifier =
            Classifier::from_files_with_kernels(&files, &device, precision, &options.kernels)?;
        let load_ms = ms_since(started);
        if let Some(warning) = classifier.precision_warning(precision) {
            notes.push(format!("{name}: {warning}"));
        }
        let started = Instant::now();
        TextTokenizer::from_files(
            &files.tokenizer,
            classifier.model_type(),
            classifier.max_input_tokens(),
        )?;
        let tokenizer_load_ms = ms_since(started);
        let started = Instant::now();
        classifier.classify(
            &["The first inference pays for lazy setup."],
            &ClassifyOptions::default(),
        )?;
        let first_inference_ms = ms_since(started);
        // A length the model cannot take would time something else (the
        // tokenizer truncating a huge text), so it is refused, not clamped.
        if let Some(&tokens) = options
            .lengths
            .iter()
            .find(|&&t| t > classifier.max_input_tokens() || t < 2)
        {
            return Err(Error::InvalidOption(format!(
                "bench length {tokens}: this model takes 2 to {} tokens",
                classifier.max_input_tokens()
            )));
        }

        let mut latency = Vec::new();
        for &tokens in &options.lengths {
            progress(&format!("{name}: latency at {tokens} tokens"));
            latency.push(measure_latency(&classifier, tokens, options)?);
        }
        let mut throughput = Vec::new();
        for &batch_size in &options.batch_sizes {
            progress(&format!("{name}: throughput at batch {batch_size}"));
            throughput.push(measure_throughput(
                &classifier,
                &dataset,
                batch_size,
                options,
            )?);
        }
        progress(&format!("{name}: accuracy"));
        let accuracy = match gold_classes(&dataset, classifier.labels()) {
            Ok(gold) => measure_accuracy(&classifier, &dataset, &gold)?,
            Err(note) => {
                if !notes.contains(&note) {
                    notes.push(note);
                }
                None
            }
        };
        reports.push(DeviceReport {
            device: device_spec.to_string(),
            precision: classifier.precision().to_string(),
            load_ms,
            tokenizer_load_ms,
            first_inference_ms,
            latency,
            throughput,
            accuracy,
        });
    }
    Ok(BenchReport {
        model: files.name.clone(),
        precision: precisions
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(","),
        dataset: options.dataset_name.clone(),
        threads,
        threads_source: options.threads_source.clone(),
        system: SystemInfo::collect(&KernelPlan::resolve(&options.kernels, true)),
        devices: reports,
        peak_rss_bytes: peak_rss_bytes(),
        notes,
    })
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// A text that tokenizes to exactly `tokens` tokens with the model's own
/// tokenizer: `[CLS]` + ("hello" * (tokens - 2)) + `[SEP]` for BERT vocabularies.
pub fn text_of_length(classifier: &Classifier, tokens: usize) -> Result<String> {
    let words = tokens.saturating_sub(2).max(1);
    let mut text = "hello ".repeat(words);
    // Other vocabularies may split differently: trim until it fits.
    while classifier.encode(&text)?.len() > tokens && text.len() > 6 {
        text.truncate(text.len() - 6);
    }
    Ok(text)
}

fn measure_latency(
    classifier: &Classifier,
    tokens: usize,
    options: &BenchOptions,
) -> Result<LatencyRow> {
    let text = text_of_length(classifier, tokens)?;
    // Grown as runs complete, never pre-sized from the option.
    let (mut totals, mut tokenize, mut model) = (Vec::new(), Vec::new(), Vec::new());
    let mut actual_tokens = 0;
    for run in 0..options.warmup + options.runs {
        let started = Instant::now();
        let encoded = classifier.encode(&text)?;
        let tokenized = Instant::now();
        classifier.predict_encoded(&[&encoded])?;
        let done = Instant::now();
        actual_tokens = encoded.len();
        if run >= options.warmup {
            tokenize.push((tokenized - started).as_secs_f64() * 1e3);
            model.push((done - tokenized).as_secs_f64() * 1e3);
            totals.push((done - started).as_secs_f64() * 1e3);
        }
    }
    Ok(LatencyRow {
        tokens: actual_tokens,
        runs: options.runs,
        total: Stats::from_ms(&totals),
        tokenize: Stats::from_ms(&tokenize),
        model: Stats::from_ms(&model),
    })
}

/// Dataset sentences and their gold labels, if any.
pub struct Dataset {
    texts: Vec<String>,
    labels: Vec<Option<Value>>,
}

/// Parses a JSONL dataset with `text` and optional `label` (a label name
/// or a class index). Blank lines are skipped; any other bad line fails.
pub fn parse_dataset(jsonl: &str) -> Result<Dataset> {
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line.as_bytes(), index == 0, InputFormat::Jsonl, "text") {
            Ok(ParsedLine::Record { fields, text, .. }) => {
                texts.push(text);
                let label = fields.get("label").transpose().map_err(|message| {
                    Error::io(
                        format!("cannot read the benchmark dataset, line {}", index + 1),
                        std::io::Error::new(std::io::ErrorKind::InvalidData, message),
                    )
                })?;
                labels.push(label);
            }
            Ok(ParsedLine::Text(text)) => {
                texts.push(text);
                labels.push(None);
            }
            Err(message) => {
                return Err(Error::io(
                    format!("cannot read the benchmark dataset, line {}", index + 1),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, message),
                ))
            }
        }
    }
    Ok(Dataset { texts, labels })
}

/// Each labelled sentence's index and gold class. A label is a label name
/// or a class index; one that is neither for this model is reported (and
/// accuracy left out) rather than guessed at.
fn gold_classes(
    dataset: &Dataset,
    model_labels: &[String],
) -> std::result::Result<Vec<(usize, usize)>, String> {
    let mut gold = Vec::new();
    for (i, label) in dataset.labels.iter().enumerate() {
        let Some(label) = label else { continue };
        let class = match label {
            Value::String(name) => model_labels.iter().position(|l| l == name),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n < model_labels.len()),
            _ => None,
        };
        match class {
            Some(class) => gold.push((i, class)),
            None => {
                return Err(format!(
                    "no accuracy: dataset sentence {} has label {label}, which is neither a \
                     label of this model ({}) nor a class index below {}",
                    i + 1,
                    model_labels.join(", "),
                    model_labels.len()
                ))
            }
        }
    }
    Ok(gold)
}

/// One pass over the dataset through the batching engine, tokenization
/// included, with the whole dataset as one window (so it is sorted by
/// length as a whole).
fn measure_throughput(
    classifier: &Classifier,
    dataset: &Dataset,
    batch_size: usize,
    options: &BenchOptions,
) -> Result<ThroughputRow> {
    let refs: Vec<&str> = dataset.texts.iter().map(String::as_str).collect();
    let batcher = classifier
        .batcher(ClassifyOptions::default())
        .with_batch_size(batch_size)
        .with_window(refs.len());
    let mut passes = Vec::new();
    let mut tokens = 0;
    for _ in 0..options.dataset_passes.max(1) {
        tokens = 0;
        let started = Instant::now();
        batcher.run(refs.iter().copied(), |_: &str, result| {
            if let Some(result) = result {
                tokens += result?.tokens;
            }
            Ok::<(), Error>(())
        })?;
        passes.push(started.elapsed().as_secs_f64());
    }
    passes.sort_by(f64::total_cmp);
    let seconds = passes[passes.len() / 2];
    Ok(ThroughputRow {
        batch_size,
        sentences: refs.len(),
        tokens,
        seconds,
        sentences_per_s: refs.len() as f64 / seconds,
        tokens_per_s: tokens as f64 / seconds,
    })
}

/// Share of labelled sentences whose predicted label is the gold one.
fn measure_accuracy(
    classifier: &Classifier,
    dataset: &Dataset,
    gold: &[(usize, usize)],
) -> Result<Option<f64>> {
    if gold.is_empty() {
        return Ok(None);
    }
    let texts: Vec<&str> = gold
        .iter()
        .map(|&(i, _)| dataset.texts[i].as_str())
        .collect();
    let predictions = classifier.classify(&texts, &ClassifyOptions::default())?;
    let correct = gold
        .iter()
        .zip(&predictions)
        .filter(|((_, class), p)| classifier.labels()[*class] == p.label)
        .count();
    Ok(Some(correct as f64 / gold.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::from_ms(&samples);
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (50.0, 95.0, 99.0));
        assert_eq!((s.min_ms, s.max_ms), (1.0, 100.0));
        assert!((s.mean_ms - 50.5).abs() < 1e-12);
        let one = Stats::from_ms(&[3.0]);
        assert_eq!((one.p50_ms, one.p99_ms, one.stddev_ms), (3.0, 3.0, 0.0));
    }
}
