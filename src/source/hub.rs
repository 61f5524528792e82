//! Models from the HuggingFace hub, in its standard cache.
//!
//! The cache is read first (through `hf-hub`) and, when it holds the model,
//! the network is never touched. HF_HUB_CACHE, HF_HOME and HF_HUB_OFFLINE
//! mean what they mean to the Python `huggingface_hub` library; HF_ENDPOINT
//! picks a mirror.
//!
//! Downloads speak the hub's file protocol themselves, with ureq: hf-hub
//! 0.4.3's client has no timeouts (a server that never answers hangs it
//! forever) and checks neither size nor sha256. Here a connection and each
//! read time out (10 s and 30 s, see [`HubTimeouts`]), a file is
//! written to `blobs/<etag>.part` and becomes `blobs/<etag>` only once its
//! size and (for LFS files) sha256 match what the hub announced, and an
//! interrupted download resumes from its `.part` on the next run.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use super::files::{FileBytes, HubTimeouts, ModelFiles, Weights};
use super::local::{CONFIG_FILE, PYTORCH_FILE, SAFETENSORS_FILE, TOKENIZER_FILE};
use crate::error::{Error, Result};

/// The hub cache folder: HF_HUB_CACHE, else HF_HOME/hub, else
/// ~/.cache/huggingface/hub, in the order huggingface_hub uses.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = non_empty_env("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    Cache::default().path().clone()
}

/// HF_HUB_OFFLINE set to a true value, as huggingface_hub reads it.
pub fn offline() -> bool {
    non_empty_env("HF_HUB_OFFLINE")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The hub's address: HF_ENDPOINT (a mirror), else huggingface.co.
fn endpoint() -> String {
    non_empty_env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The model's files from the cache or, failing that, downloaded into it,
/// reporting each file's progress.
pub fn fetch(
    repo_id: &str,
    revision: &str,
    timeouts: &HubTimeouts,
    progress: Progress,
) -> Result<ModelFiles> {
    let cache_dir = cache_dir();
    if let Some(files) = from_cache(&cache_dir, repo_id, revision)? {
        return Ok(files);
    }
    let id = format!("{repo_id}@{revision}");
    if offline() {
        return Err(Error::unavailable(
            format!(
                "model {id} is not in the HF cache ({}) and HF_HUB_OFFLINE is set; \
                 download it once with network access, or pass --model <folder>",
                cache_dir.display()
            ),
            None,
        ));
    }
    download(&cache_dir, repo_id, revision, *timeouts, progress)
}

/// A snapshot entry that is a link which cannot be followed (a loop, a
/// missing blob): a damaged cache, said as such rather than taken for a
/// model that was never downloaded.
fn check_link(repo_dir: &Path, entry: &Path) -> Result<()> {
    let is_link = entry
        .symlink_metadata()
        .is_ok_and(|meta| meta.file_type().is_symlink());
    match std::fs::metadata(entry) {
        Err(err) if is_link => Err(Error::model(
            entry,
            format!(
                "a link in the HF cache that cannot be followed ({err}); delete {} and \
                 download the model again",
                repo_dir.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// The cached snapshot, if it holds a config, a tokenizer and weights.
pub fn from_cache(cache_dir: &Path, repo_id: &str, revision: &str) -> Result<Option<ModelFiles>> {
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
    let repo_dir = cache_dir.join(repo.folder_name());
    let snapshots = repo_dir.join("snapshots");
    // The snapshot refs/<revision> names, as hf-hub and huggingface_hub
    // find it; a commit hash has no ref, but its snapshot folder is named
    // after it.
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    for name in [CONFIG_FILE, TOKENIZER_FILE, SAFETENSORS_FILE, PYTORCH_FILE] {
        check_link(&repo_dir, &snapshots.join(&commit).join(name))?;
    }
    let find = |name: &str| {
        Some(snapshots.join(&commit).join(name))
            .filter(|p| p.exists())
            .or_else(|| Some(snapshots.join(revision).join(name)).filter(|p| p.is_file()))
    };
    let (Some(config), Some(tokenizer)) = (find(CONFIG_FILE), find(TOKENIZER_FILE)) else {
        return Ok(None);
    };
    let weights = match (find(SAFETENSORS_FILE), find(PYTORCH_FILE)) {
        (Some(path), _) => Weights::Safetensors(path),
        (None, Some(path)) => Weights::Pytorch(path),
        (None, None) => return Ok(None),
    };
    Ok(Some(ModelFiles {
        name: repo_id.to_string(),
        config: FileBytes::read(config)?,
        tokenizer: FileBytes::read(tokenizer)?,
        weights,
    }))
}

/// Progress of one file's download: its name, bytes so far, total bytes.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Why a file could not be downloaded.
#[derive(Debug, thiserror::Error)]
enum DownloadError {
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

/// One file of the repo into the cache: blob, snapshot link and ref.
fn download_file(
    cache_dir: &Path,
    repo: &Repo,
    name: &str,
    timeouts: HubTimeouts,
    progress: Progress,
) -> std::result::Result<PathBuf, DownloadError> {
    let endpoint = endpoint();
    let url = format!(
        "{}/{}/resolve/{}/{name}",
        endpoint.trim_end_matches('/'),
        repo.url(),
        repo.url_revision()
    );
    let remote = remote(&url, timeouts)?;
    if !valid_etag(&remote.etag) || !super::files::is_revision(&remote.commit) {
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
    if repo.revision() != remote.commit {
        Cache::new(cache_dir.to_path_buf())
            .repo(repo.clone())
            .create_ref(&remote.commit)?;
    }
    Ok(pointer)
}

fn download(
    cache_dir: &Path,
    repo_id: &str,
    revision: &str,
    timeouts: HubTimeouts,
    progress: Progress,
) -> Result<ModelFiles> {
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
    let mut get = |name: &str| {
        download_file(cache_dir, &repo, name, timeouts, &mut *progress).map_err(|err| {
            let not_found = matches!(err, DownloadError::NotFound);
            let error = Error::unavailable(
                format!(
                    "cannot download {name} of {repo_id}@{revision} from {} (check the \
                     network or HF_ENDPOINT, use a model that is already in the HF cache \
                     at {}, or pass --model <folder>)",
                    endpoint(),
                    cache_dir.display()
                ),
                Some(err.into()),
            );
            (not_found, error)
        })
    };
    let config = get(CONFIG_FILE).map_err(|(_, err)| err)?;
    let tokenizer = get(TOKENIZER_FILE).map_err(|(_, err)| err)?;
    let weights = match get(SAFETENSORS_FILE) {
        Ok(path) => Weights::Safetensors(path),
        Err((true, _)) => Weights::Pytorch(get(PYTORCH_FILE).map_err(|(_, err)| err)?),
        Err((false, err)) => return Err(err),
    };
    Ok(ModelFiles {
        name: repo_id.to_string(),
        config: FileBytes::read(config)?,
        tokenizer: FileBytes::read(tokenizer)?,
        weights,
    })
}
