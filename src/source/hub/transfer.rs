//! One file from the hub into the cache, with ureq: the metadata probe,
//! redirects, timeouts, resumable `.part` files and the size and sha256
//! checks.

use std::path::{Path, PathBuf};

use hf_hub::Repo;

use crate::source::files::{is_revision, HubTimeouts};

/// Progress of one file's download: its name, bytes so far, total bytes.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Why a file could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub(super) enum DownloadError {
    #[error("not found on the hub (HTTP 404)")]
    NotFound,
    #[error("{0}")]
    Http(Box<ureq::Error>),
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the hub's answer lacks {0}")]
    Protocol(&'static str),
    #[error("{0}")]
    Corrupt(String),
}

/// The hub's description of one file at a revision.
#[derive(Debug)]
struct Remote {
    /// Where the bytes are (after the hub's redirects).
    url: String,
    commit: String,
    /// The blob's name in the cache: the git sha1 of a small file, the
    /// sha256 of an LFS file.
    etag: String,
    size: u64,
}

/// A ureq agent with timeouts (hf-hub 0.4.3 builds its agents without any
/// and offers no way in, so the download is ours; the cache layout is the
/// same one hf-hub and huggingface_hub read).
fn agent(redirects: u32, timeouts: HubTimeouts) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .try_proxy_from_env(true)
        .timeout_connect(timeouts.connect)
        .timeout_read(timeouts.read)
        .timeout_write(timeouts.read)
        .redirects(redirects)
        .user_agent(concat!("sentiment/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn call(
    request: ureq::Request,
    timeouts: HubTimeouts,
) -> std::result::Result<ureq::Response, DownloadError> {
    match request.call() {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(404, _)) => Err(DownloadError::NotFound),
        Err(ureq::Error::Transport(transport)) if is_timeout(&transport) => Err(timed_out(
            transport.kind() == ureq::ErrorKind::ConnectionFailed,
            timeouts,
        )),
        Err(err) => Err(DownloadError::Http(Box::new(err))),
    }
}

fn is_timeout(transport: &ureq::Transport) -> bool {
    use std::error::Error as _;
    let mut cause = transport.source();
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return is_io_timeout(io);
        }
        cause = err.source();
    }
    false
}

/// A socket timeout reads as TimedOut or, on Unix, WouldBlock (EAGAIN).
fn is_io_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Which timeout ran out, and its setting.
fn timed_out(connecting: bool, timeouts: HubTimeouts) -> DownloadError {
    DownloadError::TimedOut(if connecting {
        format!(
            "no connection within the hub connect timeout ({} s)",
            timeouts.connect.as_secs()
        )
    } else {
        format!(
            "the hub sent nothing within the hub read timeout ({} s)",
            timeouts.read.as_secs()
        )
    })
}

/// A redirect's target: absolute, or relative to the server of `base`.
fn join(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|scheme| base[scheme + 3..].find('/').map(|p| scheme + 3 + p))
        .unwrap_or(base.len());
    format!(
        "{}/{}",
        &base[..origin_end],
        location.trim_start_matches('/')
    )
}

/// Asks for the first byte, as huggingface_hub does, to learn the commit,
/// etag and size, following the hub's redirects (to a CDN for LFS files).
fn remote(url: &str, timeouts: HubTimeouts) -> std::result::Result<Remote, DownloadError> {
    let agent = agent(0, timeouts);
    let (mut url, mut commit, mut etag, mut linked_size) = (url.to_string(), None, None, None);
    for _ in 0..10 {
        let response = call(agent.get(&url).set("Range", "bytes=0-0"), timeouts)?;
        let header = |name: &str| {
            response
                .header(name)
                .map(|v| v.trim_matches('"').to_string())
        };
        commit = commit.or_else(|| header("x-repo-commit"));
        etag = etag
            .or_else(|| header("x-linked-etag"))
            .or_else(|| header("etag"));
        linked_size = linked_size.or_else(|| header("x-linked-size").and_then(|s| s.parse().ok()));
        if (300..400).contains(&response.status()) {
            let location =
                header("location").ok_or(DownloadError::Protocol("a redirect's location"))?;
            url = join(&url, &location);
            continue;
        }
        let size = header("content-range")
            .and_then(|range| {
                range
                    .rsplit('/')
                    .next()
                    .and_then(|total| total.parse().ok())
            })
            .or(linked_size)
            .ok_or(DownloadError::Protocol("content-range"))?;
        return Ok(Remote {
            url,
            commit: commit.ok_or(DownloadError::Protocol("x-repo-commit"))?,
            etag: etag.ok_or(DownloadError::Protocol("an etag"))?,
            size,
        });
    }
    Err(DownloadError::Protocol("an end to its redirects"))
}

/// An etag usable as a file name in the cache.
fn valid_etag(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= 128
        && etag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Downloads `remote` into `blob`, resuming a `.part` file an interrupted
/// run left, and checks its size (and sha256, for an LFS file) before the
/// blob exists: the cache never holds a file that is not exactly the
/// hub's.
fn fetch_blob(
    remote: &Remote,
    blob: &Path,
    name: &str,
    timeouts: HubTimeouts,
    progress: Progress,
) -> std::result::Result<(), DownloadError> {
    use std::io::{Read, Seek, Write};
    let part = blob.with_file_name(format!("{}.part", remote.etag));
    let lock_path = blob.with_file_name(format!("{}.lock", remote.etag));
    let lock = std::fs::File::create(&lock_path)?;
    lock.lock()?;
    if blob.is_file() {
        return Ok(()); // Another process finished it while we waited.
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&part)?;
    let mut start = file.metadata()?.len();
    if start > remote.size {
        file.set_len(0)?;
        start = 0;
    }
    if start < remote.size {
        let mut request = agent(10, timeouts).get(&remote.url);
        if start > 0 {
            request = request.set("Range", &format!("bytes={start}-"));
        }
        let response = call(request, timeouts)?;
        if start > 0 && response.status() != 206 {
            // The server sent the whole file, not the rest.
            file.set_len(0)?;
            start = 0;
        }
        let mut reader = response.into_reader().take(remote.size - start + 1);
        let mut done = start;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(err) if is_io_timeout(&err) => return Err(timed_out(false, timeouts)),
                Err(err) => return Err(err.into()),
            };
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
            done += n as u64;
            progress(name, done.min(remote.size), remote.size);
        }
        file.flush()?;
    }
    let got = file.metadata()?.len();
    if got != remote.size {
        if got > remote.size {
            std::fs::remove_file(&part)?;
        }
        // A short file stays as .part, for the next run to resume.
        return Err(DownloadError::Corrupt(format!(
            "{name}: received {got} of {} bytes; run again to resume",
            remote.size
        )));
    }
    if remote.etag.len() == 64 && remote.etag.chars().all(|c| c.is_ascii_hexdigit()) {
        use sha2::Digest;
        file.rewind()?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !digest.eq_ignore_ascii_case(&remote.etag) {
            std::fs::remove_file(&part)?;
            return Err(DownloadError::Corrupt(format!(
                "{name}: its sha256 is {digest}, not the {} the hub announced; nothing was cached",
                remote.etag
            )));
        }
    }
    drop(file);
    std::fs::rename(&part, blob)?;
    let _ = std::fs::remove_file(&lock_path);
    Ok(())
}

/// One file of the repo, at `revision` (the user's, or the commit it
/// resolved to), into the cache: blob and snapshot link. Returns the link
/// and the commit the hub answered for.
pub(super) fn download_file(
    endpoint: &str,
    cache_dir: &Path,
    repo: &Repo,
    revision: &str,
    name: &str,
    timeouts: HubTimeouts,
    progress: Progress,
) -> std::result::Result<(PathBuf, String), DownloadError> {
    // The revision as one path segment: `refs/pr/43` is `refs%2Fpr%2F43`,
    // as huggingface_hub quotes it.
    let url = format!(
        "{}/{}/resolve/{}/{name}",
        endpoint.trim_end_matches('/'),
        repo.url(),
        revision.replace('/', "%2F")
    );
    let remote = remote(&url, timeouts)?;
    if !valid_etag(&remote.etag) || !is_revision(&remote.commit) {
        return Err(DownloadError::Protocol("a usable etag and commit"));
    }
    let repo_dir = cache_dir.join(repo.folder_name());
    let blob = repo_dir.join("blobs").join(&remote.etag);
    std::fs::create_dir_all(blob.parent().unwrap_or(&repo_dir))?;
    if !blob.is_file() {
        fetch_blob(&remote, &blob, name, timeouts, progress)?;
    }
    let snapshot = repo_dir.join("snapshots").join(&remote.commit);
    std::fs::create_dir_all(&snapshot)?;
    let pointer = snapshot.join(name);
    let _ = std::fs::remove_file(&pointer);
    #[cfg(unix)]
    std::os::unix::fs::symlink(Path::new("../../blobs").join(&remote.etag), &pointer)?;
    #[cfg(not(unix))]
    std::fs::copy(&blob, &pointer)?;
    Ok((pointer, remote.commit))
}
