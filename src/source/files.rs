//! What a model is made of once found (its files' bytes and where its
//! weights live), and what a hub name or revision may be: the types every
//! source shares.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `owner/name`: exactly one slash, and only what the hub allows in each
/// part (letters, digits, `-`, `_`, `.`; not starting or ending with `-` or
/// `.`, no `--` or `..`), so the cache folder it names stays inside the cache.
pub fn is_repo_id(name: &str) -> bool {
    let mut parts = name.split('/');
    let valid = |part: Option<&str>| {
        part.is_some_and(|p| {
            !p.is_empty()
                && p.len() <= 96
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !p.starts_with(['-', '.'])
                && !p.ends_with(['-', '.'])
                && !p.contains("--")
                && !p.contains("..")
        })
    };
    valid(parts.next()) && valid(parts.next()) && parts.next().is_none()
}

/// A hub revision: a commit hash, or a branch or tag name by git's ref
/// rules (`git check-ref-format`), so it can name a cache folder or a ref
/// file without escaping the cache: not empty, no `..`, no leading `/`, `-`
/// or `.`, no empty or `.`-led components, nothing that is not printable
/// ASCII, none of `~^:?*[\` or spaces, no `@{`, not ending in `/`, `.` or
/// `.lock`.
pub fn is_revision(revision: &str) -> bool {
    !revision.is_empty()
        && revision.len() <= 255
        && revision.chars().all(|c| c.is_ascii_graphic())
        && !revision.contains(['~', '^', ':', '?', '*', '[', '\\'])
        && !revision.contains("..")
        && !revision.contains("@{")
        && !revision.starts_with(['/', '-'])
        && !revision.ends_with(['/', '.'])
        && !revision.ends_with(".lock")
        && revision
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
}

/// The bytes of one small model file (config or tokenizer) and where they
/// came from, for error messages.
#[derive(Debug, Clone)]
pub struct FileBytes {
    /// Where the bytes came from (a path, or `<bundled>/...`).
    pub origin: PathBuf,
    /// The file's contents.
    pub bytes: std::borrow::Cow<'static, [u8]>,
}

/// The largest config.json or tokenizer.json read: real ones are a few KB
/// and a few MB (XLM-R's tokenizer is 17 MB); a file past this (or a link
/// to /dev/zero) is refused instead of read into memory.
pub const MAX_MODEL_FILE_BYTES: u64 = 256 << 20;

impl FileBytes {
    /// Reads a small model file whole, up to [`MAX_MODEL_FILE_BYTES`].
    pub fn read(path: PathBuf) -> Result<Self> {
        use std::io::Read;
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|file| file.take(MAX_MODEL_FILE_BYTES + 1).read_to_end(&mut bytes));
        match read {
            Ok(_) if bytes.len() as u64 > MAX_MODEL_FILE_BYTES => Err(Error::model(
                path,
                format!("is larger than {MAX_MODEL_FILE_BYTES} bytes; not a config or tokenizer"),
            )),
            Ok(_) => Ok(Self {
                origin: path,
                bytes: bytes.into(),
            }),
            Err(err) => Err(Error::model_caused(path, "cannot read", err)),
        }
    }
}

/// Where the weights live. Safetensors files are memory-mapped.
#[derive(Debug, Clone)]
pub enum Weights {
    /// A `model.safetensors` file, memory-mapped.
    Safetensors(PathBuf),
    /// A PyTorch `pytorch_model.bin`, for checkpoints without safetensors.
    Pytorch(PathBuf),
    /// A safetensors image compiled into the binary.
    Embedded {
        origin: PathBuf,
        bytes: &'static [u8],
    },
}

impl Weights {
    /// Where the weights came from, for messages.
    pub fn origin(&self) -> &std::path::Path {
        match self {
            Self::Safetensors(path) | Self::Pytorch(path) => path,
            Self::Embedded { origin, .. } => origin,
        }
    }
}

/// Everything needed to build a classifier.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// A short name for the model, shown in bench reports.
    pub name: String,
    /// config.json.
    pub config: FileBytes,
    /// The tokenizer's files.
    pub tokenizer: TokenizerFiles,
    /// The weights.
    pub weights: Weights,
}

/// The files a tokenizer is made from, as the model's repo holds them:
/// tokenizer.json, or the slow files transformers converts (see
/// [`TOKENIZER_VOCABULARIES`]), and the settings files beside them.
#[derive(Debug, Clone)]
pub struct TokenizerFiles {
    pub vocabulary: Vocabulary,
    /// tokenizer_config.json: the length limit, and for slow files the
    /// options and special tokens.
    pub config: Option<FileBytes>,
    /// special_tokens_map.json (read for slow files only, as transformers
    /// takes a tokenizer.json's special tokens from the file itself).
    pub special_tokens_map: Option<FileBytes>,
    /// added_tokens.json (slow files only).
    pub added_tokens: Option<FileBytes>,
}

impl TokenizerFiles {
    /// A tokenizer.json with no settings files.
    pub fn json(tokenizer: FileBytes) -> Self {
        Self {
            vocabulary: Vocabulary::Json(tokenizer),
            config: None,
            special_tokens_map: None,
            added_tokens: None,
        }
    }

    /// The tokenizer from `find`'s answers for the candidate names, in
    /// [`TOKENIZER_VOCABULARIES`]' order: the first vocabulary whose files
    /// are all there, and the settings files that are. `find` says where a
    /// file is, or None when the repo lacks it; it reads nothing else.
    pub fn find(
        mut find: impl FnMut(&str) -> Result<Option<PathBuf>>,
        missing: impl FnOnce() -> Error,
    ) -> Result<Self> {
        let mut vocabulary = None;
        for names in TOKENIZER_VOCABULARIES {
            let Some(first) = find(names[0])? else {
                continue;
            };
            let mut paths = vec![first];
            for name in &names[1..] {
                match find(name)? {
                    Some(path) => paths.push(path),
                    None => {
                        return Err(Error::model(
                            &paths[0],
                            format!("comes without the {name} it needs beside it"),
                        ))
                    }
                }
            }
            vocabulary = Some(Vocabulary::from_paths(names[0], paths)?);
            break;
        }
        let vocabulary = vocabulary.ok_or_else(missing)?;
        let slow = !matches!(vocabulary, Vocabulary::Json(_));
        let mut optional = |name: &str, wanted: bool| -> Result<Option<FileBytes>> {
            match wanted {
                true => find(name)?.map(FileBytes::read).transpose(),
                false => Ok(None),
            }
        };
        Ok(Self {
            vocabulary,
            config: optional(TOKENIZER_CONFIG_FILE, true)?,
            special_tokens_map: optional(SPECIAL_TOKENS_MAP_FILE, slow)?,
            added_tokens: optional(ADDED_TOKENS_FILE, slow)?,
        })
    }

    /// Where the tokenizer came from, for messages: its vocabulary's first file.
    pub fn origin(&self) -> &std::path::Path {
        match &self.vocabulary {
            Vocabulary::Json(file)
            | Vocabulary::WordPiece(file)
            | Vocabulary::SentencePiece(file) => &file.origin,
            Vocabulary::BytePairs { vocab, .. } => &vocab.origin,
        }
    }
}

/// A tokenizer's vocabulary, by the files it comes in.
#[derive(Debug, Clone)]
pub enum Vocabulary {
    /// tokenizer.json: the whole pipeline, as the `tokenizers` crate writes it.
    Json(FileBytes),
    /// vocab.txt: WordPiece, one token per line (BERT, DistilBERT).
    WordPiece(FileBytes),
    /// vocab.json and merges.txt: byte-level BPE (RoBERTa).
    BytePairs { vocab: FileBytes, merges: FileBytes },
    /// A SentencePiece model (XLM-R, CamemBERT).
    SentencePiece(FileBytes),
}

impl Vocabulary {
    fn from_paths(first: &str, paths: Vec<PathBuf>) -> Result<Self> {
        let mut files = paths.into_iter().map(FileBytes::read);
        let mut next = || files.next().expect("one path per name");
        Ok(match first {
            TOKENIZER_FILE => Self::Json(next()?),
            "vocab.txt" => Self::WordPiece(next()?),
            "vocab.json" => Self::BytePairs {
                vocab: next()?,
                merges: next()?,
            },
            _ => Self::SentencePiece(next()?),
        })
    }
}

/// tokenizer.json: the fast tokenizer, preferred when a repo has it.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";
pub const ADDED_TOKENS_FILE: &str = "added_tokens.json";

/// The files a tokenizer's vocabulary may come in, in the order
/// transformers prefers them: tokenizer.json, then the slow files of
/// WordPiece, byte-level BPE and SentencePiece tokenizers. A group's first
/// name decides; the rest must then be there too.
pub const TOKENIZER_VOCABULARIES: [&[&str]; 6] = [
    &[TOKENIZER_FILE],
    &["vocab.txt"],
    &["vocab.json", "merges.txt"],
    &["sentencepiece.bpe.model"],
    &["spm.model"],
    &["spiece.model"],
];

/// How long a hub download waits: for a connection, and for each read (a
/// server that accepts and then says nothing fails after `read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubTimeouts {
    pub connect: std::time::Duration,
    pub read: std::time::Duration,
}

impl Default for HubTimeouts {
    /// 10 s to connect, 30 s per read.
    fn default() -> Self {
        Self {
            connect: std::time::Duration::from_secs(10),
            read: std::time::Duration::from_secs(30),
        }
    }
}
