//! Hub ids resolved through a local HF cache, never the network.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use sentiment::source::hub;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Lays out `owner/tiny` the way huggingface_hub does: blobs, a snapshot of
/// symlinks, and refs/main naming the commit.
fn fake_cache(root: &Path) {
    let repo = root.join("models--owner--tiny");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    for (i, name) in ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .enumerate()
    {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(tiny_model_dir().join(name), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(name)).unwrap();
    }
}

#[test]
fn resolves_a_cached_repo_by_branch_and_by_commit() {
    let cache = tempfile::tempdir().unwrap();
    fake_cache(cache.path());
    let files = hub::from_cache(cache.path(), "owner/tiny", "main", true)
        .unwrap()
        .unwrap();
    assert_eq!(files.name, "owner/tiny");
    assert!(files.weights.origin().ends_with("model.safetensors"));
    let by_commit = hub::from_cache(cache.path(), "owner/tiny", COMMIT, true).unwrap();
    assert!(by_commit.is_some());
    assert!(hub::from_cache(cache.path(), "owner/other", "main", true)
        .unwrap()
        .is_none());
    assert!(hub::from_cache(cache.path(), "owner/tiny", "v2", true)
        .unwrap()
        .is_none());
    // Online, a snapshot that never asked whether the repo has a
    // tokenizer_config.json is incomplete: the hub is asked once.
    assert!(hub::from_cache(cache.path(), "owner/tiny", "main", false)
        .unwrap()
        .is_none());
    let no_exist = cache
        .path()
        .join("models--owner--tiny/.no_exist")
        .join(COMMIT);
    std::fs::create_dir_all(&no_exist).unwrap();
    std::fs::write(no_exist.join("tokenizer_config.json"), "").unwrap();
    assert!(hub::from_cache(cache.path(), "owner/tiny", "main", false)
        .unwrap()
        .is_some());
}

#[test]
fn the_cli_loads_a_cached_hub_model_offline() {
    let cache = tempfile::tempdir().unwrap();
    fake_cache(cache.path());
    let output = Command::new(binary())
        .args(["-m", "owner/tiny", "predict", "--json", "hello"])
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_exit_code(&output, 0);
    // HF_HOME/hub is the fallback when HF_HUB_CACHE is unset.
    let home = tempfile::tempdir().unwrap();
    fake_cache(&home.path().join("hub"));
    let output = Command::new(binary())
        .args(["-m", "owner/tiny", "predict", "hello"])
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn an_uncached_model_fails_when_offline() {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .args(["-m", "owner/missing", "predict", "hello"])
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not in the HF cache") && stderr.contains("HF_HUB_OFFLINE"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_hub_fails_with_advice() {
    let cache = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback refuses connections at once.
    let output = Command::new(binary())
        .args(["-m", "owner/missing", "predict", "hello"])
        .env("HF_HUB_CACHE", cache.path())
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot download config.json") && stderr.contains("--model"),
        "{stderr}"
    );
}

/// A cached file whose link cannot be followed (a loop, a missing blob,
/// a blob the user may not read through a broken link) is a model error
/// that names the file and the cause, not "not in the HF cache" (which
/// sent the user to download what they had).
#[test]
fn a_broken_link_in_the_cache_is_named_not_called_missing() {
    for breakage in ["loop", "dangling"] {
        let cache = tempfile::tempdir().unwrap();
        fake_cache(cache.path());
        let link = cache
            .path()
            .join("models--owner--tiny/snapshots")
            .join(COMMIT)
            .join("config.json");
        std::fs::remove_file(&link).unwrap();
        match breakage {
            "loop" => std::os::unix::fs::symlink("config.json", &link).unwrap(),
            _ => std::os::unix::fs::symlink("../../blobs/gone", &link).unwrap(),
        }
        let output = Command::new(binary())
            .args(["-m", "owner/tiny", "predict", "hello"])
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{breakage}: {stderr}");
        assert!(stderr.contains("config.json"), "{stderr}");
        assert!(!stderr.contains("not in the HF cache"), "{stderr}");
        assert!(stderr.contains("link"), "{stderr}");
    }
}
