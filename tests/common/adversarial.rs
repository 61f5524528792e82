//! Running the binary on hostile input, optionally under a virtual-memory cap.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A virtual-memory cap far above what the runs below need (~300 MB for
/// the tiny model, ~400 MB for the bundled one), far below what the bugs
/// they cover asked for.
pub const MEMORY_CAP_KB: u64 = 1_000_000;

pub fn tiny() -> String {
    tiny_model_dir().display().to_string()
}

pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(sentiment_command(args), stdin)
}

/// The binary under a virtual-memory cap: an allocation it cannot get is
/// then an abort (code 134), which the tests below rule out.
pub fn run_capped(args: &[&str], stdin: &[u8]) -> Output {
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

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A copy of the tiny model whose config.json and tokenizer.json the
/// callers may rewrite.
pub fn tiny_copy(
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

pub fn assert_clean_exit(output: &Output, code: i32) {
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

/// A pytorch_model.bin (a zip holding `<name>/data.pkl`) with this pickle.
pub fn pytorch_folder(pickle: &[u8]) -> tempfile::TempDir {
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

/// Writes `first` to a running `sentiment` and expects a result line back
/// before stdin is closed: results do not wait for a full window.
pub fn answers_before_end_of_input(args: &[&str], first: &[u8]) {
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
