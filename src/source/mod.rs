//! Where models come from: the model bundled into the binary, a local
//! folder, or the HuggingFace hub (through its cache). Everything is resolved
//! here into [`ModelFiles`], which the classifier loads without caring where
//! the bytes came from.

pub mod bundled;
mod files;
#[cfg(feature = "hub")]
pub mod hub;
pub mod local;
mod pickle_check;
pub mod weights;

pub use files::{
    is_repo_id, is_revision, FileBytes, HubTimeouts, ModelFiles, TokenizerFiles, Vocabulary,
    Weights, MAX_MODEL_FILE_BYTES, TOKENIZER_VOCABULARIES,
};

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The environment variable that names the default model.
pub const MODEL_ENV: &str = "SENTIMENT_MODEL";

/// The name that selects the bundled model explicitly.
pub const BUNDLED_NAME: &str = "bundled";

/// A model as the user named it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelSpec {
    /// The model compiled into the binary (the default).
    #[default]
    Bundled,
    /// A folder holding config.json, the tokenizer's files and the weights.
    Local(PathBuf),
    /// `owner/name` on the HuggingFace hub, at a revision (branch, tag or commit).
    Hub { repo_id: String, revision: String },
}

impl ModelSpec {
    /// An existing folder wins; then "bundled"; then `owner/name` is a hub id. Anything
    /// else is a folder that does not exist, reported as a model error.
    pub fn parse(name: &str, revision: Option<&str>) -> Result<Self> {
        let path = PathBuf::from(name);
        if path.is_dir() {
            return Ok(Self::Local(path));
        }
        if name == BUNDLED_NAME {
            return Ok(Self::Bundled);
        }
        if is_repo_id(name) {
            let revision = revision.unwrap_or("main");
            if !is_revision(revision) {
                return Err(Error::InvalidOption(format!(
                    "invalid revision {revision:?}: expected a branch or tag name (a git \
                     ref, without `..`, spaces or a leading `/` or `-`) or a commit hash"
                )));
            }
            return Ok(Self::Hub {
                repo_id: name.to_string(),
                revision: revision.to_string(),
            });
        }
        if path.exists() {
            return Err(Error::model(
                path,
                "is not a folder; --model takes a model folder or a hub id (owner/name)",
            ));
        }
        Err(Error::model(
            path,
            "no such model folder (and not a hub id of the form owner/name)",
        ))
    }

    /// The model's files: from the binary, the folder, or the HF cache
    /// (downloading them if need be).
    pub fn resolve(&self) -> Result<ModelFiles> {
        self.resolve_with_progress(&mut |_, _, _| {})
    }

    /// [`ModelSpec::resolve`], reporting a download's progress as (file,
    /// bytes so far, total bytes).
    pub fn resolve_with_progress(
        &self,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ModelFiles> {
        self.resolve_with(&HubTimeouts::default(), progress)
    }

    /// [`ModelSpec::resolve_with_progress`], with these hub timeouts.
    pub fn resolve_with(
        &self,
        timeouts: &HubTimeouts,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ModelFiles> {
        #[cfg(not(feature = "hub"))]
        let _ = timeouts;
        match self {
            Self::Bundled => Ok(bundled::files()),
            Self::Local(dir) => local::files_in(dir),
            #[cfg(feature = "hub")]
            Self::Hub { repo_id, revision } => hub::fetch(repo_id, revision, timeouts, progress),
            #[cfg(not(feature = "hub"))]
            Self::Hub { repo_id, .. } => Err({
                let _ = progress;
                Error::unavailable(
                format!("{repo_id} is a hub id, but this build has no hub support (cargo feature `hub`)"),
                None,
            )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_repo_id, is_revision};

    #[test]
    fn revisions_are_git_refs_or_hashes_and_never_paths() {
        for good in [
            "main",
            "v1.0",
            "refs/pr/1",
            "a1b2c3d4e5f6",
            "release-2024_01",
        ] {
            assert!(is_revision(good), "{good}");
        }
        for bad in [
            "", "..", "../x", "a/../b", "/abs", "/etc", "-x", "a b", "a\tb", "a~1", "a^", "a:b",
            "x?", "*", "a[1]", "a\\b", "a//b", "a/", "a.", "x.lock", ".hidden", "a/.b", "a@{1}",
        ] {
            assert!(!is_revision(bad), "{bad:?}");
        }
    }

    #[test]
    fn repo_ids() {
        assert!(is_repo_id(
            "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
        ));
        assert!(is_repo_id("a.b/c_d-1"));
        assert!(!is_repo_id("no-slash"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("/abs"));
        assert!(!is_repo_id("a/"));
        assert!(!is_repo_id("a b/c"));
        for bad in [
            "../x", "a/..", "./x", "a/.", ".a/b", "a-/b", "a/b--c", "-a/b",
        ] {
            assert!(!is_repo_id(bad), "{bad}");
        }
    }
}
