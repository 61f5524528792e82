//! The default model, compiled into the binary so `sentiment` works offline
//! from any directory: all-MiniLM-L6-v2 converted to DistilBERT layout and
//! fine-tuned on SST-2 (see models/minilm-l6-sst2/README.md).

use std::path::PathBuf;

use super::files::{FileBytes, ModelFiles, TokenizerFiles, Vocabulary, Weights};

/// The folder the bundled model was built from, relative to the repository.
pub const FOLDER: &str = "models/minilm-l6-sst2";

const CONFIG: &[u8] = include_bytes!("../../models/minilm-l6-sst2/config.json");
const TOKENIZER: &[u8] = include_bytes!("../../models/minilm-l6-sst2/tokenizer.json");
const TOKENIZER_CONFIG: &[u8] = include_bytes!("../../models/minilm-l6-sst2/tokenizer_config.json");
const WEIGHTS: &[u8] = include_bytes!("../../models/minilm-l6-sst2/model.safetensors");

fn origin(name: &str) -> PathBuf {
    PathBuf::from(format!("<bundled>/{FOLDER}/{name}"))
}

pub fn files() -> ModelFiles {
    ModelFiles {
        name: "minilm-l6-sst2 (bundled)".to_string(),
        config: FileBytes {
            origin: origin("config.json"),
            bytes: CONFIG.into(),
        },
        tokenizer: TokenizerFiles {
            vocabulary: Vocabulary::Json(FileBytes {
                origin: origin("tokenizer.json"),
                bytes: TOKENIZER.into(),
            }),
            config: Some(FileBytes {
                origin: origin("tokenizer_config.json"),
                bytes: TOKENIZER_CONFIG.into(),
            }),
            special_tokens_map: None,
            added_tokens: None,
        },
        weights: Weights::Embedded {
            origin: origin("model.safetensors"),
            bytes: WEIGHTS,
        },
    }
}
