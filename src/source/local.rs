//! A model in a local folder, laid out as HF's `save_pretrained` writes it.

use std::path::Path;

use super::files::{FileBytes, ModelFiles, Weights};
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const SAFETENSORS_FILE: &str = "model.safetensors";
pub const PYTORCH_FILE: &str = "pytorch_model.bin";

pub const SAFETENSORS_INDEX_FILE: &str = "model.safetensors.index.json";

pub fn files_in(dir: &Path) -> Result<ModelFiles> {
    // What stat says, so that a file we may not read is reported as that,
    // not as missing.
    let required = |name: &str| {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(path),
            Ok(_) => Err(Error::model(path, "is not a file")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::model(path, "missing from the model folder"))
            }
            Err(err) => Err(Error::model_caused(path, "cannot read", err)),
        }
    };
    let config = FileBytes::read(required(CONFIG_FILE)?)?;
    let tokenizer = FileBytes::read(required(TOKENIZER_FILE)?)?;
    let weights = if dir.join(SAFETENSORS_FILE).is_file() {
        Weights::Safetensors(dir.join(SAFETENSORS_FILE))
    } else if dir.join(PYTORCH_FILE).is_file() {
        Weights::Pytorch(dir.join(PYTORCH_FILE))
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
