//! Hub downloads end to end, through the real binary, against a mock hub
//! on 127.0.0.1 that speaks the file protocol `HF_ENDPOINT` servers speak:
//! `GET /{owner}/{name}/resolve/{revision}/{file}` with the `Range:
//! bytes=0-0` probe answered by 206 and `content-range`, `etag` or
//! `x-linked-etag`, `x-repo-commit`; LFS files (weights) redirected to a
//! CDN path as the hub does; 404 for what is missing. Faults: a server that
//! never answers, a connection cut mid-file, a body that is not what the
//! etag says.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use sha2::Digest;

const COMMIT_MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT_V2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// What the mock does wrong, if anything.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// Accept connections and never answer.
    Silent,
    /// Send the headers of the whole weights file, half its body, then hang up.
    CutWeights,
    /// Send the weights file with one byte changed.
    CorruptWeights,
}

struct MockHub {
    address: String,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
    /// Weight bytes sent, all requests together.
    weight_bytes_sent: Arc<Mutex<u64>>,
}

/// repo id -> revision -> (commit, file name -> bytes)
type Repos = HashMap<String, HashMap<String, (String, HashMap<String, Vec<u8>>)>>;

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".bin")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small file's etag: any stable id (the hub sends the git blob sha1).
fn small_etag(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes)[..20])
}

impl MockHub {
    fn start(repos: Repos) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let hub = Self {
            address: address.clone(),
            fault: Arc::new(Mutex::new(Fault::None)),
            stop: Arc::new(AtomicBool::new(false)),
            weight_bytes_sent: Arc::new(Mutex::new(0)),
        };
        let (fault, stop, sent) = (
            Arc::clone(&hub.fault),
            Arc::clone(&hub.stop),
            Arc::clone(&hub.weight_bytes_sent),
        );
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (repos, fault, sent, address) = (
                    Arc::clone(&repos),
                    *fault.lock().unwrap(),
                    Arc::clone(&sent),
                    address.clone(),
                );
                std::thread::spawn(move || serve(stream, &repos, fault, &sent, &address));
            }
        });
        hub
    }

    fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Stops answering: later connections are refused.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address.trim_start_matches("http://"));
    }
}

fn serve(mut stream: TcpStream, repos: &Repos, fault: Fault, sent: &Mutex<u64>, address: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_start = value
                .split('-')
                .next()
                .and_then(|s| s.trim().parse::<u64>().ok());
        }
    }
    if fault == Fault::Silent {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let respond =
        |stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| {
            let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        };
    // The CDN: /cdn/<sha256>, serving any LFS blob by its hash.
    if parts.len() == 2 && parts[0] == "cdn" {
        let blob = repos
            .values()
            .flat_map(|revs| revs.values())
            .flat_map(|(_, files)| files.values())
            .find(|bytes| hex(&sha2::Sha256::digest(bytes)) == parts[1]);
        let Some(blob) = blob else {
            return respond(&mut stream, "404 Not Found", &[], b"");
        };
        let mut body = blob.clone();
        if fault == Fault::CorruptWeights {
            body[0] ^= 0xff;
        }
        let start = range_start.unwrap_or(0).min(body.len() as u64) as usize;
        let total = body.len();
        let headers = vec![(
            "content-range".to_string(),
            format!("bytes {start}-{}/{total}", total.saturating_sub(1)),
        )];
        let status = if range_start.is_some() {
            "206 Partial Content"
        } else {
            "200 OK"
        };
        let slice = &body[start..];
        // `bytes=0-0` is the metadata probe (a download from byte 0 sends no
        // Range): it gets one byte.
        let slice = if range_start == Some(0) {
            &slice[..1.min(slice.len())]
        } else {
            slice
        };
        if fault == Fault::CutWeights && slice.len() > 1 {
            let head = format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                slice.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let half = slice.len() / 2;
            let _ = stream.write_all(&slice[..half]);
            *sent.lock().unwrap() += half as u64;
            return; // Hang up mid-body.
        }
        if slice.len() > 1 {
            *sent.lock().unwrap() += slice.len() as u64;
        }
        return respond(&mut stream, status, &headers, slice);
    }
    // /{owner}/{name}/resolve/{revision}/{file}
    if parts.len() != 5 || parts[2] != "resolve" {
        return respond(&mut stream, "404 Not Found", &[], b"");
    }
    let repo_id = format!("{}/{}", parts[0], parts[1]);
    if repo_id == "renamed/tiny" {
        // A renamed repo: the hub answers with a relative redirect.
        let location = format!("/owner/tiny/resolve/{}/{}", parts[3], parts[4]);
        return respond(
            &mut stream,
            "307 Temporary Redirect",
            &[("location".into(), location)],
            b"",
        );
    }
    let Some(revisions) = repos.get(&repo_id) else {
        return respond(
            &mut stream,
            "404 Not Found",
            &[("x-error-code".into(), "RepositoryNotFound".into())],
            b"",
        );
    };
    let revision = parts[3];
    let found = revisions
        .get(revision)
        .or_else(|| revisions.values().find(|(commit, _)| commit == revision));
    let Some((commit, files)) = found else {
        return respond(
            &mut stream,
            "404 Not Found",
            &[("x-error-code".into(), "RevisionNotFound".into())],
            b"",
        );
    };
    let Some(bytes) = files.get(parts[4]) else {
        return respond(
            &mut stream,
            "404 Not Found",
            &[("x-error-code".into(), "EntryNotFound".into())],
            b"",
        );
    };
    let mut headers = vec![("x-repo-commit".to_string(), commit.clone())];
    if is_lfs(parts[4]) {
        let sha = hex(&sha2::Sha256::digest(bytes));
        headers.push(("x-linked-etag".into(), format!("\"{sha}\"")));
        headers.push(("x-linked-size".into(), bytes.len().to_string()));
        headers.push(("location".into(), format!("{address}/cdn/{sha}")));
        return respond(&mut stream, "302 Found", &headers, b"");
    }
    headers.push(("etag".into(), format!("\"{}\"", small_etag(bytes))));
    let total = bytes.len();
    match range_start {
        Some(start) => {
            let start = (start as usize).min(total);
            let end = if start == 0 { 1.min(total) } else { total };
            headers.push((
                "content-range".into(),
                format!("bytes {start}-{}/{total}", end.saturating_sub(1)),
            ));
            respond(
                &mut stream,
                "206 Partial Content",
                &headers,
                &bytes[start..end.max(start)],
            );
        }
        None => respond(&mut stream, "200 OK", &headers, bytes),
    }
}

fn tiny_files() -> HashMap<String, Vec<u8>> {
    let dir = tiny_model_dir();
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(dir.join(name)).unwrap()))
        .collect()
}

fn repos() -> Repos {
    let mut pth = tiny_files();
    pth.remove("model.safetensors");
    let pth_dir = fixture("tiny-distilbert-pth");
    pth.insert(
        "pytorch_model.bin".into(),
        std::fs::read(pth_dir.join("pytorch_model.bin")).unwrap(),
    );
    HashMap::from([
        (
            "owner/tiny".to_string(),
            HashMap::from([
                ("main".to_string(), (COMMIT_MAIN.to_string(), tiny_files())),
                ("v2".to_string(), (COMMIT_V2.to_string(), tiny_files())),
            ]),
        ),
        (
            "owner/tiny-pth".to_string(),
            HashMap::from([("main".to_string(), (COMMIT_MAIN.to_string(), pth))]),
        ),
    ])
}

/// `sentiment -m <model> predict --json "a good film"` against `endpoint`
/// with `home` as HF_HOME.
/// `sentiment -m <model> [extra] predict --json "a good film"` against
/// `endpoint` with `home` as HF_HOME, online, with 3 s timeouts.
fn hub_command(model: &str, extra: &[&str], endpoint: &str, home: &Path) -> std::process::Command {
    let mut args = vec!["-m", model];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["predict", "--json", "a good film"]);
    let mut command = sentiment_command(&args);
    command
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint)
        .env("SENTIMENT_HUB_READ_TIMEOUT", "3")
        .env("SENTIMENT_HUB_CONNECT_TIMEOUT", "3");
    command
}

fn predict(model: &str, extra: &[&str], endpoint: &str, home: &Path) -> Output {
    run_with_stdin(hub_command(model, extra, endpoint, home), b"")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn local_prediction() -> String {
    let output = run_with_stdin(
        sentiment_command(&[
            "-m",
            tiny_model_dir().to_str().unwrap(),
            "predict",
            "--json",
            "a good film",
        ]),
        b"",
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn downloads_into_the_standard_cache_and_then_needs_no_network() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    let output = predict("owner/tiny", &[], &hub.address, home.path());
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
    let again = predict("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), local_prediction());
}

#[test]
fn revisions_by_branch_and_by_commit() {
    let hub = MockHub::start(repos());
    let home = tempfile::tempdir().unwrap();
    for revision in ["v2", COMMIT_MAIN] {
        let output = predict(
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
    let output = predict("renamed/tiny", &[], &hub.address, home.path());
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
    let output = predict("owner/tiny-pth", &[], &hub.address, home.path());
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

    let output = predict("owner/nothing", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("config.json") && stderr(&output).contains("404"),
        "{}",
        stderr(&output)
    );
}

/// A server that accepts and never answers: the download fails (exit 4)
/// with a message that names the timeout and its setting. It said
/// `Network Error: Network Error: ...` before.
#[test]
fn a_server_that_never_answers_times_out() {
    let hub = MockHub::start(repos());
    hub.set_fault(Fault::Silent);
    let home = tempfile::tempdir().unwrap();
    let output = predict("owner/tiny", &[], &hub.address, home.path());
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
    let output = predict("owner/tiny", &[], &hub.address, home.path());
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
    let output = predict("owner/tiny", &[], &hub.address, home.path());
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
    let output = predict("owner/tiny", &[], &hub.address, home.path());
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("sha256"), "{}", stderr(&output));
    let blobs = home.path().join("hub/models--owner--tiny/blobs");
    let weights = std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap();
    let sha = hex(&sha2::Sha256::digest(&weights));
    assert!(!blobs.join(&sha).exists() && !blobs.join(format!("{sha}.part")).exists());
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

/// A pseudo-terminal for the binary's stderr: (our end, its end).
fn pseudo_terminal() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt has no preconditions; the result is checked.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(master >= 0, "no pseudo-terminal");
    let mut name = [0 as libc::c_char; 256];
    // SAFETY: `master` is an open pty master; `name` is a writable buffer of
    // the length passed, which ptsname_r NUL-terminates on success.
    unsafe {
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: `master` is an open descriptor that nothing else owns.
    let master = unsafe { std::fs::File::from_raw_fd(master) };
    (master, slave)
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
