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

mod cache;
mod transfer;

pub use cache::from_cache;
use cache::Snapshot;
pub use transfer::Progress;
use transfer::{download_file, DownloadError};

use super::files::{FileBytes, HubTimeouts, ModelFiles, TokenizerFiles, Weights};
use super::local::{CONFIG_FILE, PYTORCH_FILE, SAFETENSORS_FILE};
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
    let offline = offline();
    if let Some(files) = from_cache(&cache_dir, repo_id, revision, offline)? {
        return Ok(files);
    }
    let id = format!("{repo_id}@{revision}");
    if offline {
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

/// The model's files from the hub: config.json first, which resolves the
/// revision to a commit (recorded in refs/<revision>), then the rest at
/// that commit, so that every file comes from one snapshot. The tokenizer
/// and the weights are the first candidates the repo has; each one it
/// lacks is marked absent in the cache, as huggingface_hub marks it, so a
/// later run needs no request. Nothing else is fetched: not the other
/// frameworks' weights, not `onnx/`.
fn download(
    cache_dir: &Path,
    repo_id: &str,
    revision: &str,
    timeouts: HubTimeouts,
    progress: Progress,
) -> Result<ModelFiles> {
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
    let endpoint = endpoint();
    let failed = |name: &str, err: DownloadError| {
        Error::unavailable(
            format!(
                "cannot download {name} of {repo_id}@{revision} from {endpoint} (check the \
                 network or HF_ENDPOINT, use a model that is already in the HF cache \
                 at {}, or pass --model <folder>)",
                cache_dir.display()
            ),
            Some(err.into()),
        )
    };
    let (config, commit) = download_file(
        &endpoint,
        cache_dir,
        &repo,
        revision,
        CONFIG_FILE,
        timeouts,
        &mut *progress,
    )
    .map_err(|err| failed(CONFIG_FILE, err))?;
    if revision != commit {
        Cache::new(cache_dir.to_path_buf())
            .repo(repo.clone())
            .create_ref(&commit)
            .map_err(|err| failed(CONFIG_FILE, err.into()))?;
    }
    let snapshot = Snapshot::open(cache_dir, repo_id, &commit)?;
    let mut find = |name: &str| -> Result<Option<PathBuf>> {
        match download_file(
            &endpoint,
            cache_dir,
            &repo,
            &commit,
            name,
            timeouts,
            &mut *progress,
        ) {
            Ok((_, answered)) if answered != commit => Err(failed(
                name,
                DownloadError::Corrupt(format!(
                    "asked for commit {commit}, the hub answered for {answered}"
                )),
            )),
            Ok((path, _)) => Ok(Some(path)),
            Err(DownloadError::NotFound) => {
                snapshot
                    .mark_absent(name)
                    .map_err(|err| failed(name, err.into()))?;
                Ok(None)
            }
            Err(err) => Err(failed(name, err)),
        }
    };
    let tokenizer = TokenizerFiles::find(&mut find, || {
        Error::unavailable(
            format!(
                "{repo_id}@{revision} has no tokenizer on the hub: neither tokenizer.json \
                 nor the slow files transformers converts (vocab.txt; vocab.json with \
                 merges.txt; sentencepiece.bpe.model, spm.model or spiece.model)"
            ),
            None,
        )
    })?;
    let weights = match find(SAFETENSORS_FILE)? {
        Some(path) => Weights::Safetensors(path),
        None => match find(PYTORCH_FILE)? {
            Some(path) => Weights::Pytorch(path),
            None => {
                return Err(Error::unavailable(
                    format!(
                        "{repo_id}@{revision} has no PyTorch weights on the hub (neither \
                         {SAFETENSORS_FILE} nor {PYTORCH_FILE})"
                    ),
                    None,
                ))
            }
        },
    };
    Ok(ModelFiles {
        name: repo_id.to_string(),
        config: FileBytes::read(config)?,
        tokenizer,
        weights,
    })
}
