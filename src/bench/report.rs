//! A [`BenchReport`] as text: JSON (the report serialized), CSV (one row
//! per figure) or tables for the console and Markdown. Each table is a list
//! of columns, a header and how to format a row's cell, so adding a figure
//! is adding a line.

use std::fmt::Write as _;

use super::{BenchReport, DeviceReport, LatencyRow, Stats, ThroughputRow};

/// How `bench` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ReportFormat {
    /// Aligned tables for a terminal.
    #[default]
    Console,
    /// The whole report as one JSON document.
    Json,
    /// One row per measurement.
    Csv,
    /// Markdown tables.
    Markdown,
}

pub fn render(report: &BenchReport, format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => serde_json::to_string_pretty(report)
            .unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}")),
        ReportFormat::Csv => render_csv(report),
        ReportFormat::Markdown => render_tables(report, Style::Markdown),
        ReportFormat::Console => render_tables(report, Style::Console),
    }
}

/// Long format: one `device,section,key,metric,value` row per figure.
fn render_csv(report: &BenchReport) -> String {
    let mut out = String::from("device,section,key,metric,value\n");
    let mut row = |device: &str, section: &str, key: &str, metric: &str, value: String| {
        let _ = writeln!(out, "{device},{section},{key},{metric},{value}");
    };
    for d in &report.devices {
        for (metric, value) in [
            ("load_ms", d.load_ms),
            ("tokenizer_load_ms", d.tokenizer_load_ms),
            ("first_inference_ms", d.first_inference_ms),
        ] {
            row(&d.series(), "load", "", metric, format!("{value:.3}"));
        }
        for l in &d.latency {
            let key = format!("tokens={}", l.tokens);
            for (part, stats) in [
                ("total", &l.total),
                ("tokenize", &l.tokenize),
                ("model", &l.model),
            ] {
                for (name, value) in stats_fields(stats) {
                    row(
                        &d.series(),
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
            for (metric, value) in [
                ("sentences_per_s", format!("{:.2}", t.sentences_per_s)),
                ("tokens_per_s", format!("{:.1}", t.tokens_per_s)),
                ("seconds", format!("{:.4}", t.seconds)),
            ] {
                row(&d.series(), "throughput", &key, metric, value);
            }
        }
        if let Some(accuracy) = d.accuracy {
            row(
                &d.series(),
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Console,
    Markdown,
}

/// A table column: its header and how a row shows in it.
type Column<R> = (&'static str, fn(&R) -> String);

const LOAD_COLUMNS: &[Column<DeviceReport>] = &[
    ("device", |d| d.series()),
    ("load ms", |d| format!("{:.1}", d.load_ms)),
    ("tokenizer load ms", |d| {
        format!("{:.1}", d.tokenizer_load_ms)
    }),
    ("first inference ms", |d| {
        format!("{:.1}", d.first_inference_ms)
    }),
    ("accuracy", |d| {
        d.accuracy
            .map_or("-".into(), |a| format!("{:.2}%", a * 100.0))
    }),
];

/// Per-device rows get a "device" column first (see [`device_rows`]).
const LATENCY_COLUMNS: &[Column<LatencyRow>] = &[
    ("tokens", |l| l.tokens.to_string()),
    ("mean", |l| format!("{:.2}", l.total.mean_ms)),
    ("p50", |l| format!("{:.2}", l.total.p50_ms)),
    ("p95", |l| format!("{:.2}", l.total.p95_ms)),
    ("p99", |l| format!("{:.2}", l.total.p99_ms)),
    ("min", |l| format!("{:.2}", l.total.min_ms)),
    ("max", |l| format!("{:.2}", l.total.max_ms)),
    ("stddev", |l| format!("{:.2}", l.total.stddev_ms)),
    ("tokenize p50", |l| format!("{:.3}", l.tokenize.p50_ms)),
    ("model p50", |l| format!("{:.2}", l.model.p50_ms)),
    ("req/s", |l| format!("{:.1}", 1000.0 / l.total.mean_ms)),
];

const THROUGHPUT_COLUMNS: &[Column<ThroughputRow>] = &[
    ("batch", |t| t.batch_size.to_string()),
    ("sentences", |t| t.sentences.to_string()),
    ("seconds", |t| format!("{:.2}", t.seconds)),
    ("sentences/s", |t| format!("{:.1}", t.sentences_per_s)),
    ("tokens/s", |t| format!("{:.0}", t.tokens_per_s)),
];

/// Console and Markdown share one layout; Markdown adds the pipes.
fn render_tables(report: &BenchReport, style: Style) -> String {
    let mut out = String::new();
    section(&mut out, style, "System");
    let system = system_rows(report)
        .into_iter()
        .map(|(field, value)| vec![field.to_string(), value])
        .collect();
    table(&mut out, style, vec!["field", "value"], system);

    section(&mut out, style, "Load");
    let (headers, rows) = cells(LOAD_COLUMNS, report.devices.iter());
    table(&mut out, style, headers, rows);

    section(
        &mut out,
        style,
        "Batch-1 latency (ms; tokenization included, warm-up excluded)",
    );
    let (headers, rows) = device_rows(report, LATENCY_COLUMNS, |d| &d.latency);
    table(&mut out, style, headers, rows);

    section(
        &mut out,
        style,
        "Throughput (length-bucketed, tokenization included)",
    );
    let (headers, rows) = device_rows(report, THROUGHPUT_COLUMNS, |d| &d.throughput);
    table(&mut out, style, headers, rows);

    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The headers and formatted cells of `rows` under `columns`.
fn cells<'r, R: 'r>(
    columns: &[Column<R>],
    rows: impl Iterator<Item = &'r R>,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = columns.iter().map(|(header, _)| *header).collect();
    let rows = rows
        .map(|row| columns.iter().map(|(_, cell)| cell(row)).collect())
        .collect();
    (headers, rows)
}

/// Every device's rows of one kind, each led by its device's name.
fn device_rows<R>(
    report: &BenchReport,
    columns: &[Column<R>],
    rows_of: impl Fn(&DeviceReport) -> &Vec<R>,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers = vec!["device"];
    let mut all = Vec::new();
    for device in &report.devices {
        let (names, rows) = cells(columns, rows_of(device).iter());
        headers.truncate(1);
        headers.extend(names);
        all.extend(
            rows.into_iter()
                .map(|row| std::iter::once(device.series()).chain(row).collect()),
        );
    }
    if report.devices.is_empty() {
        headers.extend(columns.iter().map(|(header, _)| *header));
    }
    (headers, all)
}

fn system_rows(report: &BenchReport) -> Vec<(&'static str, String)> {
    let sys = &report.system;
    let rss = report.peak_rss_bytes.map_or("n/a".to_string(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    });
    [
        ("model", report.model.clone()),
        ("precision", report.precision.clone()),
        ("dataset", report.dataset.clone()),
        ("cpu", sys.cpu.clone()),
        ("logical cores", sys.logical_cores.to_string()),
        (
            "threads",
            format!("{} ({})", report.threads, report.threads_source),
        ),
        ("simd", sys.simd.join(" ")),
        ("f32 kernel", sys.f32_kernel.clone()),
        ("int8 kernel", sys.int8_kernel.to_string()),
        ("bf16 kernel", sys.bf16_kernel.to_string()),
        ("os", sys.os.clone()),
        ("devices built in", sys.build_features.join(" ")),
        (
            "versions",
            format!(
                "sentiment {} ({}), candle {}, tokenizers {}, gemm {}",
                sys.sentiment_version,
                sys.git_commit,
                sys.candle_version,
                sys.tokenizers_version,
                sys.gemm_version
            ),
        ),
        ("peak RSS", rss),
    ]
    .into()
}

fn section(out: &mut String, style: Style, title: &str) {
    let marker = match style {
        Style::Markdown => "### ",
        Style::Console => "== ",
    };
    let _ = writeln!(out, "{marker}{title}\n");
}

fn table(out: &mut String, style: Style, headers: Vec<&str>, rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        match style {
            Style::Markdown => format!("| {} |", padded.join(" | ")),
            Style::Console => padded.join("  ").trim_end().to_string(),
        }
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    for row in [header, rule].iter().chain(&rows) {
        let _ = writeln!(out, "{}", line(row));
    }
    out.push('\n');
}
