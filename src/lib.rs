//! `sentiment`: exact DistilBERT sentiment classification on candle.
//!
//! The binary is a thin shell over this library; the tests and benches use
//! the same API.
//!
//! - [`model`]: the network as candle modules (config, embeddings, encoder, head).
//! - [`tokenize`]: tokenizer.json loading, truncation and dynamic padding.
//! - [`source`]: where models come from (local folder, HF hub and its cache).
//! - [`device`]: CPU, CUDA, Metal, and CPU threads.
//! - [`classifier`]: a loaded model that turns texts into predictions.
//! - [`commands`]: one module per subcommand; [`cli`] parses and dispatches.

pub mod classifier;
pub mod cli;
pub mod commands;
pub mod device;
pub mod error;
pub mod model;
pub mod source;
pub mod sysinfo;
pub mod tokenize;

pub use classifier::{Classifier, LabelScore, Prediction};
pub use error::{Error, Result};
pub use source::{ModelFiles, ModelSpec};
