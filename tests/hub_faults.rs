//! Downloads from a hub that misbehaves: silence, a cut connection, a
//! body that does not match its hash, and timeouts set badly.

mod common;
#[path = "common/mock_hub.rs"]
mod mock_hub;

use common::*;
use mock_hub::*;
use sha2::Digest;

/// A server that accepts and never answers: the download fails (exit 4)
/// with a message that names the timeout and its setting. It said
/// `Network Error: Network Error: ...` before.
#[test]
fn a_server_that_never_answers_times_out() {
    let hub = MockHub::start(repos());
    hub.set_fault(Fault::Silent);
    let home = tempfile::tempdir().unwrap();
    let output = predict_from_hub("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let stderr = stderr(&output);
    assert!(stderr.contains("hub read timeout (3 s)"), "{stderr}");
    assert!(!stderr.contains("Network Error"), "{stderr}");
}

/// A hub timeout that is not a whole number of seconds is a usage error
/// (it silently meant the default before).
#[test]
fn a_bad_hub_timeout_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("SENTIMENT_HUB_READ_TIMEOUT", "3s"),
        ("SENTIMENT_HUB_CONNECT_TIMEOUT", "0"),
        ("SENTIMENT_HUB_READ_TIMEOUT", "-1"),
    ] {
        let mut command = hub_command("owner/tiny", &[], "http://127.0.0.1:9", home.path());
        command.env(name, value);
        let output = run_with_stdin(command, b"");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name}={value}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains(name), "{}", stderr(&output));
    }
}

#[test]
fn a_download_cut_mid_file_is_never_trusted_and_resumes() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    hub.set_fault(Fault::CutWeights);
    let output = predict_from_hub("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let repo = home.path().join("hub/models--owner--tiny");
    let weights = std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap();
    let sha = hex(&sha2::Sha256::digest(&weights));
    assert!(
        !repo.join("blobs").join(&sha).exists(),
        "a truncated blob was cached"
    );
    assert!(!repo
        .join("snapshots")
        .join(COMMIT_MAIN)
        .join("model.safetensors")
        .exists());
    let part = repo.join("blobs").join(format!("{sha}.part"));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < weights.len() as u64);

    hub.set_fault(Fault::None);
    let sent_before = *hub.weight_bytes_sent.lock().unwrap();
    let output = predict_from_hub("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        local_prediction()
    );
    // Resumed: only the rest of the file was sent again.
    let resent = *hub.weight_bytes_sent.lock().unwrap() - sent_before;
    assert_eq!(resent, weights.len() as u64 - kept);
    assert!(!part.exists());
}

#[test]
fn a_body_that_does_not_match_its_sha256_is_refused_and_not_cached() {
    let hub = MockHub::start(repos());
    hub.set_fault(Fault::CorruptWeights);
    let home = tempfile::tempdir().unwrap();
    let output = predict_from_hub("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("sha256"), "{}", stderr(&output));
    let blobs = home.path().join("hub/models--owner--tiny/blobs");
    let weights = std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap();
    let sha = hex(&sha2::Sha256::digest(&weights));
    assert!(!blobs.join(&sha).exists() && !blobs.join(format!("{sha}.part")).exists());
}
