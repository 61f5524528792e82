//! Reading the HF cache: the snapshot a revision names, and which of the
//! repo's files it holds, lacks, or never asked for.

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};

use crate::error::{Error, Result};
use crate::source::files::{FileBytes, ModelFiles, TokenizerFiles, Weights};
use crate::source::local::{no_tokenizer, CONFIG_FILE, PYTORCH_FILE, SAFETENSORS_FILE};

/// What a cached snapshot says of one file of the repo.
pub(super) enum Cached {
    /// The file, inside the cache.
    There(PathBuf),
    /// The hub said the repo lacks it: huggingface_hub's marker,
    /// `.no_exist/<commit>/<name>`, which the download writes too.
    Absent,
    /// Never asked for.
    Unknown,
}

/// One commit's snapshot in the cache.
pub(super) struct Snapshot {
    cache_dir: PathBuf,
    pub(super) repo_dir: PathBuf,
    commit: String,
}

impl Snapshot {
    /// The snapshot refs/<revision> names, as hf-hub and huggingface_hub
    /// find it; a commit hash has no ref, but its snapshot folder is named
    /// after it. A ref that is not a commit name (`..`, a path) is a
    /// damaged or hostile cache, refused before it names a folder.
    pub(super) fn open(cache_dir: &Path, repo_id: &str, revision: &str) -> Result<Self> {
        let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
        let repo_dir = cache_dir.join(repo.folder_name());
        let ref_path = repo_dir.join("refs").join(revision);
        let commit = match std::fs::read_to_string(&ref_path) {
            Ok(commit) => commit.trim().to_string(),
            Err(_) => revision.to_string(),
        };
        if !crate::source::files::is_revision(&commit) {
            return Err(Error::model(
                ref_path,
                format!(
                    "does not name a commit; delete {} and download the model again",
                    repo_dir.display()
                ),
            ));
        }
        Ok(Self {
            cache_dir: cache_dir.to_path_buf(),
            repo_dir,
            commit,
        })
    }

    fn lookup(&self, name: &str) -> Result<Cached> {
        let entry = self
            .repo_dir
            .join("snapshots")
            .join(&self.commit)
            .join(name);
        check_link(&self.repo_dir, &entry)?;
        if entry.is_file() {
            self.check_inside(&entry)?;
            return Ok(Cached::There(entry));
        }
        Ok(match self.absence_marker(name).is_file() {
            true => Cached::Absent,
            false => Cached::Unknown,
        })
    }

    /// A snapshot entry must lead to a file inside the cache (its blob): a
    /// link elsewhere (to /etc/passwd, say) is a hostile cache, and
    /// nothing outside the cache is read.
    fn check_inside(&self, entry: &Path) -> Result<()> {
        let target = std::fs::canonicalize(entry)
            .map_err(|err| Error::model_caused(entry, "cannot read", err))?;
        let cache = std::fs::canonicalize(&self.cache_dir)
            .map_err(|err| Error::model_caused(&self.cache_dir, "cannot read", err))?;
        match target.starts_with(&cache) {
            true => Ok(()),
            false => Err(Error::model(
                entry,
                format!(
                    "leads outside the HF cache (to {}); refusing to read it. Delete {} and \
                     download the model again",
                    target.display(),
                    self.repo_dir.display()
                ),
            )),
        }
    }

    /// Where huggingface_hub marks that the repo has no `name` at this commit.
    fn absence_marker(&self, name: &str) -> PathBuf {
        self.repo_dir
            .join(".no_exist")
            .join(&self.commit)
            .join(name)
    }

    /// The marker that says the repo has no `name` at this commit.
    pub(super) fn mark_absent(&self, name: &str) -> std::io::Result<()> {
        let marker = self.absence_marker(name);
        if let Some(parent) = marker.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::create(marker).map(drop)
    }
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

/// The cached snapshot, if it holds everything the model needs: its
/// config, its tokenizer's files and its weights, each one there or known
/// to be absent from the repo. A file never asked for makes the snapshot
/// incomplete (None: the download asks the hub), except `offline`, where
/// it is taken as absent, as transformers takes it.
pub fn from_cache(
    cache_dir: &Path,
    repo_id: &str,
    revision: &str,
    offline: bool,
) -> Result<Option<ModelFiles>> {
    let snapshot = Snapshot::open(cache_dir, repo_id, revision)?;
    let mut incomplete = false;
    let mut find = |name: &str| -> Result<Option<PathBuf>> {
        Ok(match snapshot.lookup(name)? {
            Cached::There(path) => Some(path),
            Cached::Absent => None,
            Cached::Unknown => {
                incomplete |= !offline;
                None
            }
        })
    };
    let Some(config) = find(CONFIG_FILE)? else {
        return Ok(None);
    };
    let tokenizer = TokenizerFiles::find(&mut find, || no_tokenizer(&snapshot.repo_dir));
    let weights = match find(SAFETENSORS_FILE)? {
        Some(path) => Some(Weights::Safetensors(path)),
        None => find(PYTORCH_FILE)?.map(Weights::Pytorch),
    };
    // What the hub may still have decides before what the cache lacks.
    let (false, Some(weights)) = (incomplete, weights) else {
        return Ok(None);
    };
    let tokenizer = match tokenizer {
        Ok(tokenizer) => tokenizer,
        Err(_) if !offline => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(Some(ModelFiles {
        name: repo_id.to_string(),
        config: FileBytes::read(config)?,
        tokenizer,
        weights,
    }))
}
