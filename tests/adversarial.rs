//! The adversarial run's cases (issue "Nothing lost, nothing crashes"), one
//! test each, through the real binary: no input may make it panic, abort or
//! run out of memory, and no user file or field may be damaged. Tests that
//! need a memory bound run the binary under `ulimit -v`.
//!
//! `SENTIMENT_TEST_BINARY=/path/to/old/sentiment cargo test --test
//! adversarial` runs them against another build, to see them fail there.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{json, Value};

/// A virtual-memory cap far above what the runs below need (~300 MB for
/// the tiny model, ~400 MB for the bundled one), far below what the bugs
/// they cover asked for.
const MEMORY_CAP_KB: u64 = 1_000_000;

fn tiny() -> String {
    tiny_model_dir().display().to_string()
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(sentiment_command(args), stdin)
}

/// The binary under a virtual-memory cap: an allocation it cannot get is
/// then an abort (code 134), which the tests below rule out.
fn run_capped(args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_CAP_KB} && exec \"$0\" \"$@\""))
        .arg(binary())
        .args(args)
        .env_remove("SENTIMENT_MODEL")
        .env("HF_HUB_OFFLINE", "1");
    run_with_stdin(command, stdin)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of the tiny model whose config.json and tokenizer.json the
/// callers may rewrite.
fn tiny_copy(
    config: impl FnOnce(&mut Value),
    tokenizer: impl FnOnce(&mut Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_model_dir();
    std::fs::copy(
        source.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    for (name, edit) in [
        (
            "config.json",
            Box::new(config) as Box<dyn FnOnce(&mut Value)>,
        ),
        ("tokenizer.json", Box::new(tokenizer)),
    ] {
        let mut value: Value =
            serde_json::from_slice(&std::fs::read(source.join(name)).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(dir.path().join(name), value.to_string()).unwrap();
    }
    dir
}

fn assert_clean_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}\nstdout: {}",
        stderr(output),
        stdout(output)
    );
    assert!(
        !stderr(output).contains("panicked"),
        "stderr: {}",
        stderr(output)
    );
}

// 1. A gold label that is not a class of the model.
#[test]
fn bench_with_an_out_of_range_label_reports_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("f.jsonl");
    std::fs::write(&dataset, "{\"text\":\"good\",\"label\":5}\n").unwrap();
    let output = run(
        &[
            "-m",
            &tiny(),
            "bench",
            "--dataset",
            dataset.to_str().unwrap(),
            "--lengths",
            "8",
            "--batch-sizes",
            "1",
            "--runs",
            "1",
            "--warmup",
            "0",
        ],
        b"",
    );
    assert_clean_exit(&output, 0);
    assert!(
        stdout(&output).contains("no accuracy"),
        "{}",
        stdout(&output)
    );
}

// 2. Sizes in config.json are checked before anything is allocated.
#[test]
fn huge_sizes_in_the_config_are_refused_before_allocating() {
    for (field, value) in [
        ("max_position_embeddings", json!(1u64 << 62)),
        ("max_position_embeddings", json!(1u64 << 40)),
        ("dim", json!(1u64 << 40)),
        ("vocab_size", json!(1u64 << 50)),
        ("hidden_dim", json!(1u64 << 33)),
        ("n_layers", json!(100_000)),
    ] {
        let model = tiny_copy(
            |c| {
                c["sinusoidal_pos_embds"] = json!(true);
                c[field] = value.clone();
            },
            |_| {},
        );
        let output = run_capped(
            &["-m", model.path().to_str().unwrap(), "predict", "hi"],
            b"",
        );
        assert_clean_exit(&output, 3);
        assert!(
            stderr(&output).contains("config.json") && stderr(&output).contains(field),
            "{field}: {}",
            stderr(&output)
        );
    }
}

// 3. Flags cannot ask for huge buffers.
#[test]
fn huge_batch_sizes_are_usage_errors() {
    for args in [
        &["batch", "--batch-size", "100000000"][..],
        &["predict", "--batch-size", "4294967295", "x"],
        &["bench", "--batch-sizes", "100000"],
        &["bench", "--runs", "4294967295"],
    ] {
        let mut all = vec!["-m", "bundled"];
        all.extend_from_slice(args);
        assert_clean_exit(&run_capped(&all, b""), 2);
    }
}

// 4. Long texts in window mode go through the model a batch at a time.
#[test]
fn window_mode_memory_does_not_grow_with_the_number_of_windows() {
    // --stride 509 on ~20 KB: about 4,000 windows of 512 tokens, which
    // took gigabytes as one forward pass.
    let text = "good movie ".repeat(2000);
    let output = run_capped(
        &[
            "-m",
            &tiny(),
            "predict",
            "--json",
            "--long-text",
            "window",
            "--stride",
            "509",
            &text,
        ],
        b"",
    );
    assert_clean_exit(&output, 0);
    assert!(json_lines(&output)[0]["windows"].as_u64().unwrap() > 2000);
}

/// A pytorch_model.bin (a zip holding `<name>/data.pkl`) with this pickle.
fn pytorch_folder(pickle: &[u8]) -> tempfile::TempDir {
    let model = tiny_copy(|_| {}, |_| {});
    std::fs::remove_file(model.path().join("model.safetensors")).unwrap();
    let file = std::fs::File::create(model.path().join("pytorch_model.bin")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("pytorch_model/data.pkl", options).unwrap();
    zip.write_all(pickle).unwrap();
    zip.finish().unwrap();
    model
}

// 5. A pickle that nests 200,000 levels (or otherwise explodes).
#[test]
fn hostile_pickles_are_model_errors_not_stack_overflows() {
    let mut deep = b"\x80\x02N".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 200_000)); // TUPLE1, 200,000 times
    deep.push(b'.');
    let mut doubling = b"\x80\x02Nq\x00".to_vec();
    for _ in 0..60 {
        doubling.extend_from_slice(b"h\x00h\x00\x86q\x00"); // x = (x, x)
    }
    doubling.push(b'.');
    let huge_string = b"\x80\x02X\xff\xff\xff\xffabc.".to_vec();
    for pickle in [deep, doubling, huge_string] {
        let model = pytorch_folder(&pickle);
        let output = run_capped(
            &["-m", model.path().to_str().unwrap(), "predict", "hi"],
            b"",
        );
        assert_clean_exit(&output, 3);
        assert!(
            stderr(&output).contains("pytorch_model.bin"),
            "{}",
            stderr(&output)
        );
    }
}

// 6. A full stderr loses the diagnostic, not the run.
#[test]
fn diagnostics_into_a_full_stderr_never_panic() {
    let full = || {
        Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
    };
    for (args, code) in [
        (vec!["-m", "/no/such/model", "predict", "x"], 3),
        (vec!["-m", &tiny(), "batch"], 1),
        (vec!["-m", &tiny(), "predict", "--stride", "3", "x"], 2),
    ] {
        let output = sentiment_command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(full())
            .spawn()
            .and_then(|mut child| {
                // The process may exit before reading: that is its business.
                let _ = child.stdin.take().unwrap().write_all(b"not json\n");
                child.wait_with_output()
            })
            .unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}");
    }
}

// 7. Every length flag is bounded, and every reader capped.
#[test]
fn lengths_past_the_model_and_endless_lines_are_bounded() {
    for lengths in ["4294967295", "100000", "513"] {
        let output = run_capped(&["-m", &tiny(), "bench", "--lengths", lengths], b"");
        assert_clean_exit(&output, 2);
    }
    // An endless dataset is refused once past its cap, not read whole.
    let output = run_capped(&["-m", &tiny(), "bench", "--dataset", "/dev/zero"], b"");
    assert_clean_exit(&output, 6);
    assert!(
        stderr(&output).contains("larger than"),
        "{}",
        stderr(&output)
    );
    // 80 MB without a newline (what `predict < /dev/zero` starts with).
    let zeros = vec![0u8; 80 << 20];
    let output = run_capped(&["-m", &tiny(), "predict", "--json"], &zeros);
    assert_clean_exit(&output, 1);
    assert!(json_lines(&output)[0]["error"]
        .as_str()
        .unwrap()
        .contains("over the limit"));
}

// 8. The output is the input (by path, by symlink, with --resume).
#[test]
fn batch_refuses_to_write_over_its_own_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("same.jsonl");
    let content = "{\"text\":\"good\"}\n{\"text\":\"bad\"}\n";
    std::fs::write(&input, content).unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let (input_arg, link_arg) = (input.to_str().unwrap(), link.to_str().unwrap());
    for args in [
        vec!["batch", "-o", input_arg, input_arg],
        vec!["batch", "-o", link_arg, input_arg],
        vec!["batch", "-o", input_arg, "--resume", input_arg],
    ] {
        let mut all = vec!["-m", "bundled"];
        all.extend(args.iter().copied());
        let output = run(&all, b"");
        assert_clean_exit(&output, 2);
        assert!(
            stderr(&output).contains("input file itself"),
            "{}",
            stderr(&output)
        );
        assert_eq!(std::fs::read_to_string(&input).unwrap(), content);
    }
    // `sentiment batch -o same.jsonl < same.jsonl`: the input is stdin.
    let output = sentiment_command(&["-m", "bundled", "batch", "-o", input_arg])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_clean_exit(&output, 2);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), content);
}

// 9. Result fields never overwrite an input field, and a user's `error`
// field cannot make a good line look failed.
#[test]
fn colliding_input_fields_are_kept_under_input_names() {
    let line = r#"{"text":"great","label":"NEGATIVE","score":1,"scores":[1],"truncated":"no","error":"mine","input_label":"taken"}"#;
    let output = run(&["-m", &tiny(), "batch"], format!("{line}\n").as_bytes());
    assert_clean_exit(&output, 0);
    let record = &json_lines(&output)[0];
    assert_eq!(record["input_label"], "taken");
    assert_eq!(record["input_input_label"], "NEGATIVE");
    assert_eq!(record["input_score"], 1);
    assert_eq!(record["input_scores"], json!([1]));
    assert_eq!(record["input_truncated"], "no");
    assert_eq!(record["input_error"], "mine");
    assert!(record.get("error").is_none());
    assert!(record["label"].is_string() && record["scores"].is_object());
    assert_eq!(record["truncated"], false);
}

// 10. Passthrough is byte-exact, numbers included.
#[test]
fn passthrough_values_are_byte_exact() {
    let fields = [
        r#""n":1.0000000000000001"#,
        r#""big":123456789012345678901234567890"#,
        r#""e":1E+400"#,
        r#""neg":-0.0"#,
        r#""s":"caf\u00e9 \ud83d\ude00 \/""#,
        r#""nested":{"a":[1.50, 2e-3, {"b":null}]}"#,
        r#""dup":1"#,
        r#""dup":2"#,
    ];
    let line = format!(r#"{{"text":"fine",{}}}"#, fields.join(","));
    let output = run(&["-m", &tiny(), "batch"], format!("{line}\n").as_bytes());
    assert_clean_exit(&output, 0);
    let out = stdout(&output);
    for field in fields {
        assert!(out.contains(field), "{field} not in {out}");
    }
}

// 11. A folder as input leaves --output alone.
#[test]
fn a_directory_as_input_does_not_touch_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("keep.out");
    std::fs::write(&keep, "precious\n").unwrap();
    let output = run(
        &[
            "-m",
            "bundled",
            "batch",
            "-o",
            keep.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    assert_clean_exit(&output, 6);
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "precious\n");
}

// 12. Custom models: ids outside the embedding table are refused at load;
// a line the tokenizer makes nothing of fails alone.
#[test]
fn token_ids_past_the_embedding_table_are_refused_at_load() {
    let model = tiny_copy(
        |_| {},
        |t| {
            t["added_tokens"].as_array_mut().unwrap().push(json!({
                "id": 40000, "content": "[HUGE]", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }));
        },
    );
    let output = run(
        &[
            "-m",
            model.path().to_str().unwrap(),
            "predict",
            "a [HUGE] b",
        ],
        b"",
    );
    assert_clean_exit(&output, 3);
    let message = stderr(&output);
    assert!(
        message.contains("tokenizer.json") && message.contains("embedding table"),
        "{message}"
    );
}

#[test]
fn a_line_without_tokens_fails_alone() {
    let model = tiny_copy(|_| {}, |t| t["post_processor"] = Value::Null);
    let input = "{\"text\":\"good\"}\n{\"text\":\"\"}\n{\"text\":\"bad\"}\n";
    let output = run(
        &["-m", model.path().to_str().unwrap(), "batch"],
        input.as_bytes(),
    );
    assert_clean_exit(&output, 1);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["label"].is_string() && lines[2]["label"].is_string());
    assert!(lines[1]["error"].as_str().unwrap().contains("no tokens"));
}

// 13. predict keeps the good lines around a bad one.
#[test]
fn predict_on_stdin_gives_a_bad_line_its_own_error() {
    let output = run(
        &["-m", &tiny(), "predict", "--json"],
        b"good\n\xff\xfe bad utf8\nbad\n",
    );
    assert_clean_exit(&output, 1);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["text"], "good");
    assert!(lines[1]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[2]["text"], "bad");
}

// Wrong or misleading: configs of the wrong kind, and a config of one
// architecture over another's weights.
#[test]
fn configs_we_cannot_run_name_config_json_and_what_is_supported() {
    let gpt2 = json!({"model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]});
    for config in [json!([]), json!({}), gpt2] {
        let model = tiny_copy(|c| *c = config.clone(), |_| {});
        let output = run(&["-m", model.path().to_str().unwrap(), "predict", "x"], b"");
        assert_clean_exit(&output, 3);
        let stderr = stderr(&output);
        assert!(stderr.contains("config.json"), "{config}: {stderr}");
        if config.get("model_type").is_some() {
            assert!(
                stderr.contains("GPT2ForSequenceClassification")
                    && stderr.contains("supported: DistilBertForSequenceClassification"),
                "{stderr}"
            );
        }
    }
    let bert = json!({"model_type": "bert", "architectures": ["BertForSequenceClassification"],
                      "hidden_size": 16, "num_attention_heads": 4});
    let model = tiny_copy(|c| *c = bert.clone(), |_| {});
    let output = run(&["-m", model.path().to_str().unwrap(), "predict", "x"], b"");
    assert_clean_exit(&output, 3);
    assert!(
        stderr(&output).contains("model.safetensors")
            && stderr(&output).contains("not a BertForSequenceClassification checkpoint"),
        "{}",
        stderr(&output)
    );
}

/// A config field of the wrong kind or value names it once: each cause in
/// the chain is said once (``unknown variant `swishy`…`` was printed
/// twice, the field error's message repeating its source).
#[test]
fn config_field_errors_say_each_cause_once() {
    for (field, value, says) in [
        ("activation", json!("swishy"), "unknown variant `swishy`"),
        ("dim", json!("wide"), "invalid type"),
        ("n_layers", json!(-3), "invalid value"),
    ] {
        let model = tiny_copy(|c| c[field] = value.clone(), |_| {});
        let output = run(&["-m", model.path().to_str().unwrap(), "predict", "x"], b"");
        assert_clean_exit(&output, 3);
        let stderr = stderr(&output);
        assert_eq!(stderr.matches(says).count(), 1, "{field}: {stderr}");
        assert!(stderr.contains("config.json"), "{stderr}");
    }
}

// Security: a revision may not walk out of the HF cache.
#[test]
fn revisions_that_are_paths_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    // A folder a path-like revision could reach.
    let outside = cache.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for revision in ["../../../outside", "/etc", "", "a/../../b"] {
        let output = run_with_stdin(
            {
                let mut c = sentiment_command(&[
                    "-m",
                    "owner/name",
                    "--revision",
                    revision,
                    "predict",
                    "x",
                ]);
                c.env("HF_HUB_CACHE", cache.path());
                c
            },
            b"",
        );
        assert_clean_exit(&output, 2);
        assert!(
            stderr(&output).contains("revision"),
            "{revision:?}: {}",
            stderr(&output)
        );
    }
}

/// Writes `first` to a running `sentiment` and expects a result line back
/// before stdin is closed: results do not wait for a full window.
fn answers_before_end_of_input(args: &[&str], first: &[u8]) {
    let mut child = sentiment_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first).unwrap();
    stdin.flush().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(std::time::Duration::from_secs(60));
    drop(stdin);
    let _ = child.wait();
    let line = line.expect("a result line while stdin is still open");
    assert!(line.contains("label") || line.contains("POSITIVE") || line.contains("NEGATIVE"));
}

#[test]
fn slow_input_gets_its_results_as_it_comes() {
    answers_before_end_of_input(&["-m", &tiny(), "predict"], b"a good movie\n");
    answers_before_end_of_input(&["-m", &tiny(), "batch"], b"{\"text\":\"a good movie\"}\n");
}

// Silent no-ops are refused or warned about.
#[test]
fn options_that_would_do_nothing_are_refused_or_warned() {
    for args in [
        &["predict", "--stride", "64", "x"][..],
        &["predict", "--aggregate", "max", "x"],
        &["batch", "--stride", "64"],
    ] {
        let mut all = vec!["-m", "bundled"];
        all.extend_from_slice(args);
        let output = run(&all, b"");
        assert_clean_exit(&output, 2);
        assert!(
            stderr(&output).contains("--long-text window"),
            "{}",
            stderr(&output)
        );
    }
    let output = run(&["-m", &tiny(), "--threads", "1000", "predict", "x"], b"");
    assert_clean_exit(&output, 0);
    assert!(
        stderr(&output).contains("warning: --threads 1000"),
        "{}",
        stderr(&output)
    );
}

// A bounded line costs bounded work: truncation tokenizes a prefix, not the
// whole 60 MB (which took 4 GB and 35 s).
#[test]
fn a_huge_line_is_truncated_from_a_prefix_in_bounded_memory() {
    let line = format!("{{\"text\":\"{}\",\"id\":7}}\n", "word ".repeat(12_000_000));
    let output = run_capped(&["-m", &tiny(), "batch"], line.as_bytes());
    assert_clean_exit(&output, 0);
    let record = &json_lines(&output)[0];
    assert_eq!(record["truncated"], true);
    assert_eq!(record["id"], 7);
    assert_eq!(record["text"].as_str().unwrap().len(), 60_000_000);
}

// Sizes in a pytorch_model.bin are checked against its storage before
// candle allocates a tensor from them.
#[test]
fn a_pickle_claiming_a_huge_tensor_is_refused_before_allocating() {
    let source = fixture("tiny-distilbert-pth");
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(source.join("pytorch_model.bin")).unwrap())
            .unwrap();
    let model = tiny_copy(|_| {}, |_| {});
    std::fs::remove_file(model.path().join("model.safetensors")).unwrap();
    let out = std::fs::File::create(model.path().join("pytorch_model.bin")).unwrap();
    let mut zip = zip::ZipWriter::new(out);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if name.ends_with("data.pkl") {
            // The word embeddings' (30522, 16) becomes (2^30, 16): 64 GB.
            let at = bytes.windows(3).position(|w| w == b"M\x3a\x77").unwrap();
            let mut huge = b"J".to_vec();
            huge.extend_from_slice(&(1i32 << 30).to_le_bytes());
            bytes.splice(at..at + 3, huge);
        }
        zip.start_file(name, options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
    let output = run_capped(
        &["-m", model.path().to_str().unwrap(), "predict", "hi"],
        b"",
    );
    assert_clean_exit(&output, 3);
    assert!(
        stderr(&output).contains("storage holds"),
        "{}",
        stderr(&output)
    );
}

// --resume with an input shorter than the output already is: not the same
// run, so it is refused rather than "finishing" with nothing done.
#[test]
fn resume_with_a_shorter_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "{\"text\":\"a\"}\n").unwrap();
    std::fs::write(&output, "{}\n{}\n{}\n").unwrap();
    let run_output = run(
        &[
            "-m",
            &tiny(),
            "batch",
            "-o",
            output.to_str().unwrap(),
            "--resume",
            input.to_str().unwrap(),
        ],
        b"",
    );
    assert_clean_exit(&run_output, 2);
    assert!(
        stderr(&run_output).contains("--resume"),
        "{}",
        stderr(&run_output)
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "{}\n{}\n{}\n");
}

// An error record keeps the line's fields when the line was a JSON object,
// so an id survives a bad text; the input's own `line` and `error` fields
// are renamed, so the record still reads as an error record.
#[test]
fn error_records_keep_the_lines_fields() {
    let input = concat!(
        "{\"id\":17,\"text\":5,\"n\":1.50}\n",
        "{\"id\":18,\"line\":\"mine\",\"error\":\"mine too\"}\n",
        "not json\n",
    );
    let output = run(&["-m", &tiny(), "batch"], input.as_bytes());
    assert_clean_exit(&output, 1);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"line":1,"error":"field \"text\" must be a string, found a number","id":17,"text":5,"n":1.50}"#
    );
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["line"], 2);
    assert!(second["error"].as_str().unwrap().contains("missing"));
    assert_eq!(
        (
            second["input_line"].as_str(),
            second["input_error"].as_str()
        ),
        (Some("mine"), Some("mine too"))
    );
    assert_eq!(second["id"], 18);
    assert_eq!(
        serde_json::from_str::<Value>(lines[2])
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        2
    );
}

// Text without whitespace escapes no prefix cut: 60 MB of one "word" (a
// tokenizer sees one huge word, whose prefixes never hold enough tokens)
// took 3.6 GB and 37 s, tokenized whole; now it is read to a bounded prefix
// like any other text, within the memory cap.
#[test]
fn a_huge_line_without_whitespace_is_truncated_in_bounded_memory() {
    for filler in ["a", "ab,"] {
        let text = filler.repeat(60_000_000 / filler.len());
        let line = format!("{{\"text\":\"{text}\",\"id\":8}}\n");
        let output = run_capped(&["-m", &tiny(), "batch"], line.as_bytes());
        assert_clean_exit(&output, 0);
        let record = &json_lines(&output)[0];
        assert_eq!(record["truncated"], true, "{filler}");
        assert_eq!(record["id"], 8);
        assert!(record["label"].is_string(), "{filler}");
    }
}

// Many big lines: a window is bounded in bytes as well as lines, and so is
// the reader's read-ahead, so 64 lines of 8 MB (512 MB, more than the 1 GB
// cap holds twice) run under the memory cap, each line answered in its
// place. (200 lines of 5 MB peaked at 2 GB when windows were bounded by
// lines alone; the read-ahead of 512 lines still held them all.)
#[test]
fn many_big_lines_run_in_bounded_memory() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let (input, scored) = (dir.path().join("big.jsonl"), dir.path().join("out.jsonl"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let text = "a fine film . ".repeat((8 << 20) / 14);
    for i in 0..64 {
        writeln!(file, "{{\"id\":{i},\"text\":\"{text}\"}}").unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let (input, scored) = (input.to_str().unwrap(), scored.to_str().unwrap());
    let output = run_capped(&["-m", &tiny(), "batch", input, "-o", scored], b"");
    assert_clean_exit(&output, 0);
    let mut count = 0;
    for (i, line) in std::io::BufReader::new(std::fs::File::open(scored).unwrap())
        .lines()
        .enumerate()
    {
        let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(record["id"], i);
        assert_eq!(record["truncated"], true);
        count += 1;
    }
    assert_eq!(count, 64);
}

/// A model file the OS will not read is reported with the OS's reason, not
/// as missing (`config.json: missing from the model folder` before): a
/// link loop, which any user can make, and a file without read permission,
/// which root reads anyway.
#[test]
fn an_unreadable_model_file_is_not_called_missing() {
    let model = tiny_copy(|_| {}, |_| {});
    let config = model.path().join("config.json");
    std::fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink("config.json", &config).unwrap();
    let output = run(&["-m", model.path().to_str().unwrap(), "predict", "x"], b"");
    assert_clean_exit(&output, 3);
    let stderr = stderr(&output);
    assert!(
        stderr.contains("config.json") && stderr.contains("symbolic links"),
        "{stderr}"
    );
    assert!(!stderr.contains("missing"), "{stderr}");
}

#[test]
#[cfg_attr(
    build_as_root,
    ignore = "root reads every file: permission denied cannot happen here"
)]
fn a_model_file_without_read_permission_says_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let model = tiny_copy(|_| {}, |_| {});
    let config = model.path().join("config.json");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o000)).unwrap();
    let output = run(&["-m", model.path().to_str().unwrap(), "predict", "x"], b"");
    assert_clean_exit(&output, 3);
    let stderr = stderr(&output);
    assert!(
        stderr.contains("config.json") && stderr.contains("ermission denied"),
        "{stderr}"
    );
    assert!(!stderr.contains("missing"), "{stderr}");
}
