//! `bench --plot`'s chart, drawn from a fixed synthetic report (no timing):
//! well-formed SVG, one line per series in each panel plus its legend
//! entry, the series names and the axis labels. And a real `bench --plot`
//! run on the tiny model writes a file.

mod common;

use sentiment::bench::plot::{render_svg, title};
use sentiment::bench::sysinfo::SystemInfo;
use sentiment::bench::{BenchReport, DeviceReport, LatencyRow, Stats, ThroughputRow};

fn stats(p50: f64) -> Stats {
    Stats {
        mean_ms: p50 * 1.05,
        p5_ms: p50 * 0.9,
        p50_ms: p50,
        p95_ms: p50 * 1.3,
        p99_ms: p50 * 1.5,
        min_ms: p50 * 0.8,
        max_ms: p50 * 2.0,
        stddev_ms: p50 * 0.1,
    }
}

fn series(device: &str, precision: &str, speed: f64) -> DeviceReport {
    DeviceReport {
        device: device.into(),
        precision: precision.into(),
        load_ms: 100.0,
        tokenizer_load_ms: 10.0,
        first_inference_ms: 5.0,
        latency: [8usize, 32, 128, 512]
            .iter()
            .map(|&tokens| LatencyRow {
                tokens,
                runs: 10,
                total: stats(tokens as f64 / 8.0 / speed),
                tokenize: stats(0.05),
                model: stats(tokens as f64 / 8.0 / speed),
            })
            .collect(),
        throughput: [1usize, 8, 32]
            .iter()
            .map(|&batch_size| ThroughputRow {
                batch_size,
                sentences: 872,
                tokens: 21_000,
                seconds: 872.0 / (100.0 * speed * (batch_size as f64).sqrt()),
                sentences_per_s: 100.0 * speed * (batch_size as f64).sqrt(),
                tokens_per_s: 2400.0 * speed,
            })
            .collect(),
        accuracy: Some(0.89),
    }
}

fn report() -> BenchReport {
    BenchReport {
        model: "synthetic-model".into(),
        precision: "f32,int8".into(),
        dataset: "sst2_dev".into(),
        threads: 2,
        threads_source: "--threads".into(),
        system: SystemInfo::collect(&sentiment::KernelPlan::fastest()),
        devices: vec![
            series("cpu", "f32", 1.0),
            series("cpu", "int8", 2.5),
            series("cuda:0", "f32", 9.0),
        ],
        peak_rss_bytes: None,
        notes: Vec::new(),
    }
}

#[test]
fn the_chart_is_well_formed_svg_with_every_series_and_label() {
    let report = report();
    let svg = render_svg(&report).unwrap();
    let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    // An explicit background, for dark viewers.
    assert!(root
        .children()
        .any(|n| n.tag_name().name() == "rect" && n.attribute("fill") == Some("#FFFFFF")));

    // Each series is a 2-pixel line in its own colour: once in each panel
    // and once in the legend.
    let mut lines_by_colour = std::collections::BTreeMap::<String, usize>::new();
    for node in document.descendants() {
        if node.tag_name().name() == "polyline" && node.attribute("stroke-width") == Some("2") {
            *lines_by_colour
                .entry(node.attribute("stroke").unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(lines_by_colour.len(), 3, "{lines_by_colour:?}");
    assert!(
        lines_by_colour.values().all(|&n| n == 3),
        "{lines_by_colour:?}"
    );

    let texts: Vec<String> = document
        .descendants()
        .filter(|n| n.tag_name().name() == "text")
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect();
    for expected in [
        "cpu f32",
        "cpu int8",
        "cuda:0 f32",
        "input length (tokens, log scale)",
        "latency, ms (p50; whiskers p5–p95; log scale)",
        "batch size (texts per forward pass, log scale)",
        "throughput, sentences/s (length-sorted dataset)",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected:?} in {texts:?}"
        );
    }
    assert!(texts.contains(&title(&report)));
    assert!(title(&report).contains("synthetic-model") && title(&report).contains("2 threads"));
}

#[cfg(feature = "cli")]
#[test]
fn bench_with_plot_writes_the_chart() {
    use common::assert_exit_code;
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.svg");
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-distilbert");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sentiment"))
        .args([
            "-m",
            model.to_str().unwrap(),
            "--precision",
            "f32,int8",
            "bench",
        ])
        .args([
            "--runs",
            "2",
            "--warmup",
            "0",
            "--lengths",
            "8,32",
            "--batch-sizes",
            "1,4",
        ])
        .args(["--plot", chart.to_str().unwrap(), "--format", "json"])
        .env_remove("SENTIMENT_MODEL")
        .output()
        .unwrap();
    assert_exit_code(&output, 0);
    let svg = std::fs::read_to_string(&chart).unwrap();
    roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert!(svg.contains("cpu f32") && svg.contains("cpu int8"));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["devices"].as_array().unwrap().len(), 2);
    assert_eq!(report["devices"][1]["precision"], "int8");
}

/// The report's `series` with its latency at `lengths` and throughput at
/// `batch_sizes`.
fn measured_at(lengths: &[usize], batch_sizes: &[usize]) -> BenchReport {
    let mut report = report();
    for device in &mut report.devices {
        device.latency = lengths
            .iter()
            .map(|&tokens| {
                let mut row = device.latency[0].clone();
                row.tokens = tokens;
                row.total = stats(tokens as f64 / 8.0);
                row
            })
            .collect();
        device.throughput = batch_sizes
            .iter()
            .map(|&batch_size| {
                let mut row = device.throughput[0].clone();
                row.batch_size = batch_size;
                row.sentences_per_s = 100.0 * (batch_size as f64).sqrt();
                row
            })
            .collect();
    }
    report
}

fn texts_of(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg).expect("well-formed XML");
    document
        .descendants()
        .filter(|n| n.tag_name().name() == "text")
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

/// The x axes are labelled at the measured lengths and batch sizes (not
/// only at 1, 10, 100), with one, three or eight lengths, and the latency
/// axis has labels even when one length spans less than a decade.
#[test]
fn the_axes_label_what_was_measured() {
    for (lengths, batch_sizes) in [
        (vec![14], vec![32]),
        (vec![14, 75, 400], vec![1, 8, 32]),
        (
            vec![8, 16, 32, 64, 128, 256, 384, 512],
            vec![1, 2, 4, 8, 16, 32, 64, 128],
        ),
    ] {
        let svg = render_svg(&measured_at(&lengths, &batch_sizes)).unwrap();
        let texts = texts_of(&svg);
        for value in lengths.iter().chain(&batch_sizes) {
            assert!(
                texts.contains(&value.to_string()),
                "{value} in {lengths:?}: {texts:?}"
            );
        }
        let numeric = texts.iter().filter(|t| t.parse::<f64>().is_ok()).count();
        let x_labels = lengths.len() + batch_sizes.len();
        assert!(
            numeric >= x_labels + 4,
            "y labels too in {lengths:?}: {texts:?}"
        );
    }
}

/// A chart path that cannot be written is found before the run (exit 6,
/// nothing measured, nothing changed), not after it with the report lost.
#[cfg(feature = "cli")]
#[test]
fn an_unwritable_plot_path_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    for chart in [
        dir.path().join("no-such-folder/chart.svg"),
        dir.path().join("a-folder.svg"),
    ] {
        if chart.extension().is_some() && chart.parent() == Some(dir.path()) {
            std::fs::create_dir(&chart).unwrap();
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sentiment"))
            .args(["bench", "--runs", "500", "--plot", chart.to_str().unwrap()])
            .env_remove("SENTIMENT_MODEL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(6), "{stderr}");
        assert!(stderr.contains("--plot: cannot write"), "{stderr}");
        assert!(output.stdout.is_empty(), "the run went ahead");
    }
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "only the folder made above");
}
