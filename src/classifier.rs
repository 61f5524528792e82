//! A loaded model: tokenizer + network + labels on one device, and the
//! steps one batch goes through (encode, forward, postprocess). The
//! batching engine in [`crate::batch`] drives these steps and adds the
//! everyday entry points, [`Classifier::classify`] and
//! [`Classifier::batcher`]. Every front end (the CLI, the tests, the
//! benches, the examples) goes through this API.

use candle_core::{DType, Device};

use crate::device::{configure_threads, DeviceSpec};
use crate::error::{Error, Result};
use crate::model::cpu::{KernelOptions, KernelPlan};
use crate::model::{Config, RaggedBatch, SequenceClassifier};
use crate::postprocess::{Aggregate, Postprocessor, Prediction};
use crate::source::{weights, HubTimeouts, ModelFiles, ModelSpec};
use crate::tokenize::{Encoded, TextInput, TextTokenizer};

/// The numeric precision the encoder runs in. Embeddings, norms,
/// attention and the head stay f32 in every one; where a precision has no
/// kernel, the model loads in f32 ([`Classifier::precision`] says which
/// runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Precision {
    /// f32 throughout: logits match HF transformers (within 1e-4).
    #[default]
    F32,
    /// int8 weights per output channel and uint8 activations per token in
    /// the encoder's linear layers (AVX-512 VNNI or AVX2; elsewhere
    /// candle's Q8_0); within half a point of f32 on SST-2 dev. CPU only.
    Int8,
    /// bf16 weights and activations in the encoder's linear layers, f32
    /// sums (`vdpbf16ps`, CPUs with AVX512_BF16); within 0.3 points of f32
    /// on SST-2 dev. Elsewhere the model runs f32, and says so.
    Bf16,
}

impl Precision {
    /// "f32", "bf16" or "int8", as reports and the CLI name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How texts longer than the model's limit are handled.
/// The tokens each long-text window shares with the previous one, unless
/// told otherwise.
pub const DEFAULT_STRIDE: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongText {
    /// Keep the first tokens, as HF does (the default).
    #[default]
    Truncate,
    /// Keep the last tokens (HF's `truncation_side="left"`, TEI's
    /// `"truncation_direction": "Left"`): where a review's verdict comes at
    /// its end.
    TruncateStart,
    /// Classify overlapping windows that cover the whole text, each with
    /// its own `[CLS]`/`[SEP]`, sharing `stride` tokens with the previous one,
    /// and combine their scores.
    Window { stride: usize, aggregate: Aggregate },
}

/// What may differ from one call to the next on the same loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClassifyOptions {
    /// Truncation (the default) or windows for long texts.
    pub long_text: LongText,
    /// Keep only the `k` best labels in [`Prediction::scores`] (all if None).
    pub top_k: Option<usize>,
}

impl ClassifyOptions {
    /// These options with another long-text policy.
    pub fn with_long_text(mut self, long_text: LongText) -> Self {
        self.long_text = long_text;
        self
    }

    /// These options keeping only the `top_k` best labels (all if None).
    pub fn with_top_k(mut self, top_k: Option<usize>) -> Self {
        self.top_k = top_k;
        self
    }
}

/// Everything a [`Classifier`] is loaded from, set one piece at a time:
/// the model, the device, the precision and the CPU threads.
#[derive(Default)]
pub struct ClassifierBuilder {
    model: ModelSpec,
    device: DeviceSpec,
    precision: Precision,
    threads: Option<usize>,
    kernels: KernelOptions,
    hub_timeouts: HubTimeouts,
    progress: Option<Box<DownloadProgress>>,
}

/// Called as a hub download goes: (file, bytes so far, total bytes).
pub type DownloadProgress = dyn FnMut(&str, u64, u64) + Send;

impl std::fmt::Debug for ClassifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierBuilder")
            .field("model", &self.model)
            .field("device", &self.device)
            .field("precision", &self.precision)
            .field("threads", &self.threads)
            .field("kernels", &self.kernels)
            .finish_non_exhaustive()
    }
}

impl ClassifierBuilder {
    /// The model: [`ModelSpec::Bundled`] (the default), a folder, or a hub
    /// id; [`ModelSpec::parse`] reads the forms the CLI accepts.
    pub fn model(mut self, model: ModelSpec) -> Self {
        self.model = model;
        self
    }

    /// The device (default: CPU).
    pub fn device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// The precision the encoder runs in (default: f32).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// CPU threads for the model and the tokenizer (default: the physical
    /// cores). Process-wide: see [`configure_threads`].
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Which CPU kernels may run (default: the fastest this CPU has). The
    /// choice is resolved once, at load, into the classifier's
    /// [`KernelPlan`].
    pub fn kernels(mut self, kernels: KernelOptions) -> Self {
        self.kernels = kernels;
        self
    }

    /// How long a hub download waits to connect and for each read
    /// (default: 10 s and 30 s).
    pub fn hub_timeouts(mut self, timeouts: HubTimeouts) -> Self {
        self.hub_timeouts = timeouts;
        self
    }

    /// Reports a hub download's progress (nothing is printed otherwise).
    pub fn download_progress(
        mut self,
        progress: impl FnMut(&str, u64, u64) + Send + 'static,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Sets the threads, opens the device, finds the model's files
    /// (downloading them if need be) and loads it.
    pub fn build(mut self) -> Result<Classifier> {
        configure_threads(self.threads)?;
        let device = self.device.open()?;
        let files = match self.progress.as_mut() {
            Some(progress) => self
                .model
                .resolve_with(&self.hub_timeouts, &mut **progress)?,
            None => self
                .model
                .resolve_with(&self.hub_timeouts, &mut |_, _, _| {})?,
        };
        Classifier::from_files_with_kernels(&files, &device, self.precision, &self.kernels)
    }
}

/// A loaded model. `Send + Sync`: one instance can serve many threads,
/// each call with its own [`ClassifyOptions`].
pub struct Classifier {
    model: SequenceClassifier,
    tokenizer: TextTokenizer,
    config: Config,
    postprocessor: Postprocessor,
    device: Device,
    name: String,
    precision: Precision,
}

// One loaded model serves every thread of a server: keep it that way.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
};

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("name", &self.name)
            .field("labels", &self.labels())
            .field("device", &self.device)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// A builder for the bundled model on the CPU in f32; see [`ClassifierBuilder`].
    pub fn builder() -> ClassifierBuilder {
        ClassifierBuilder::default()
    }

    /// Loads already-resolved model files on `device`.
    pub fn from_files(files: &ModelFiles, device: &Device, precision: Precision) -> Result<Self> {
        Self::from_files_with_kernels(files, device, precision, &KernelOptions::default())
    }

    /// [`Classifier::from_files`] with the CPU kernels `kernels` allows.
    pub fn from_files_with_kernels(
        files: &ModelFiles,
        device: &Device,
        precision: Precision,
        kernels: &KernelOptions,
    ) -> Result<Self> {
        // Pins the thread count if nothing has yet (see configure_threads).
        configure_threads(None)?;
        let config_path = &files.config.origin;
        let invalid_config = |err: crate::model::config::ConfigError| {
            Error::model_caused(config_path, "invalid config", err)
        };
        let mut config = Config::from_json(&files.config.bytes).map_err(invalid_config)?;
        config.validate().map_err(invalid_config)?;
        // Before the weights: a bad tokenizer file is found without reading them.
        let tokenizer = TextTokenizer::from_files(
            &files.tokenizer,
            &config.model_type,
            config.max_input_tokens(),
        )?;

        let weights_path = files.weights.origin();
        let names = crate::model::weight_names(config.architecture);
        let (vb, word_table) = weights::open(&files.weights, device, &names.word_embeddings())?;
        config.word_table = word_table;
        // A file of another architecture (or a bare encoder) would fail on
        // its first missing tensor, a name that tells the user nothing:
        // check the two that identify a classifier of this architecture.
        for tensor in [names.word_embeddings(), names.classifier()] {
            if !vb.contains_tensor(&tensor) {
                return Err(Error::model(
                    weights_path,
                    format!(
                        "this is not a {} checkpoint: it has no tensor {tensor} \
                         (config.json says model_type {:?})",
                        config.class_name, config.model_type
                    ),
                ));
            }
        }
        let weight_error =
            |err: candle_core::Error| Error::model_caused(weights_path, "cannot load weights", err);
        let num_labels = vb
            .get_unchecked(&names.classifier())
            .and_then(|w| w.dim(0))
            .map_err(weight_error)?;
        let labels = config.label_names(num_labels).map_err(invalid_config)?;
        if labels.len() != num_labels {
            return Err(Error::model(
                config_path,
                format!(
                    "id2label has {} labels but {} in {} has {num_labels} rows",
                    labels.len(),
                    names.classifier(),
                    weights_path.display()
                ),
            ));
        }
        let plan = KernelPlan::resolve(kernels, device.is_cpu());
        let mut model =
            SequenceClassifier::load(vb, &config, num_labels, plan).map_err(weight_error)?;
        let precision = narrow_to(&mut model, precision, &plan, device.is_cpu())?;

        // Every id the tokenizer can produce must have an embedding row, or
        // the first text that uses it would fail at inference.
        if let Some(max_id) = tokenizer.max_token_id() {
            if max_id as usize >= config.vocab_size {
                return Err(Error::model(
                    files.tokenizer.origin(),
                    format!(
                        "the tokenizer can produce token id {max_id}, but the model's \
                         embedding table has {} rows (vocab_size in {})",
                        config.vocab_size,
                        config_path.display()
                    ),
                ));
            }
        }

        Ok(Self {
            model,
            tokenizer,
            postprocessor: Postprocessor::new(labels, config.problem_type(num_labels)),
            config,
            device: device.clone(),
            name: files.name.clone(),
            precision,
        })
    }

    /// The tokenizer, for the server's /tokenize and /decode.
    #[cfg(feature = "serve")]
    pub(crate) fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// A short name for the model, for reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Label names in class order.
    pub fn labels(&self) -> &[String] {
        self.postprocessor.labels()
    }

    /// The model's config.json, as read.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The precision the encoder runs in: the one asked for, except bf16
    /// where there is no bf16 kernel (see [`Precision::Bf16`]), which runs f32.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether int8 runs on one of this crate's int8 kernels: true when the
    /// encoder is int8 on an x86 CPU with AVX-512 VNNI or AVX2. Elsewhere
    /// int8 runs candle's portable Q8_0 kernels, which on an AVX2 CPU took
    /// 4-6x as long as our f32 (docs/benchmarks.md): int8
    /// there saves memory, not time.
    pub fn int8_is_native(&self) -> bool {
        self.precision == Precision::Int8
            && self.kernel_plan().cpu.is_some_and(|cpu| cpu.int8.is_some())
    }

    /// The one warning every front end prints when a classifier does not
    /// run `asked` as asked: a precision without a kernel on this device
    /// (it runs f32, with the same labels), bf16 whose kernel measured no
    /// faster than f32 on this CPU at load, or int8 without our int8
    /// kernels on an x86 CPU (it runs candle's Q8_0, slower than f32 there).
    pub fn precision_warning(&self, asked: Precision) -> Option<String> {
        if self.precision != asked {
            return Some(format!(
                "precision {asked} has no kernel on this device (int8 and bf16 run on the CPU, \
                 bf16 only with AVX512_BF16 and a kernel that passes its start-up check); \
                 running {}",
                self.precision
            ));
        }
        if let (Precision::Bf16, Some(cpu)) = (asked, self.kernel_plan().cpu) {
            if let Some(kernel) = cpu.bf16 {
                let (bf16, f32) = crate::model::cpu::bf16_against_f32(kernel, cpu.linear.kernel);
                if bf16 >= f32 {
                    return Some(format!(
                        "precision bf16 runs {} here, but measured no faster than f32 at load \
                         ({:.1} µs against {:.1} µs on a probe product): it gives bf16's \
                         numerics, not speed, on this CPU",
                        self.kernel_plan().bf16_name(),
                        bf16.as_secs_f64() * 1e6,
                        f32.as_secs_f64() * 1e6,
                    ));
                }
            }
        }
        (asked == Precision::Int8 && cfg!(target_arch = "x86_64") && !self.int8_is_native()).then(
            || {
                "precision int8 has no int8 kernel on this CPU (they need AVX-512 VNNI or AVX2); \
             it runs candle's portable Q8_0, which is slower than f32 here (it saves memory, \
             not time)"
                    .to_string()
            },
        )
    }

    /// Which kernels this classifier runs, resolved at load.
    pub fn kernel_plan(&self) -> &KernelPlan {
        self.model.plan()
    }

    /// Whether a padded batch runs without computing its padding: true on
    /// the CPU kernels (see [`crate::model::SequenceClassifier::forward`]), where
    /// sequences of any lengths batch together at the cost of their tokens;
    /// false on a GPU, where grouping by length pays.
    pub fn runs_unpadded(&self) -> bool {
        self.model.runs_unpadded()
    }

    /// The most tokens one sequence may hold, special tokens included:
    /// the model's limit, or tokenizer_config.json's `model_max_length`
    /// where that is smaller.
    pub fn max_input_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    /// config.json's `model_type`, which picks the tokenizer class for slow files.
    pub(crate) fn model_type(&self) -> &str {
        &self.config.model_type
    }

    /// Checks options before a run, so a bad stride fails at once rather
    /// than on every text.
    pub fn check_options(&self, options: &ClassifyOptions) -> Result<()> {
        if let LongText::Window { stride, .. } = options.long_text {
            self.tokenizer
                .check_stride(stride)
                .map_err(|err| Error::InvalidOption(err.to_string()))?;
        }
        Ok(())
    }

    /// The sequences one text becomes: one (truncated if need be), or every
    /// window in window mode. A pair is one sequence in every mode, its
    /// longer side cut first (windows over two texts would pair each window
    /// of one with a part of the other, which no pair model was trained on).
    pub fn encode_text<'t>(
        &self,
        input: impl Into<TextInput<'t>>,
        long_text: LongText,
    ) -> Result<Vec<Encoded>> {
        let encoded = match (input.into(), long_text) {
            (TextInput::Single(text), LongText::Truncate) => self.tokenizer.encode(text),
            (TextInput::Single(text), LongText::TruncateStart) => {
                self.tokenizer.encode_keeping_end(text)
            }
            (TextInput::Single(text), LongText::Window { stride, .. }) => {
                return self
                    .tokenizer
                    .encode_windows(text, stride)
                    .map_err(Error::tokenize)
            }
            (TextInput::Pair(first, second), long_text) => {
                let keep_end = long_text == LongText::TruncateStart;
                self.tokenizer.encode_pair(first, second, keep_end)
            }
        };
        Ok(vec![encoded.map_err(Error::tokenize)?])
    }

    /// One text, or a pair, truncated to the model's limit.
    pub fn encode<'t>(&self, input: impl Into<TextInput<'t>>) -> Result<Encoded> {
        self.encode_text(input, LongText::Truncate)
            .map(|mut sequences| sequences.remove(0))
    }

    /// Several texts or pairs, truncated; the tokenizer spreads them over
    /// threads.
    pub fn encode_batch(&self, inputs: &[TextInput]) -> Result<Vec<Encoded>> {
        self.tokenizer.encode_batch(inputs).map_err(Error::tokenize)
    }

    /// Logits for already-encoded sequences, run as one padded batch, in
    /// class order.
    pub fn logits(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = RaggedBatch::new(batch.iter().map(|e| (&e.ids[..], &e.type_ids[..])))
            .ok_or_else(|| Error::tokenize("the tokenizer produced no tokens for a text"))?;
        let logits: Vec<Vec<f32>> = self
            .model
            .forward(&batch)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        // A result computed from NaN or an infinity is no classification;
        // the engine then runs the batch's texts alone, so only the
        // culprit's record says so.
        if logits.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::from(candle_core::Error::Msg(
                "the model computed a non-finite logit (NaN or infinity), so no label is \
                 reported; the model's weights overflow on this text"
                    .into(),
            )));
        }
        Ok(logits)
    }

    /// Predictions for already-encoded sequences, one padded batch, each
    /// sequence a text of its own (no windows), every label kept.
    pub fn predict_encoded(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>> {
        let logits = self.logits(batch)?;
        Ok(batch
            .iter()
            .zip(logits)
            .map(|(encoded, logits)| {
                let scored = self
                    .postprocessor
                    .score(logits, encoded.len(), encoded.truncated);
                self.postprocessor
                    .finish(scored, Aggregate::Mean, false, None)
            })
            .collect())
    }

    pub(crate) fn postprocessor(&self) -> &Postprocessor {
        &self.postprocessor
    }
}

/// Narrows the model's linears to `precision` where a kernel for it runs on
/// `device`; returns the precision the model then runs in.
fn narrow_to(
    model: &mut SequenceClassifier,
    precision: Precision,
    plan: &KernelPlan,
    on_cpu: bool,
) -> Result<Precision> {
    use crate::model::linear::Narrow;
    let narrow = match (precision, plan.cpu) {
        (Precision::F32, _) => None,
        (Precision::Int8, Some(cpu)) => Some(Narrow::Int8(cpu.int8)),
        // Without our kernels on the CPU: candle's Q8_0. On a GPU, Q8_0
        // goes through candle's GGUF kernels, which CI's CUDA build stubs
        // out and which would not repay themselves on a model this small:
        // int8 is a CPU precision.
        (Precision::Int8, None) => on_cpu.then_some(Narrow::Int8(None)),
        #[cfg(target_arch = "x86_64")]
        (Precision::Bf16, Some(cpu)) => cpu.bf16.map(Narrow::Bf16),
        (Precision::Bf16, _) => None,
    };
    match narrow {
        Some(narrow) => {
            model.narrow(narrow)?;
            Ok(precision)
        }
        None => Ok(Precision::F32),
    }
}
