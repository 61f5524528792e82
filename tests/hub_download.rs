//! Hub downloads end to end, through the real binary, against a mock hub
//! on 127.0.0.1 that speaks the file protocol `HF_ENDPOINT` servers speak:
//! `GET /{owner}/{name}/resolve/{revision}/{file}` with the `Range:
//! bytes=0-0` probe answered by 206 and `content-range`, `etag` or
//! `x-linked-etag`, `x-repo-commit`; LFS files (weights) redirected to a
//! CDN path as the hub does; 404 for what is missing. Faults: a server that
//! never answers, a connection cut mid-file, a body that is not what the
//! etag says.

mod common;
#[path = "common/mock_hub.rs"]
mod mock_hub;

use common::*;
use mock_hub::*;
use sha2::Digest;
use std::collections::HashMap;

#[test]
fn downloads_into_the_standard_cache_and_then_needs_no_network() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let output = predict_from_hub("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        local_prediction()
    );
    let repo = home.path().join("hub/models--owner--tiny");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT_MAIN
    );
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let pointer = repo.join("snapshots").join(COMMIT_MAIN).join(file);
        assert_eq!(
            std::fs::read(&pointer).unwrap(),
            std::fs::read(tiny_model_dir().join(file)).unwrap()
        );
        assert!(std::fs::symlink_metadata(&pointer)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    let sha = hex(&sha2::Sha256::digest(
        std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap(),
    ));
    assert!(repo.join("blobs").join(sha).is_file());

    // The mock is gone: the cached model loads without a request.
    hub.stop();
    let again = predict_from_hub("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), local_prediction());
}

#[test]
fn revisions_by_branch_and_by_commit() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    for revision in ["v2", COMMIT_MAIN] {
        let output = predict_from_hub(
            "owner/tiny",
            &["--revision", revision],
            &hub.address,
            home.path(),
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{revision}: {}",
            stderr(&output)
        );
    }
    let repo = home.path().join("hub/models--owner--tiny");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/v2"))
            .unwrap()
            .trim(),
        COMMIT_V2
    );
    assert!(repo
        .join("snapshots")
        .join(COMMIT_MAIN)
        .join("config.json")
        .is_file());
}

#[test]
fn a_renamed_repo_follows_the_hubs_relative_redirect() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let output = predict_from_hub("renamed/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        local_prediction()
    );
    let snapshot = home
        .path()
        .join("hub/models--renamed--tiny/snapshots")
        .join(COMMIT_MAIN);
    assert!(snapshot.join("model.safetensors").is_file());
}

#[test]
fn a_repo_with_only_pytorch_weights_takes_the_fallback() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let output = predict_from_hub("owner/tiny-pth", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let snapshot = home
        .path()
        .join("hub/models--owner--tiny-pth/snapshots")
        .join(COMMIT_MAIN);
    assert!(snapshot.join("pytorch_model.bin").is_file());
    assert!(!snapshot.join("model.safetensors").exists());
}

#[test]
fn offline_and_missing_repos_are_exit_4_with_a_message() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let mut offline = sentiment_command(&["-m", "owner/tiny", "predict", "x"]);
    offline
        .env("HF_HOME", home.path())
        .env_remove("HF_HUB_CACHE")
        .env("HF_ENDPOINT", &hub.address)
        .env("HF_HUB_OFFLINE", "1");
    let output = run_with_stdin(offline, b"");
    assert_eq!(output.status.code(), Some(4));
    assert!(stderr(&output).contains("HF_HUB_OFFLINE"));
    assert!(!home.path().join("hub/models--owner--tiny").exists());

    let output = predict_from_hub("owner/nothing", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("config.json") && stderr(&output).contains("404"),
        "{}",
        stderr(&output)
    );
}

/// The library reports progress for each downloaded file, ending at its
/// size; the CLI turns this into a bar on a terminal (stdout is untouched:
/// the other tests compare it byte for byte).
#[test]
fn progress_is_reported_per_file_up_to_its_size() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    // The library reads these from the environment, as the CLI does.
    std::env::set_var("HF_ENDPOINT", &hub.address);
    std::env::set_var("HF_HUB_CACHE", home.path());
    std::env::remove_var("HF_HUB_OFFLINE");
    let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
    let spec = sentiment::ModelSpec::parse("owner/tiny", None).unwrap();
    spec.resolve_with_progress(&mut |file, done, total| {
        let entry = seen.entry(file.to_string()).or_insert((0, total));
        assert!(done >= entry.0, "progress went backwards");
        *entry = (done, total);
    })
    .unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let size = std::fs::metadata(tiny_model_dir().join(file))
            .unwrap()
            .len();
        assert_eq!(seen.get(file), Some(&(size, size)), "{file}");
    }
}

/// On a terminal, a download draws a progress bar on stderr, and stdout
/// still carries exactly the results.
#[test]
fn a_terminal_shows_download_progress_and_stdout_stays_clean() {
    use std::io::Read;
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let (mut master, slave) = pseudo_terminal();
    let mut command = hub_command("owner/tiny", &[], &hub.address, home.path());
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(slave);
    let child = command.spawn().unwrap();
    drop(command); // Our copy of the terminal's end, so reads end with the child.
    let terminal = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child's end closes.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        local_prediction()
    );
    let drawn = String::from_utf8_lossy(&terminal.join().unwrap()).into_owned();
    assert!(
        drawn.contains("model.safetensors"),
        "terminal saw: {drawn:?}"
    );
}
