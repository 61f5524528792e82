//! The real binary: output formats, exit codes, errors, broken pipes.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn sentiment(args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(sentiment_command(args), stdin)
}

fn tiny() -> String {
    tiny_model_dir().display().to_string()
}

fn stdout_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("stdout line is JSON"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn predict_json_has_the_pipeline_fields_and_every_label() {
    let output = sentiment(&["-m", &tiny(), "predict", "--json", "great", "awful"], b"");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "great");
    let scores = lines[0]["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 3);
    let best = scores
        .values()
        .map(|v| v.as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(lines[0]["score"].as_f64().unwrap(), best);
    assert_eq!(
        lines[0]["scores"][lines[0]["label"].as_str().unwrap()]
            .as_f64()
            .unwrap(),
        best
    );
    let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5);
}

#[test]
fn predict_matches_the_golden_probabilities() {
    let golden = golden(&fixture("golden_tiny.json"));
    let case = &golden.cases[3];
    let output = sentiment(&["-m", &tiny(), "predict", "--json", &case.text], b"");
    let line = &stdout_lines(&output)[0];
    for (label, expected) in golden.labels.iter().zip(&case.probabilities) {
        let got = line["scores"][label].as_f64().unwrap() as f32;
        assert!(
            (got - expected).abs() < 1e-5,
            "{label}: {got} vs {expected}"
        );
    }
}

#[test]
fn predict_top_k_limits_the_labels() {
    let output = sentiment(
        &["-m", &tiny(), "predict", "--json", "--top-k", "1", "x"],
        b"",
    );
    let line = &stdout_lines(&output)[0];
    let scores = line["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 1);
    assert!(scores.contains_key(line["label"].as_str().unwrap()));
}

#[test]
fn predict_reads_lines_from_stdin_without_texts() {
    let output = sentiment(&["-m", &tiny(), "predict", "--json"], b"one\r\ntwo\n\nfour");
    assert_eq!(output.status.code(), Some(0));
    let texts: Vec<Value> = stdout_lines(&output)
        .into_iter()
        .map(|l| l["text"].clone())
        .collect();
    assert_eq!(texts, ["one", "two", "", "four"]);
}

#[test]
fn predict_human_output_is_one_line_per_text() {
    let output = sentiment(&["-m", &tiny(), "predict", "first", "second\nline"], b"");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("first"));
    assert!(lines[1].ends_with("second line"));
    assert!(lines[0].contains("NEUTRAL=") && lines[0].contains("POSITIVE="));
}

#[test]
fn batch_keeps_count_order_errors_and_passthrough_fields() {
    let input = b"{\"text\":\"good\",\"id\":1}\nnot json\n{\"id\":3}\n\xff\xfe\n[1]\n\
{\"text\":5}\n{\"text\":null}\n\n{\"text\":\"fine\",\"id\":9,\"meta\":{\"k\":[1]}}\n{\"text\":\"\"}";
    let output = sentiment(&["-m", &tiny(), "batch", "--batch-size", "2"], input);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed line sets exit code 1"
    );
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 10, "one output line per input line");
    assert_eq!(lines[0]["id"], 1);
    assert!(lines[0]["label"].is_string());
    for (index, needle) in [
        (1, "invalid JSON"),
        (2, "missing"),
        (3, "UTF-8"),
        (4, "array"),
        (5, "number"),
        (6, "null"),
        (7, "blank"),
    ] {
        assert_eq!(lines[index]["line"], index as u64 + 1);
        let error = lines[index]["error"].as_str().unwrap();
        assert!(error.contains(needle), "line {}: {error}", index + 1);
    }
    assert_eq!(lines[8]["id"], 9);
    assert_eq!(lines[8]["meta"]["k"][0], 1);
    assert!(lines[8]["scores"].is_object());
    assert!(lines[9]["label"].is_string(), "an empty text is classified");
    assert!(stderr(&output).contains("7 of 10 lines"));
}

#[test]
fn batch_results_do_not_depend_on_batching() {
    let texts = [
        "a",
        "a much longer sentence than the others here",
        "mid length one",
        "z",
    ];
    let input: String = texts
        .iter()
        .map(|t| format!("{{\"text\":\"{t}\"}}\n"))
        .collect();
    let scores_with = |batch_size: &str| -> Vec<Value> {
        let output = sentiment(
            &["-m", &tiny(), "batch", "--batch-size", batch_size],
            input.as_bytes(),
        );
        assert_eq!(output.status.code(), Some(0));
        stdout_lines(&output)
    };
    let one = scores_with("1");
    let many = scores_with("3");
    for ((a, b), text) in one.iter().zip(&many).zip(texts) {
        assert_eq!(a["text"], text, "input order is kept");
        assert_eq!(a["label"], b["label"]);
        let (x, y) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-5);
    }
}

#[test]
fn batch_text_mode_and_custom_field() {
    let output = sentiment(
        &["-m", &tiny(), "batch", "--input", "text"],
        b"plain one\n{\"not\":\"json\"}\n",
    );
    let lines = stdout_lines(&output);
    assert_eq!(lines[1]["text"], "{\"not\":\"json\"}");
    let output = sentiment(
        &["-m", &tiny(), "batch", "--field", "review"],
        b"{\"review\":\"ok\"}\n",
    );
    assert!(stdout_lines(&output)[0]["label"].is_string());
}

#[test]
fn batch_reads_a_file_argument() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, "{\"text\":\"x\"}\n{\"text\":\"y\"}\n").unwrap();
    let output = sentiment(&["-m", &tiny(), "batch", path.to_str().unwrap()], b"");
    assert_eq!(stdout_lines(&output).len(), 2);
    let missing = sentiment(&["-m", &tiny(), "batch", "/no/such/file.jsonl"], b"");
    assert_eq!(missing.status.code(), Some(6));
    assert!(stderr(&missing).contains("/no/such/file.jsonl"));
}

#[test]
fn broken_pipe_is_a_quiet_exit() {
    let mut child = Command::new(binary())
        .args(["-m", &tiny(), "batch", "--input", "text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close our end of stdout before the program writes anything.
    drop(child.stdout.take());
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all("some text\n".repeat(2000).as_bytes());
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}

#[test]
fn model_errors_name_the_file_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(tiny_model_dir().join(name), model_dir.join(name)).unwrap();
    }
    let run = || sentiment(&["-m", model_dir.to_str().unwrap(), "predict", "x"], b"");

    std::fs::write(model_dir.join("config.json"), "{not json").unwrap();
    let output = run();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("config.json"),
        "{}",
        stderr(&output)
    );

    std::fs::copy(
        tiny_model_dir().join("config.json"),
        model_dir.join("config.json"),
    )
    .unwrap();
    let weights = std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap();
    std::fs::write(
        model_dir.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let output = run();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("model.safetensors"),
        "{}",
        stderr(&output)
    );

    std::fs::remove_file(model_dir.join("model.safetensors")).unwrap();
    let output = run();
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("model.safetensors"));

    let output = sentiment(&["-m", "/no/such/model/dir", "predict", "x"], b"");
    assert_eq!(output.status.code(), Some(3));
}

/// A device that is not built in, or that a CUDA build cannot open (no
/// GPU: CI's CUDA build runs against a stub driver), exits 5.
#[test]
fn devices_that_cannot_open_exit_5() {
    if std::env::var_os("SENTIMENT_TEST_CUDA").is_some() {
        return; // a GPU is there: tests/devices.rs uses it
    }
    let output = sentiment(&["-m", &tiny(), "--device", "cuda", "predict", "x"], b"");
    assert_eq!(output.status.code(), Some(5));
    assert!(stderr(&output).to_lowercase().contains("cuda"));
    let output = sentiment(&["-m", &tiny(), "--device", "tpu", "predict", "x"], b"");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["predict", "--no-such-flag"],
        vec!["batch", "--batch-size", "0"],
        vec!["--threads", "0", "predict", "x"],
    ] {
        let output = sentiment(&args, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn threads_flag_is_accepted() {
    let output = sentiment(&["-m", &tiny(), "--threads", "1", "predict", "x"], b"");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn help_documents_the_exit_codes() {
    let output = sentiment(&["--help"], b"");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Exit codes:") && text.contains("130"));
}

#[test]
fn completions_and_man_page_come_from_the_real_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = sentiment(&["completions", shell], b"");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains("long-text"), "{shell}");
    }
    let man = sentiment(&["man"], b"");
    assert_eq!(man.status.code(), Some(0), "{}", stderr(&man));
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.starts_with(".ie") && page.contains(".TH sentiment 1"));
    assert!(page.contains("batch") && page.contains("bench"));
    // One page covers every subcommand's flags, and points to no page
    // that does not exist (such as sentiment-predict(1)).
    for (section, flag) in [
        ("SENTIMENT PREDICT", "top\\-k"),
        ("SENTIMENT BATCH", "resume"),
        ("SENTIMENT BENCH", "batch\\-sizes"),
        ("SENTIMENT SERVE", "max\\-batch\\-tokens"),
    ] {
        let at = page.find(&format!(".SH \"{section}\"")).expect(section);
        assert!(page[at..].contains(flag), "{section}: {flag}");
    }
    assert!(
        !page.contains("sentiment\\-predict(1)"),
        "a dangling page reference"
    );
    assert_eq!(
        sentiment(&["completions", "tcsh"], b"").status.code(),
        Some(2)
    );
}

/// A reader that goes away after one line gets a quiet exit, here too:
/// clap_complete panics when its writer fails, so the script is built in
/// memory first.
#[test]
fn completions_into_a_closed_pipe_exit_quietly() {
    let mut child = sentiment_command(&["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}

/// `--precision` picks one precision outside `bench`, which compares a list;
/// `--quantize int8` is its alias and may not contradict it.
#[test]
fn precision_lists_are_for_bench_only() {
    let tiny = tiny_model_dir();
    let tiny = tiny.to_str().unwrap();
    for args in [
        vec!["-m", tiny, "--precision", "f32,int8", "predict", "x"],
        vec![
            "-m",
            tiny,
            "--quantize",
            "int8",
            "--precision",
            "f32",
            "predict",
            "x",
        ],
    ] {
        let output = sentiment_command(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--precision"));
    }
    let output = sentiment_command(&["-m", tiny, "--precision", "int8", "predict", "--json", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}

/// int8 without any of our int8 kernels (here: `SENTIMENT_KERNELS=generic`,
/// candle's device-generic ops, as on a CPU without AVX2) works, with a
/// label, but warns that it is slower than f32. On our kernels it runs
/// quietly: AVX-512 VNNI, and AVX2 (`SENTIMENT_KERNELS=portable`, what a
/// CPU without AVX-512 runs), whose scores are VNNI's to rounding.
#[cfg(target_arch = "x86_64")]
#[test]
fn int8_without_an_int8_kernel_runs_and_says_it_is_slower() {
    let tiny = tiny_model_dir();
    let tiny = tiny.to_str().unwrap();
    let args = [
        "-m",
        tiny,
        "--precision",
        "int8",
        "predict",
        "--json",
        "a fine film",
    ];
    let run = |kernels: Option<&str>| {
        let mut command = sentiment_command(&args);
        match kernels {
            Some(kernels) => command.env("SENTIMENT_KERNELS", kernels),
            None => command.env_remove("SENTIMENT_KERNELS"),
        };
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let line: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (line, stderr(&output))
    };
    let (generic, warning) = run(Some("generic"));
    assert!(generic["label"].is_string(), "{generic}");
    assert!(warning.contains("no int8 kernel") && warning.contains("slower than f32"));
    assert_eq!(warning.lines().count(), 1, "{warning}");
    let avx2 =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    let vnni = std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw");
    if avx2 {
        let (portable, warning) = run(Some("portable"));
        assert!(warning.is_empty(), "{warning}");
        if vnni {
            let (native, warning) = run(None);
            assert!(warning.is_empty(), "{warning}");
            assert_eq!(portable["label"], native["label"]);
            for (label, score) in native["scores"].as_object().unwrap() {
                let other = portable["scores"][label].as_f64().unwrap();
                assert!(
                    (score.as_f64().unwrap() - other).abs() < 1e-4,
                    "{portable} vs {native}"
                );
            }
        }
    }
}

/// `--precision bf16` on a CPU without AVX512_BF16 runs f32 (the same
/// output, byte for byte) and says so on stderr; with it, it runs bf16
/// with the same label here, and says so only where bf16 measured no
/// faster than f32 at load.
#[test]
fn bf16_without_a_bf16_kernel_says_so_and_runs_f32() {
    let tiny = tiny_model_dir();
    let tiny = tiny.to_str().unwrap();
    let run = |precision: &str| {
        let output = sentiment_command(&[
            "-m",
            tiny,
            "--precision",
            precision,
            "predict",
            "--json",
            "a fine film",
        ])
        .env_remove("SENTIMENT_BF16")
        .output()
        .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        output
    };
    let (f32_run, bf16_run) = (run("f32"), run("bf16"));
    #[cfg(target_arch = "x86_64")]
    let native = std::arch::is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    let native = false;
    if native {
        // Quiet, or (where the start-up probe measured bf16 no faster than
        // f32: a measurement, so either can happen) one line saying so.
        let warning = stderr(&bf16_run);
        assert!(
            warning.is_empty()
                || (warning.lines().count() == 1
                    && warning.contains("measured no faster than f32")),
            "{warning}"
        );
        let label = |out: &std::process::Output| {
            let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            line["label"].clone()
        };
        assert_eq!(label(&f32_run), label(&bf16_run));
    } else {
        assert_eq!(f32_run.stdout, bf16_run.stdout);
        let warning = stderr(&bf16_run);
        assert!(
            warning.contains("AVX512_BF16") && warning.contains("running f32"),
            "{warning}"
        );
    }
}

/// A flag that would have no effect in the combination given is a usage
/// error (exit 2) naming it, not silently ignored: `--revision` with a
/// local folder or the bundled model, `--field` with `--input text`, and
/// `bench --plot` into a file not named .svg (it writes SVG). Each ran and
/// exited 0 before.
#[test]
fn flags_without_effect_are_usage_errors() {
    let tiny = tiny_model_dir();
    let tiny = tiny.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("chart.png");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["-m", tiny, "--revision", "v1", "predict", "x"],
            "--revision",
        ),
        (vec!["--revision", "v1", "predict", "x"], "--revision"),
        (
            vec!["-m", "bundled", "--revision", "main", "predict", "x"],
            "--revision",
        ),
        (
            vec!["-m", tiny, "batch", "--input", "text", "--field", "review"],
            "--field",
        ),
        (
            vec![
                "-m",
                tiny,
                "bench",
                "--runs",
                "1",
                "--plot",
                png.to_str().unwrap(),
            ],
            "--plot",
        ),
    ];
    for (args, flag) in cases {
        let output = run_with_stdin(sentiment_command(&args), b"a line\n");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(flag),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert!(!png.exists());
}

/// A closed stdout (`>&-`) loses every result: an I/O error (exit 6), not
/// a success (std's stdout swallows EBADF, so it exited 0).
#[cfg(unix)]
#[test]
fn a_closed_stdout_is_an_error_not_a_success() {
    use std::os::unix::process::CommandExt;
    let mut command = sentiment_command(&["predict", "a fine film"]);
    // SAFETY: close(1) in the child between fork and exec; no allocation.
    unsafe {
        command.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let output = command
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(stderr(&output).contains("stdout"), "{}", stderr(&output));
}

/// /dev/null opened read-write (Python's `subprocess.DEVNULL`) is a
/// stdout that discards results, not a closed one: exit 0. (It was taken
/// for the /dev/null std puts in place of a closed descriptor, exit 6.)
#[cfg(unix)]
#[test]
fn dev_null_read_write_as_stdout_is_not_a_closed_stdout() {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let output = sentiment_command(&["predict", "a fine film"])
        .stdout(std::process::Stdio::from(null))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
