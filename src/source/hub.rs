//! Models from the HuggingFace hub, through `hf-hub` and its standard cache.
//!
//! The cache is read first and, when it holds the model, the network is
//! never touched. HF_HUB_CACHE, HF_HOME and HF_HUB_OFFLINE mean what they
//! mean to the Python `huggingface_hub` library; HF_ENDPOINT picks a mirror.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::local::{CONFIG_FILE, PYTORCH_FILE, SAFETENSORS_FILE, TOKENIZER_FILE};
use super::{FileBytes, ModelFiles, Weights};
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

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The model's files from the cache or, failing that, downloaded into it.
pub fn fetch(repo_id: &str, revision: &str) -> Result<ModelFiles> {
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
    download(&cache_dir, repo_id, revision)
}

/// The cached snapshot, if it holds a config, a tokenizer and weights.
pub fn from_cache(cache_dir: &Path, repo_id: &str, revision: &str) -> Result<Option<ModelFiles>> {
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
    let cached = Cache::new(cache_dir.to_path_buf()).repo(repo.clone());
    // hf-hub finds files through refs/<revision>; a commit hash has no ref,
    // but its snapshot folder is named after it.
    let snapshot = cache_dir
        .join(repo.folder_name())
        .join("snapshots")
        .join(revision);
    let find = |name: &str| {
        cached
            .get(name)
            .or_else(|| Some(snapshot.join(name)).filter(|p| p.is_file()))
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

fn download(cache_dir: &Path, repo_id: &str, revision: &str) -> Result<ModelFiles> {
    let mut builder = ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf()))
        .with_progress(std::io::stderr().is_terminal());
    if let Some(endpoint) = non_empty_env("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    let unavailable = |what: String, err: hf_hub::api::sync::ApiError| {
        Error::unavailable(
            format!(
                "{what} (check the network or HF_ENDPOINT, use a model that is already \
                 in the HF cache at {}, or pass --model <folder>)",
                cache_dir.display()
            ),
            Some(err.into()),
        )
    };
    let api = builder
        .build()
        .map_err(|err| unavailable("cannot start the hub client".into(), err))?;
    let repo = api.repo(Repo::with_revision(
        repo_id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let get = |name: &str| {
        repo.get(name).map_err(|err| {
            let not_found = matches!(&err, hf_hub::api::sync::ApiError::RequestError(e)
                if matches!(**e, ureq::Error::Status(404, _)));
            (
                not_found,
                unavailable(
                    format!("cannot download {name} of {repo_id}@{revision}"),
                    err,
                ),
            )
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
