//! Every bad input from the README's table, long texts, restartable runs,
//! Ctrl-C and huge lines: each line in gives exactly one line out.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut command = sentiment_command(&["-m", &tiny_model_dir().display().to_string()]);
    command.args(args);
    run_with_stdin(command, stdin)
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output ends on a complete line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_kind_of_bad_line_gets_its_own_record() {
    let ten_mb = format!("{{\"text\":\"{}\"}}", "word ".repeat(2 << 20));
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(b"\xEF\xBB\xBF{\"text\":\"bom on line one\"}\r\n"); // 1 BOM + CRLF
    input.extend_from_slice(b"{\"text\":\"crlf\"}\r\n"); // 2
    input.extend_from_slice(b"\n"); // 3 blank
    input.extend_from_slice(b"   \n"); // 4 whitespace-only line
    input.extend_from_slice(b"{\"text\":\"\"}\n"); // 5 empty string
    input.extend_from_slice(b"{\"text\":\"   \"}\n"); // 6 whitespace-only text
    input.extend_from_slice(b"{\"text\":\"nul \\u0000 escaped\"}\n"); // 7 escaped NUL
    input.extend_from_slice(b"{\"text\":\"raw \x00 nul\"}\n"); // 8 raw NUL in a string
    input.extend_from_slice(b"{\"text\":\"bad \xC3\x28 utf8\"}\n"); // 9 invalid UTF-8
    input.extend_from_slice(b"\"just a string\"\n"); // 10 not an object
    input.extend_from_slice(b"{\"text\":[1]}\n"); // 11 array
    input.extend_from_slice(ten_mb.as_bytes()); // 12 a 10 MB line
    input.push(b'\n');
    input.extend_from_slice(b"{\"text\":\"no final newline\"}"); // 13
    let output = run(&["batch"], &input);
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 13);
    let classified = |i: usize| lines[i - 1]["label"].is_string();
    let error = |i: usize| lines[i - 1]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(lines[0]["text"], "bom on line one");
    assert!(classified(1) && classified(2));
    assert!(error(3).contains("blank") && error(4).contains("blank"));
    assert!(classified(5) && classified(6) && classified(7));
    // A raw control character is invalid inside a JSON string.
    assert!(error(8).contains("invalid JSON"), "{}", error(8));
    assert!(error(9).contains("UTF-8"));
    assert!(error(10).contains("a string"));
    assert!(error(11).contains("an array"));
    assert!(classified(12));
    assert_eq!(lines[11]["truncated"], true);
    assert_eq!(lines[12]["text"], "no final newline");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_line_over_the_limit_is_an_error_record_not_an_abort() {
    // MAX_LINE_BYTES is 64 MiB; build just over it.
    let huge = vec![b'x'; sentiment::input::MAX_LINE_BYTES + 10];
    let mut input = b"{\"text\":\"before\"}\n".to_vec();
    input.extend_from_slice(&huge);
    input.extend_from_slice(b"\n{\"text\":\"after\"}\n");
    let output = run(&["batch"], &input);
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 3);
    assert!(lines[1]["error"]
        .as_str()
        .unwrap()
        .contains("over the limit"));
    assert_eq!(lines[2]["text"], "after");
}

#[test]
fn empty_input_gives_empty_output() {
    let output = run(&["batch"], b"");
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
    let output = run(&["predict"], b"");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no input"));
}

#[test]
fn long_texts_report_truncation_or_windows() {
    let long = "word ".repeat(1200);
    let truncated = run(&["predict", "--json", &long], b"");
    let line = &json_lines(&truncated.stdout)[0];
    assert_eq!(line["truncated"], true);
    assert!(line.get("windows").is_none());

    let windowed = run(&["predict", "--json", "--long-text", "window", &long], b"");
    let line = &json_lines(&windowed.stdout)[0];
    assert_eq!(line["truncated"], false);
    // 1200 tokens, 510 per window, 128 shared: 3 windows.
    assert_eq!(line["windows"], 3);

    let short = run(
        &["predict", "--json", "--long-text", "window", "short"],
        b"",
    );
    assert_eq!(json_lines(&short.stdout)[0]["windows"], 1);

    let input = format!("{{\"text\":\"{long}\"}}\n{{\"text\":\"short\"}}\n");
    let batch = run(
        &["batch", "--long-text", "window", "--stride", "64"],
        input.as_bytes(),
    );
    let lines = json_lines(&batch.stdout);
    assert_eq!(lines[0]["windows"], 3);
    assert_eq!(lines[1]["windows"], 1);
}

#[test]
fn window_mode_matches_predicting_each_window_alone() {
    use sentiment::{Aggregate, ClassifyOptions, LongText};
    let classifier = load(&tiny_model_dir());
    let long_text = LongText::Window {
        stride: 32,
        aggregate: Aggregate::Mean,
    };
    let text = (0..700).map(|i| format!("w{i} ")).collect::<String>();
    let windows = classifier.encode_text(&text, long_text).unwrap();
    assert!(windows.len() > 1);
    assert!(windows.iter().all(|w| w.len() <= 512 && w.ids[0] == 101));
    let single: Vec<_> = windows
        .iter()
        .map(|w| classifier.predict_encoded(&[w]).unwrap().remove(0))
        .collect();
    let options = ClassifyOptions::default().with_long_text(long_text);
    let combined = classifier.classify(&[&text], &options).unwrap().remove(0);
    assert_eq!(combined.windows, Some(windows.len()));
    for score in &combined.scores {
        let mean: f32 = single
            .iter()
            .map(|p| p.score_of(&score.label).unwrap())
            .sum::<f32>()
            / single.len() as f32;
        assert!((score.score - mean).abs() < 1e-5);
    }
}

#[test]
fn resume_continues_an_interrupted_output_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..100)
        .map(|i| {
            if i % 17 == 5 {
                "oops\n".to_string()
            } else {
                format!("{{\"text\":\"line {i}\",\"i\":{i}}}\n")
            }
        })
        .collect();
    let full = dir.path().join("full.jsonl");
    let out = run(
        &["batch", "--batch-size", "4", "-o", full.to_str().unwrap()],
        input.as_bytes(),
    );
    assert!(out.stdout.is_empty(), "results go to the file, not stdout");
    let expected = std::fs::read_to_string(&full).unwrap();
    assert_eq!(expected.lines().count(), 100);

    // An interrupted run: 40 complete lines and half of the 41st.
    let partial = dir.path().join("partial.jsonl");
    let mut kept: String = expected
        .lines()
        .take(40)
        .map(|l| format!("{l}\n"))
        .collect();
    kept.push_str(&expected.lines().nth(40).unwrap()[..10]);
    std::fs::write(&partial, kept).unwrap();
    run(
        &[
            "batch",
            "--batch-size",
            "4",
            "-o",
            partial.to_str().unwrap(),
            "--resume",
        ],
        input.as_bytes(),
    );
    let resumed = std::fs::read_to_string(&partial).unwrap();
    assert_same_results(&resumed, &expected);
    // The first 40 lines are the interrupted run's, byte for byte.
    assert!(resumed.starts_with(
        &expected
            .lines()
            .take(40)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    ));

    let missing = dir.path().join("new.jsonl");
    run(
        &["batch", "-o", missing.to_str().unwrap(), "--resume"],
        input.as_bytes(),
    );
    assert_same_results(&std::fs::read_to_string(&missing).unwrap(), &expected);

    // A model that fails to load leaves an existing --output untouched.
    let broken = Command::new(binary())
        .args([
            "-m",
            "/no/such/model",
            "batch",
            "-o",
            full.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(3));
    assert_eq!(std::fs::read_to_string(&full).unwrap(), expected);

    let no_file = run(&["batch", "--resume"], b"");
    assert_eq!(no_file.status.code(), Some(2), "--resume needs --output");
}

/// Same lines, same records, same labels; scores equal up to the float
/// noise of a different batch composition.
fn assert_same_results(got: &str, expected: &str) {
    let (got, expected) = (json_lines(got.as_bytes()), json_lines(expected.as_bytes()));
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["text"], e["text"]);
        assert_eq!(g["error"], e["error"]);
        assert_eq!(g["label"], e["label"]);
        if let (Some(a), Some(b)) = (g["score"].as_f64(), e["score"].as_f64()) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn ctrl_c_leaves_only_complete_lines_and_exits_130() {
    let mut child = Command::new(binary())
        .arg("-m")
        .arg(tiny_model_dir())
        .args(["batch", "--input", "text", "--batch-size", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all("some words\n".repeat(64).as_bytes())
        .unwrap();
    input.flush().unwrap();
    // Wait for the first window (16 lines) to come out, then interrupt while
    // stdin is still open.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.ends_with('\n'));
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    drop(input);
    assert_eq!(output.status.code(), Some(130));
    let mut all = first.into_bytes();
    all.extend(rest);
    let lines = json_lines(&all);
    assert!(
        lines.len() >= 16 && lines.len().is_multiple_of(16),
        "whole windows only: {}",
        lines.len()
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("interrupted"));
}

/// A copy of the tiny model whose files the test may break.
fn model_copy(dir: &Path) {
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(tiny_model_dir().join(name), dir.join(name)).unwrap();
    }
}

fn predict_with(dir: &Path) -> Output {
    Command::new(binary())
        .args(["-m", dir.to_str().unwrap(), "predict", "x"])
        .output()
        .unwrap()
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(path, config.to_string()).unwrap();
}

fn assert_model_error(output: &Output, file: &str, words: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(file) && stderr.contains(words), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn broken_model_folders_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path();

    model_copy(model);
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    assert_model_error(&predict_with(model), "tokenizer.json", "missing");

    model_copy(model);
    std::fs::write(model.join("tokenizer.json"), "{\"version\": 1}").unwrap();
    assert_model_error(&predict_with(model), "tokenizer.json", "invalid tokenizer");

    model_copy(model);
    edit_config(model, |c| {
        c.insert("id2label".into(), serde_json::json!({"0": "A", "1": "B"}));
    });
    assert_model_error(&predict_with(model), "config.json", "has 3 rows");

    model_copy(model);
    edit_config(model, |c| {
        c.insert("dim".into(), Value::from(24));
        c.insert("n_heads".into(), Value::from(4));
    });
    assert_model_error(&predict_with(model), "model.safetensors", "shape");

    model_copy(model);
    edit_config(model, |c| {
        c.insert("n_heads".into(), Value::from(5));
    });
    assert_model_error(&predict_with(model), "config.json", "divisible");

    model_copy(model);
    edit_config(model, |c| {
        c.insert("activation".into(), Value::from("swish"));
    });
    assert_model_error(&predict_with(model), "config.json", "swish");
}

#[test]
fn a_config_without_id2label_uses_hf_default_names() {
    let dir = tempfile::tempdir().unwrap();
    model_copy(dir.path());
    edit_config(dir.path(), |c| {
        c.remove("id2label");
        c.remove("label2id");
    });
    let output = Command::new(binary())
        .args(["-m", dir.path().to_str().unwrap(), "predict", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let line = &json_lines(&output.stdout)[0];
    let labels: Vec<&String> = line["scores"].as_object().unwrap().keys().collect();
    assert_eq!(labels.len(), 3, "the count comes from classifier.weight");
    assert!(labels.iter().all(|l| l.starts_with("LABEL_")));
}

/// Runs `command` with `stdin` as its input, reading its output as it
/// comes; killed if it has not ended within a minute (a guard against a
/// hang, not a speed check).
fn run_guarded(mut command: Command, stdin: Vec<u8>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let output = match finished.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: signalling the child this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{command:?} did not end within a minute");
        }
    };
    writer.join().unwrap();
    output
}

/// `batch --resume -o output` over `input`, guarded as [`run_guarded`].
fn resume_into(output: &Path, input: &[u8]) -> Output {
    let tiny = tiny_model_dir();
    let mut command = Command::new(binary());
    command
        .args(["-m", tiny.to_str().unwrap(), "batch", "--resume", "-o"])
        .arg(output);
    run_guarded(command, input.to_vec())
}

/// A refused --resume leaves the output byte for byte as it was, partial
/// last line included (issue 29: it used to cut that line before refusing).
#[test]
fn a_refused_resume_leaves_the_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    for before in [
        &b"{\"label\":\"a\"}\n{\"label\":\"b\"}\n{\"label\":\"c\"}\n{\"lab"[..],
        b"no newline at all",
    ] {
        std::fs::write(&output, before).unwrap();
        let done = resume_into(&output, b"{\"text\": \"one line only\"}\n");
        let lines = before.iter().filter(|&&b| b == b'\n').count();
        if lines > 1 {
            assert_exit_code(&done, 2);
        }
        if done.status.code() == Some(2) {
            assert_eq!(std::fs::read(&output).unwrap(), before);
        }
    }
}

/// A resume that goes through drops the partial last line, even when it
/// has nothing left to add.
#[test]
fn a_resume_with_nothing_left_still_drops_the_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    std::fs::write(&output, b"{\"label\":\"a\"}\n{\"lab").unwrap();
    let done = resume_into(&output, b"{\"text\": \"the one line\"}\n");
    assert_exit_code(&done, 0);
    assert_eq!(std::fs::read(&output).unwrap(), b"{\"label\":\"a\"}\n");
}

/// --resume reads the output to count its lines, so it takes regular files
/// only: a FIFO, a pipe (/dev/stdout) or a character device is refused at
/// once (it used to wait forever on the FIFO), and nothing is written.
#[cfg(unix)]
#[test]
fn resume_refuses_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    for output in [
        fifo.as_path(),
        Path::new("/dev/stdout"),
        Path::new("/dev/null"),
    ] {
        let done = resume_into(output, b"{\"text\": \"x\"}\n");
        assert_exit_code(&done, 2);
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert!(
            stderr.contains("--resume") && stderr.contains("regular file"),
            "{stderr}"
        );
        assert!(done.stdout.is_empty());
    }
}

/// Passthrough renaming is linear in the line, whatever its keys: 400,000
/// duplicate `label` keys (each renamed to `input_label`) and a chain of
/// `input_…label` names come back renamed, every one, well inside the
/// minute the guard allows (the renaming scanned every field for every
/// renamed one: 160,000 keys took 34 s, this many over 3 minutes).
#[test]
fn renaming_many_colliding_keys_is_linear() {
    let tiny = tiny_model_dir();
    let mut line = String::from("{\"text\": \"a fine film\"");
    for i in 0..40 {
        line.push_str(&format!(", \"{}label\": {i}", "input_".repeat(i + 1)));
    }
    for _ in 0..400_000 {
        line.push_str(", \"label\": 1");
    }
    line.push_str("}\n");
    let mut command = Command::new(binary());
    command.args(["-m", tiny.to_str().unwrap(), "batch"]);
    let output = run_guarded(command, line.into_bytes());
    assert_exit_code(&output, 0);
    let record = String::from_utf8(output.stdout).unwrap();
    let renamed = format!("\"{}label\":1", "input_".repeat(41));
    assert_eq!(record.matches(&renamed).count(), 400_000);
    assert_eq!(
        record.matches("\"label\":").count(),
        1,
        "the prediction's own label"
    );
}

/// Sets every value of `tensor` in the copied model's safetensors to
/// `value` (the file's other tensors are written back unchanged).
fn set_weight(dir: &Path, tensor: &str, value: f32) {
    let file = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    let old = &tensors[tensor];
    let new = (old.ones_like().unwrap() * value as f64).unwrap();
    tensors.insert(tensor.to_string(), new);
    candle_core::safetensors::save(&tensors, &file).unwrap();
}

/// A NaN or an infinity in any weight is a model error at load naming the
/// tensor (exit 3), never a silent answer: NaN in `classifier.weight` gave
/// `{"label":"NEGATIVE","score":null}` and exit 0, NaN in an encoder
/// weight the same finite answer for every text.
#[test]
fn non_finite_weights_are_model_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path();
    for (tensor, value) in [
        ("classifier.weight", f32::NAN),
        ("distilbert.transformer.layer.1.ffn.lin1.weight", f32::NAN),
        (
            "distilbert.transformer.layer.0.attention.q_lin.bias",
            f32::INFINITY,
        ),
        ("distilbert.embeddings.LayerNorm.weight", f32::NEG_INFINITY),
    ] {
        model_copy(model);
        set_weight(model, tensor, value);
        assert_model_error(&predict_with(model), "model.safetensors", "non-finite");
        let output = predict_with(model);
        assert!(String::from_utf8_lossy(&output.stderr).contains(tensor));
        assert!(output.stdout.is_empty());
    }
}

/// Finite weights whose products overflow (a LayerNorm scaled to f32::MAX)
/// give non-finite logits: each such text becomes an error record, never
/// a label, and the run says lines failed (exit 1).
#[test]
fn non_finite_logits_are_error_records_not_labels() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path();
    model_copy(model);
    set_weight(
        model,
        "distilbert.transformer.layer.1.output_layer_norm.weight",
        f32::MAX,
    );
    let output = run_with_stdin(
        sentiment_command(&["-m", model.to_str().unwrap(), "batch"]),
        b"{\"text\": \"a fine film\", \"id\": 1}\n{\"text\": \"a dull one\", \"id\": 2}\n",
    );
    assert_exit_code(&output, 1);
    let records = json_lines(&output.stdout);
    assert_eq!(records.len(), 2);
    for (record, id) in records.iter().zip([1, 2]) {
        assert!(record.get("label").is_none(), "{record}");
        assert!(
            record["error"].as_str().unwrap().contains("non-finite"),
            "{record}"
        );
        assert_eq!(record["id"], id);
    }
}

/// A sharded checkpoint (model.safetensors.index.json and its shards) is
/// named as such, not reported as missing weights.
#[test]
fn a_sharded_checkpoint_is_named_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path();
    model_copy(model);
    std::fs::rename(
        model.join("model.safetensors"),
        model.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    std::fs::write(
        model.join("model.safetensors.index.json"),
        r#"{"weight_map": {"classifier.weight": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    assert_model_error(
        &predict_with(model),
        "model.safetensors.index.json",
        "sharded",
    );
}
