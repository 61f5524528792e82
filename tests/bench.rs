//! `sentiment bench` produces every figure in every format. Shape only:
//! speed is never asserted in tests.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn bench(format: &str) -> String {
    let output = Command::new(binary())
        .args([
            "-m",
            tiny_model_dir().to_str().unwrap(),
            "bench",
            "--runs",
            "3",
            "--warmup",
            "1",
        ])
        .args([
            "--lengths",
            "8,64",
            "--batch-sizes",
            "1,8",
            "--format",
            format,
        ])
        .output()
        .unwrap();
    assert_exit_code(&output, 0);
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn json_report_has_every_figure() {
    let report: Value = serde_json::from_str(&bench("json")).unwrap();
    assert_eq!(report["model"], "tiny-distilbert");
    let system = &report["system"];
    for key in [
        "cpu",
        "logical_cores",
        "simd",
        "os",
        "build_features",
        "candle_version",
        "git_commit",
    ] {
        assert!(!system[key].is_null(), "system.{key}");
    }
    assert!(report["peak_rss_bytes"].as_u64().unwrap() > 0);
    let device = &report["devices"][0];
    assert_eq!(device["device"], "cpu");
    for key in ["load_ms", "tokenizer_load_ms", "first_inference_ms"] {
        assert!(device[key].as_f64().unwrap() > 0.0, "{key}");
    }
    let latency = device["latency"].as_array().unwrap();
    assert_eq!(latency.len(), 2);
    assert_eq!(latency[0]["tokens"], 8);
    assert_eq!(latency[1]["tokens"], 64);
    for part in ["total", "tokenize", "model"] {
        let stats = &latency[1][part];
        let get = |k: &str| stats[k].as_f64().unwrap();
        assert!(get("min_ms") <= get("p50_ms") && get("p50_ms") <= get("p95_ms"));
        assert!(get("p95_ms") <= get("p99_ms") && get("p99_ms") <= get("max_ms"));
        assert!(get("stddev_ms") >= 0.0 && get("mean_ms") > 0.0);
    }
    let throughput = device["throughput"].as_array().unwrap();
    assert_eq!(throughput.len(), 2);
    assert_eq!(throughput[1]["batch_size"], 8);
    assert_eq!(throughput[1]["sentences"], 872);
    assert!(throughput[1]["sentences_per_s"].as_f64().unwrap() > 0.0);
    let accuracy = device["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
}

#[test]
fn csv_report_is_long_format() {
    let csv = bench("csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("device,section,key,metric,value"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 5));
    assert!(rows
        .iter()
        .any(|r| r[1] == "latency" && r[2] == "tokens=64" && r[3] == "total_p99_ms"));
    assert!(rows
        .iter()
        .any(|r| r[1] == "throughput" && r[2] == "batch=8"));
    assert!(rows.iter().any(|r| r[3] == "accuracy"));
    assert!(rows.iter().any(|r| r[3] == "peak_rss_bytes"));
}

#[test]
fn markdown_and_console_reports_have_all_sections() {
    let markdown = bench("markdown");
    for section in [
        "### System",
        "### Load",
        "### Batch-1 latency",
        "### Throughput",
    ] {
        assert!(markdown.contains(section), "{section}");
    }
    assert!(markdown
        .lines()
        .any(|l| l.starts_with("| cpu") && l.contains("| 64 ")));
    let console = bench("console");
    assert!(console.contains("== Batch-1 latency") && console.contains("p99"));
    assert!(!console.contains('|'));
}

/// A device list with one that cannot open (not built in, or no GPU)
/// fails as a whole, cleanly.
#[test]
fn several_devices_fail_cleanly_when_one_cannot_open() {
    if std::env::var_os("SENTIMENT_TEST_CUDA").is_some() {
        return; // a GPU is there: tests/devices.rs benches it
    }
    let output = Command::new(binary())
        .args([
            "-m",
            tiny_model_dir().to_str().unwrap(),
            "--device",
            "cpu,cuda",
            "bench",
        ])
        .args(["--runs", "1", "--lengths", "8", "--batch-sizes", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5));
}
