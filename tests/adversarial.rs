//! The adversarial run's cases (issue "Nothing lost, nothing crashes"), one
//! test each, through the real binary: no input may make it panic, abort or
//! run out of memory, and no user file or field may be damaged. Tests that
//! need a memory bound run the binary under `ulimit -v`.
//!
//! `SENTIMENT_TEST_BINARY=/path/to/old/sentiment cargo test --test
//! adversarial` runs them against another build, to see them fail there.

#[path = "common/adversarial.rs"]
mod adversarial;
mod common;

use adversarial::*;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::process::Stdio;

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
