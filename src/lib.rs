//! `sentiment`: sentiment classification with HF sequence-classification
//! models (DistilBERT, BERT, RoBERTa, XLM-R) on candle, exact against HF
//! transformers.
//!
//! Load a model once and classify from as many threads as you like:
//!
//! ```
//! use sentiment::{Classifier, ClassifyOptions};
//!
//! # fn main() -> Result<(), sentiment::Error> {
//! // The bundled model (compiled into the library), on the CPU, in f32.
//! let classifier = Classifier::builder().build()?;
//! let predictions = classifier.classify(
//!     &["I love this movie", "The plot was a mess"],
//!     &ClassifyOptions::default(),
//! )?;
//! assert_eq!(predictions[0].label, "POSITIVE");
//! assert_eq!(predictions[1].label, "NEGATIVE");
//! println!("{}", serde_json::to_string(&predictions[0]).unwrap());
//! # Ok(())
//! # }
//! ```
//!
//! [`ClassifierBuilder`] picks the model ([`ModelSpec`]: bundled, a folder,
//! or a hub id with the `hub` feature), the [`DeviceSpec`], the
//! [`Precision`] and the CPU threads. [`ClassifyOptions`] (long texts, top-k)
//! are chosen per call. [`Batcher`] streams any number of texts through the
//! model in bounded memory, with per-text results and cancellation. Models
//! trained on text pairs (NLI) take them as [`TextInput::Pair`] or through
//! [`Classifier::classify_pairs`], encoded as HF's `tokenizer(text, text_pair)`.
//!
//! The modules follow the data: [`input`] (lines) → tokenize → [`batch`]
//! (the engine) → [`model`] (the forward pass, driven through the
//! [`Classifier`]) → [`postprocess`] (scores, windows) → [`output`]
//! (records). [`source`] finds model files, [`device`] opens devices and
//! sets threads, [`mod@bench`] measures.
//!
//! Cargo features: `hub` (default) adds hub ids; `cli` (default) builds the
//! `sentiment` binary and pulls clap and friends, which the library never
//! uses (`default-features = false, features = ["hub"]` to embed); `cuda` and
//! `metal` add devices.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod batch;
pub mod bench;
mod classifier;
pub mod device;
mod error;
pub mod input;
pub(crate) mod json;
pub mod model;
pub mod output;
pub mod postprocess;
#[cfg(feature = "serve")]
pub mod serve;
pub mod source;
mod tokenize;

pub use batch::{Batcher, CancelFlag, Classifiable, EncodedText, Feed, RunSummary, Sink};
pub use classifier::{
    Classifier, ClassifierBuilder, ClassifyOptions, DownloadProgress, LongText, Precision,
    DEFAULT_STRIDE,
};
pub use device::DeviceSpec;
pub use error::{Error, Result};
pub use model::cpu::{KernelChoice, KernelOptions, KernelPlan, VectorWidth};
pub use postprocess::{Aggregate, LabelScore, Prediction};
pub use source::{HubTimeouts, ModelFiles, ModelSpec};
pub use tokenize::{Encoded, TextInput};

/// The CPU kernels, for the criterion benches. **Unstable**: not part of
/// the public API, and may change or vanish in any release.
#[doc(hidden)]
pub mod unstable_kernels {
    pub use crate::model::cpu::*;
    pub use crate::model::linear::Narrow;
    pub use crate::tokenize::TextTokenizer;
}
