//! A model in a local folder, laid out as HF's `save_pretrained` writes it.

use std::path::Path;

use super::files::{FileBytes, ModelFiles, TokenizerFiles, Weights};
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const SAFETENSORS_FILE: &str = "model.safetensors";
pub const PYTORCH_FILE: &str = "pytorch_model.bin";

pub const SAFETENSORS_INDEX_FILE: &str = "model.safetensors.index.json";

pub fn files_in(dir: &Path) -> Result<ModelFiles> {
    let config = present(&dir.join(CONFIG_FILE))?
        .ok_or_else(|| Error::model(dir.join(CONFIG_FILE), "missing from the model folder"))?;
    let config = FileBytes::read(config)?;
    let tokenizer = TokenizerFiles::find(|name| present(&dir.join(name)), || no_tokenizer(dir))?;
    let weights = if let Some(path) = present(&dir.join(SAFETENSORS_FILE))? {
        Weights::Safetensors(path)
    } else if let Some(path) = present(&dir.join(PYTORCH_FILE))? {
        Weights::Pytorch(path)
    } else if dir.join(SAFETENSORS_INDEX_FILE).is_file() {
        return Err(Error::model(
            dir.join(SAFETENSORS_INDEX_FILE),
            "sharded checkpoints (weights split over several files) are not supported; \
             save the model as one model.safetensors",
        ));
    } else {
        return Err(Error::model(
            dir.join(SAFETENSORS_FILE),
            format!("missing from the model folder (and there is no {PYTORCH_FILE} either)"),
        ));
    };
    Ok(ModelFiles {
        name: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        config,
        tokenizer,
        weights,
    })
}

/// A model with no file to make its tokenizer from.
pub(super) fn no_tokenizer(repo: &Path) -> Error {
    Error::model(
        repo,
        "has no tokenizer: tokenizer.json is missing, and so are the slow files \
         transformers converts (vocab.txt; vocab.json with merges.txt; \
         sentencepiece.bpe.model, spm.model or spiece.model)",
    )
}

/// Whether `path` is a file (None when it does not exist); a path that is
/// there but not a file, or cannot be looked at, is an error naming it.
pub(super) fn present(path: &Path) -> Result<Option<std::path::PathBuf>> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(Some(path.to_path_buf())),
        Ok(_) => Err(Error::model(path, "is not a file")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::model_caused(path, "cannot read", err)),
    }
}
