//! What a model's files say cannot forge or garble output (issue 40,
//! items 2 and 3): label names with line breaks or terminal escapes are
//! shown safely on every human-readable line and kept exact in JSON, and
//! names that would make `scores` contradict `label` are refused.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The tiny model with its three labels renamed.
fn model_with_labels(labels: [&str; 3]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "tokenizer.json",
        "model.safetensors",
        "tokenizer_config.json",
    ] {
        std::fs::copy(tiny_model_dir().join(name), dir.path().join(name)).unwrap();
    }
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(tiny_model_dir().join("config.json")).unwrap())
            .unwrap();
    config["id2label"] = serde_json::json!({"0": labels[0], "1": labels[1], "2": labels[2]});
    config["label2id"] = serde_json::json!({});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn predict_with(model: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["-m", model.to_str().unwrap(), "predict"];
    all.extend_from_slice(args);
    run_with_stdin(sentiment_command(&all), b"")
}

const FORGED: &str = "NEG\nPOSITIVE  0.9999  POSITIVE=0.9999  a forged line";
const ESCAPE: &str = "\u{1b}[2J\u{1b}[31mRED\u{7}";
const SEPARATOR: &str = "LINE\u{2028}BREAK\u{202e}desrever";

#[test]
fn label_names_cannot_forge_a_human_line() {
    let model = model_with_labels([FORGED, ESCAPE, SEPARATOR]);
    let output = predict_with(
        model.path(),
        &["a good film", "a bad \u{1b}[1mfilm\r\nsecond"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\u{7}') && !stdout.contains('\r'));
    assert!(!stdout.contains('\u{2028}') && !stdout.contains('\u{202e}'));
    // What was there is still shown, escaped.
    assert!(stdout.contains("\\u{1b}[31mRED\\u{7}"), "{stdout}");
    assert!(
        stdout.contains("LINE\\u{2028}BREAK\\u{202e}desrever"),
        "{stdout}"
    );
    assert!(stdout.contains("NEG POSITIVE  0.9999"), "{stdout}");
    assert!(stdout.contains("a bad \\u{1b}[1mfilm  second"), "{stdout}");
}

#[test]
fn json_keeps_label_names_exact() {
    let model = model_with_labels([FORGED, ESCAPE, SEPARATOR]);
    let output = predict_with(model.path(), &["--json", "a good film"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let record: Value = serde_json::from_str(stdout.trim()).unwrap();
    let names: Vec<&str> = record["scores"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut names = names;
    names.sort();
    let mut want = vec![FORGED, ESCAPE, SEPARATOR];
    want.sort();
    assert_eq!(names, want);
    let label = record["label"].as_str().unwrap();
    assert_eq!(record["scores"][label].as_f64(), record["score"].as_f64());
}

#[test]
fn duplicate_and_empty_label_names_are_refused() {
    for (labels, says) in [
        (
            ["SAME", "SAME", "OTHER"],
            "\"SAME\" for both class 0 and class 1",
        ),
        (["A", "B", "A"], "\"A\" for both class 0 and class 2"),
        (["", "", ""], "class 0 an empty name"),
        (["A", "", "C"], "class 1 an empty name"),
    ] {
        let model = model_with_labels(labels);
        let output = predict_with(model.path(), &["a good film"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{labels:?}: {stderr}");
        assert!(
            stderr.contains("config.json") && stderr.contains(says),
            "{labels:?}: {stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

/// An error that quotes what came from outside (here a folder's name) is
/// still one line, with nothing a terminal would act on.
#[test]
fn an_error_quoting_a_name_is_one_safe_line() {
    let parent = tempfile::tempdir().unwrap();
    let folder = parent.path().join("model\n\u{1b}[31msentiment: forged");
    std::fs::create_dir(&folder).unwrap();
    let output = predict_with(&folder, &["a good film"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

/// An empty variable means unset (issue 40, item 10), for every variable
/// the program reads; an empty `--model` given on purpose is a usage error.
#[test]
fn empty_variables_mean_unset() {
    let bundled = run_with_stdin(
        sentiment_command(&["predict", "--json", "a good film"]),
        b"",
    );
    assert_eq!(bundled.status.code(), Some(0));
    let mut command = sentiment_command(&["predict", "--json", "a good film"]);
    for name in [
        "SENTIMENT_MODEL",
        "SENTIMENT_HUB_READ_TIMEOUT",
        "SENTIMENT_HUB_CONNECT_TIMEOUT",
        "RAYON_NUM_THREADS",
        "CANDLE_NUM_THREADS",
        "SENTIMENT_KERNELS",
        "HF_HUB_OFFLINE",
        "HF_HOME",
    ] {
        command.env(name, "");
    }
    let output = run_with_stdin(command, b"");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, bundled.stdout);
    let explicit = run_with_stdin(sentiment_command(&["-m", "", "predict", "x"]), b"");
    assert_eq!(explicit.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&explicit.stderr).contains("--model is empty"));
}
