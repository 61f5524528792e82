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
    /// tokenizer.json.
    pub tokenizer: FileBytes,
    /// The weights.
    pub weights: Weights,
}

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
