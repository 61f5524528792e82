//! `sentiment bench`: load time, first-inference time, batch-1 latency at
//! fixed token lengths (tokenization and model timed apart), throughput over
//! a dataset at several batch sizes, accuracy when the dataset has labels,
//! peak RSS and system info; as a console table, JSON, CSV or Markdown.
//! Warm-up runs are excluded from every figure.

use std::fmt::Write as _;
use std::io::IsTerminal;

use std::time::Instant;

use clap::ValueEnum;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::Value;

use super::batch::{parse_line, ParsedLine};
use super::{flush, write_line};
use crate::classifier::Classifier;
use crate::cli::{BenchArgs, InputFormat, ModelArgs};
use crate::device::DeviceSpec;
use crate::error::{exit, Error, Result};
use crate::source::ModelSpec;
use crate::sysinfo::{peak_rss_bytes, SystemInfo};
use crate::tokenize::{Encoded, TextTokenizer};

/// SST-2 dev (872 labelled sentences), compiled in so `bench` runs anywhere.
pub const SST2_DEV: &str = include_str!("../../test_data/sst2_dev.jsonl");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Console,
    Json,
    Csv,
    Markdown,
}

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
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub mean_ms: f64,
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
    pub load_ms: f64,
    pub tokenizer_load_ms: f64,
    pub first_inference_ms: f64,
    pub latency: Vec<LatencyRow>,
    pub throughput: Vec<ThroughputRow>,
    /// Accuracy on the dataset, when it has labels.
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    /// "f32", or "int8" under `--quantize int8`.
    pub precision: String,
    pub dataset: String,
    pub threads: usize,
    pub system: SystemInfo,
    pub devices: Vec<DeviceReport>,
    pub peak_rss_bytes: Option<u64>,
}

pub fn run(model: &ModelArgs, args: &BenchArgs) -> Result<i32> {
    let (dataset, dataset_name) = match &args.dataset {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|err| Error::io(format!("cannot read {}", path.display()), err))?,
            path.display().to_string(),
        ),
        None => (SST2_DEV.to_string(), "sst2_dev (built in)".to_string()),
    };
    let options = BenchOptions {
        lengths: args.lengths.iter().map(|&n| n as usize).collect(),
        batch_sizes: args.batch_sizes.iter().map(|&n| n as usize).collect(),
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        dataset,
        dataset_name,
        dataset_passes: args.passes as usize,
    };
    let report = run_bench(
        &model.spec()?,
        &model.device,
        model.quantize.is_some(),
        &options,
    )?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_line(&mut out, render(&report, args.format).trim_end())?;
    flush(&mut out)?;
    Ok(exit::SUCCESS)
}

/// Runs every measurement on every device.
pub fn run_bench(
    spec: &ModelSpec,
    devices: &[DeviceSpec],
    int8: bool,
    options: &BenchOptions,
) -> Result<BenchReport> {
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    let files = spec.resolve()?;
    let labelled = parse_dataset(&options.dataset)?;
    let mut reports = Vec::new();
    for device_spec in devices {
        progress.set_message(format!("{device_spec}: loading"));
        let device = device_spec.open()?;
        let started = Instant::now();
        let mut classifier = Classifier::load(&files, &device)?;
        if int8 {
            classifier.quantize_int8()?;
        }
        let load_ms = ms_since(started);
        let started = Instant::now();
        TextTokenizer::from_json(
            &files.tokenizer.bytes,
            classifier.config().max_input_tokens(),
        )
        .map_err(|err| Error::model(&files.tokenizer.origin, err))?;
        let tokenizer_load_ms = ms_since(started);
        let started = Instant::now();
        classifier.predict(&["The first inference pays for lazy setup."])?;
        let first_inference_ms = ms_since(started);

        let mut latency = Vec::new();
        for &tokens in &options.lengths {
            progress.set_message(format!("{device_spec}: latency at {tokens} tokens"));
            latency.push(measure_latency(&classifier, tokens, options)?);
        }
        let mut throughput = Vec::new();
        for &batch_size in &options.batch_sizes {
            progress.set_message(format!("{device_spec}: throughput at batch {batch_size}"));
            throughput.push(measure_throughput(
                &classifier,
                &labelled,
                batch_size,
                options,
            )?);
        }
        let accuracy = measure_accuracy(&classifier, &labelled)?;
        reports.push(DeviceReport {
            device: device_spec.to_string(),
            load_ms,
            tokenizer_load_ms,
            first_inference_ms,
            latency,
            throughput,
            accuracy,
        });
    }
    progress.finish_and_clear();
    Ok(BenchReport {
        model: files.name.clone(),
        precision: if int8 { "int8" } else { "f32" }.to_string(),
        dataset: options.dataset_name.clone(),
        threads: candle_core::utils::get_num_threads(),
        system: SystemInfo::collect(),
        devices: reports,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

/// A text that tokenizes to exactly `tokens` tokens with the model's own
/// tokenizer: [CLS] + ("hello" * (tokens - 2)) + [SEP] for BERT vocabularies.
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
    let mut totals = Vec::with_capacity(options.runs);
    let mut tokenize = Vec::with_capacity(options.runs);
    let mut model = Vec::with_capacity(options.runs);
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

/// Dataset sentences and their gold class index, if any.
struct Labelled {
    texts: Vec<String>,
    labels: Vec<Option<Value>>,
}

fn parse_dataset(jsonl: &str) -> Result<Labelled> {
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line.as_bytes(), index == 0, InputFormat::Jsonl, "text") {
            Ok(ParsedLine::Record { fields, text }) => {
                texts.push(text);
                labels.push(fields.get("label").cloned());
            }
            Ok(ParsedLine::Text(text)) => {
                texts.push(text);
                labels.push(None);
            }
            Err(message) => {
                return Err(Error::io(
                    "cannot read the benchmark dataset",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {}: {message}", index + 1),
                    ),
                ))
            }
        }
    }
    Ok(Labelled { texts, labels })
}

/// One pass over the dataset, tokenization included: sort by length (the
/// bucketing `batch` does), then classify in batches.
fn measure_throughput(
    classifier: &Classifier,
    data: &Labelled,
    batch_size: usize,
    options: &BenchOptions,
) -> Result<ThroughputRow> {
    let refs: Vec<&str> = data.texts.iter().map(String::as_str).collect();
    let mut passes = Vec::new();
    let mut tokens = 0;
    for _ in 0..options.dataset_passes.max(1) {
        let started = Instant::now();
        let encoded = classifier.encode_batch(&refs)?;
        let mut order: Vec<&Encoded> = encoded.iter().collect();
        order.sort_by_key(|e| e.len());
        for chunk in order.chunks(batch_size) {
            classifier.predict_encoded(chunk)?;
        }
        passes.push(started.elapsed().as_secs_f64());
        tokens = encoded.iter().map(Encoded::len).sum();
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

/// Share of labelled sentences whose predicted label matches. A label is a
/// label name or a class index.
fn measure_accuracy(classifier: &Classifier, data: &Labelled) -> Result<Option<f64>> {
    let gold: Vec<(usize, usize)> = data
        .labels
        .iter()
        .enumerate()
        .filter_map(|(i, label)| {
            let index = match label.as_ref()? {
                Value::String(name) => classifier.labels().iter().position(|l| l == name)?,
                Value::Number(n) => n.as_u64()? as usize,
                _ => return None,
            };
            Some((i, index))
        })
        .collect();
    if gold.is_empty() {
        return Ok(None);
    }
    let mut correct = 0;
    for chunk in gold.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|&(i, _)| data.texts[i].as_str()).collect();
        let predictions = classifier.predict(&texts)?;
        correct += chunk
            .iter()
            .zip(&predictions)
            .filter(|((_, gold), p)| classifier.labels()[*gold] == p.label)
            .count();
    }
    Ok(Some(correct as f64 / gold.len() as f64))
}

pub fn render(report: &BenchReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => serde_json::to_string_pretty(report).expect("report serializes"),
        ReportFormat::Csv => render_csv(report),
        ReportFormat::Markdown => render_tables(report, true),
        ReportFormat::Console => render_tables(report, false),
    }
}

/// Long format: one `device,section,key,metric,value` row per figure.
fn render_csv(report: &BenchReport) -> String {
    let mut out = String::from("device,section,key,metric,value\n");
    let mut row = |device: &str, section: &str, key: &str, metric: &str, value: String| {
        let _ = writeln!(out, "{device},{section},{key},{metric},{value}");
    };
    for d in &report.devices {
        row(
            &d.device,
            "load",
            "",
            "load_ms",
            format!("{:.3}", d.load_ms),
        );
        row(
            &d.device,
            "load",
            "",
            "tokenizer_load_ms",
            format!("{:.3}", d.tokenizer_load_ms),
        );
        row(
            &d.device,
            "load",
            "",
            "first_inference_ms",
            format!("{:.3}", d.first_inference_ms),
        );
        for l in &d.latency {
            let key = format!("tokens={}", l.tokens);
            for (part, stats) in [
                ("total", &l.total),
                ("tokenize", &l.tokenize),
                ("model", &l.model),
            ] {
                for (name, value) in stats_fields(stats) {
                    row(
                        &d.device,
                        "latency",
                        &key,
                        &format!("{part}_{name}"),
                        format!("{value:.4}"),
                    );
                }
            }
        }
        for t in &d.throughput {
            let key = format!("batch={}", t.batch_size);
            row(
                &d.device,
                "throughput",
                &key,
                "sentences_per_s",
                format!("{:.2}", t.sentences_per_s),
            );
            row(
                &d.device,
                "throughput",
                &key,
                "tokens_per_s",
                format!("{:.1}", t.tokens_per_s),
            );
            row(
                &d.device,
                "throughput",
                &key,
                "seconds",
                format!("{:.4}", t.seconds),
            );
        }
        if let Some(accuracy) = d.accuracy {
            row(
                &d.device,
                "accuracy",
                "",
                "accuracy",
                format!("{accuracy:.4}"),
            );
        }
    }
    if let Some(rss) = report.peak_rss_bytes {
        row("all", "memory", "", "peak_rss_bytes", rss.to_string());
    }
    out
}

fn stats_fields(s: &Stats) -> [(&'static str, f64); 7] {
    [
        ("mean_ms", s.mean_ms),
        ("p50_ms", s.p50_ms),
        ("p95_ms", s.p95_ms),
        ("p99_ms", s.p99_ms),
        ("min_ms", s.min_ms),
        ("max_ms", s.max_ms),
        ("stddev_ms", s.stddev_ms),
    ]
}

/// Console and Markdown share one layout; Markdown adds the pipes.
fn render_tables(report: &BenchReport, markdown: bool) -> String {
    let mut out = String::new();
    let sys = &report.system;
    let heading = |out: &mut String, title: &str| {
        let _ = writeln!(out, "{}{title}\n", if markdown { "### " } else { "== " });
    };
    heading(&mut out, "System");
    let rss = report.peak_rss_bytes.map_or("n/a".to_string(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    });
    let system_rows = vec![
        vec!["model".to_string(), report.model.clone()],
        vec!["precision".into(), report.precision.clone()],
        vec!["dataset".into(), report.dataset.clone()],
        vec!["cpu".into(), sys.cpu.clone()],
        vec!["logical cores".into(), sys.logical_cores.to_string()],
        vec!["threads".into(), report.threads.to_string()],
        vec!["simd".into(), sys.simd.join(" ")],
        vec!["os".into(), sys.os.clone()],
        vec!["devices built in".into(), sys.build_features.join(" ")],
        vec![
            "versions".into(),
            format!(
                "sentiment {} ({}), candle {}, tokenizers {}, gemm {}",
                sys.sentiment_version,
                sys.git_commit,
                sys.candle_version,
                sys.tokenizers_version,
                sys.gemm_version
            ),
        ],
        vec!["peak RSS".into(), rss],
    ];
    table(&mut out, &["field", "value"], &system_rows, markdown);

    heading(&mut out, "Load");
    let rows: Vec<Vec<String>> = report
        .devices
        .iter()
        .map(|d| {
            vec![
                d.device.clone(),
                format!("{:.1}", d.load_ms),
                format!("{:.1}", d.tokenizer_load_ms),
                format!("{:.1}", d.first_inference_ms),
                d.accuracy
                    .map_or("-".into(), |a| format!("{:.2}%", a * 100.0)),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "device",
            "load ms",
            "tokenizer load ms",
            "first inference ms",
            "accuracy",
        ],
        &rows,
        markdown,
    );

    heading(
        &mut out,
        "Batch-1 latency (ms; tokenization included, warm-up excluded)",
    );
    let rows: Vec<Vec<String>> = report
        .devices
        .iter()
        .flat_map(|d| {
            d.latency.iter().map(move |l| {
                let s = &l.total;
                vec![
                    d.device.clone(),
                    l.tokens.to_string(),
                    format!("{:.2}", s.mean_ms),
                    format!("{:.2}", s.p50_ms),
                    format!("{:.2}", s.p95_ms),
                    format!("{:.2}", s.p99_ms),
                    format!("{:.2}", s.min_ms),
                    format!("{:.2}", s.max_ms),
                    format!("{:.2}", s.stddev_ms),
                    format!("{:.3}", l.tokenize.p50_ms),
                    format!("{:.2}", l.model.p50_ms),
                    format!("{:.1}", 1000.0 / s.mean_ms),
                ]
            })
        })
        .collect();
    table(
        &mut out,
        &[
            "device",
            "tokens",
            "mean",
            "p50",
            "p95",
            "p99",
            "min",
            "max",
            "stddev",
            "tokenize p50",
            "model p50",
            "req/s",
        ],
        &rows,
        markdown,
    );

    heading(
        &mut out,
        "Throughput (length-bucketed, tokenization included)",
    );
    let rows: Vec<Vec<String>> = report
        .devices
        .iter()
        .flat_map(|d| {
            d.throughput.iter().map(move |t| {
                vec![
                    d.device.clone(),
                    t.batch_size.to_string(),
                    t.sentences.to_string(),
                    format!("{:.2}", t.seconds),
                    format!("{:.1}", t.sentences_per_s),
                    format!("{:.0}", t.tokens_per_s),
                ]
            })
        })
        .collect();
    table(
        &mut out,
        &[
            "device",
            "batch",
            "sentences",
            "seconds",
            "sentences/s",
            "tokens/s",
        ],
        &rows,
        markdown,
    );
    out
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>], markdown: bool) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        if markdown {
            format!("| {} |", padded.join(" | "))
        } else {
            padded.join("  ").trim_end().to_string()
        }
    };
    let _ = writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    );
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "{}", line(rule));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.clone()));
    }
    out.push('\n');
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
