//! A mock HF hub on a local port (files, redirects, faults), and the binary pointed at it.
#![allow(dead_code)]

use crate::common::*;
use sha2::Digest;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub const COMMIT_MAIN: &str = "0123456789abcdef0123456789abcdef01234567";

pub const COMMIT_V2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// What the mock does wrong, if anything.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    None,
    /// Accept connections and never answer.
    Silent,
    /// Send the headers of the whole weights file, half its body, then hang up.
    CutWeights,
    /// Send the weights file with one byte changed.
    CorruptWeights,
}

pub struct MockHub {
    pub address: String,
    pub fault: Arc<Mutex<Fault>>,
    pub stop: Arc<AtomicBool>,
    /// Weight bytes sent, all requests together.
    pub weight_bytes_sent: Arc<Mutex<u64>>,
    /// Every file request, in order: (repo id, revision, file, status).
    pub requests: Arc<Mutex<Vec<Request>>>,
}

/// One `resolve` request the mock answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub repo_id: String,
    pub revision: String,
    pub file: String,
    pub status: u16,
}

/// repo id -> revision -> (commit, file name -> bytes)
pub type Repos = HashMap<String, HashMap<String, (String, HashMap<String, Vec<u8>>)>>;

pub fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".bin") || name.ends_with(".model")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small file's etag: any stable id (the hub sends the git blob sha1).
pub fn small_etag(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes)[..20])
}

impl MockHub {
    pub fn start(repos: Repos) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let hub = Self {
            address: address.clone(),
            fault: Arc::new(Mutex::new(Fault::None)),
            stop: Arc::new(AtomicBool::new(false)),
            weight_bytes_sent: Arc::new(Mutex::new(0)),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let (fault, stop, sent, log) = (
            Arc::clone(&hub.fault),
            Arc::clone(&hub.stop),
            Arc::clone(&hub.weight_bytes_sent),
            Arc::clone(&hub.requests),
        );
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (repos, fault, sent, address, log) = (
                    Arc::clone(&repos),
                    *fault.lock().unwrap(),
                    Arc::clone(&sent),
                    address.clone(),
                    Arc::clone(&log),
                );
                std::thread::spawn(move || serve(stream, &repos, fault, &sent, &address, &log));
            }
        });
        hub
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Stops answering: later connections are refused.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address.trim_start_matches("http://"));
    }

    /// The files asked for (probes included), as (revision, file, status).
    pub fn requests_for(&self, repo_id: &str) -> Vec<(String, String, u16)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.repo_id == repo_id)
            .map(|r| (r.revision.clone(), r.file.clone(), r.status))
            .collect()
    }
}

pub fn serve(
    mut stream: TcpStream,
    repos: &Repos,
    fault: Fault,
    sent: &Mutex<u64>,
    address: &str,
    log: &Mutex<Vec<Request>>,
) {
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
    // The revision is one path segment: `refs/pr/1` comes as `refs%2Fpr%2F1`.
    let revision = parts[3].replace("%2F", "/").replace("%2f", "/");
    let status = |code: u16| {
        log.lock().unwrap().push(Request {
            repo_id: repo_id.clone(),
            revision: revision.clone(),
            file: parts[4].to_string(),
            status: code,
        })
    };
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
        status(404);
        return respond(
            &mut stream,
            "404 Not Found",
            &[("x-error-code".into(), "RepositoryNotFound".into())],
            b"",
        );
    };
    let found = revisions
        .get(&revision)
        .or_else(|| revisions.values().find(|(commit, _)| *commit == revision));
    let Some((commit, files)) = found else {
        status(404);
        return respond(
            &mut stream,
            "404 Not Found",
            &[("x-error-code".into(), "RevisionNotFound".into())],
            b"",
        );
    };
    let Some(bytes) = files.get(parts[4]) else {
        status(404);
        return respond(
            &mut stream,
            "404 Not Found",
            &[
                ("x-error-code".into(), "EntryNotFound".into()),
                ("x-repo-commit".into(), commit.clone()),
            ],
            b"",
        );
    };
    let mut headers = vec![("x-repo-commit".to_string(), commit.clone())];
    if is_lfs(parts[4]) {
        status(302);
        let sha = hex(&sha2::Sha256::digest(bytes));
        headers.push(("x-linked-etag".into(), format!("\"{sha}\"")));
        headers.push(("x-linked-size".into(), bytes.len().to_string()));
        headers.push(("location".into(), format!("{address}/cdn/{sha}")));
        return respond(&mut stream, "302 Found", &headers, b"");
    }
    status(if range_start.is_some() { 206 } else { 200 });
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

pub fn tiny_files() -> HashMap<String, Vec<u8>> {
    let dir = tiny_model_dir();
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(dir.join(name)).unwrap()))
        .collect()
}

pub fn repos() -> Repos {
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
pub fn hub_command(
    model: &str,
    extra: &[&str],
    endpoint: &str,
    home: &Path,
) -> std::process::Command {
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

pub fn predict_from_hub(model: &str, extra: &[&str], endpoint: &str, home: &Path) -> Output {
    run_with_stdin(hub_command(model, extra, endpoint, home), b"")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn local_prediction() -> String {
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

/// A pseudo-terminal for the binary's stderr: (our end, its end).
pub fn pseudo_terminal() -> (std::fs::File, std::fs::File) {
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
