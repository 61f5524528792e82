//! A loaded model ready to classify text: tokenizer + network + labels, on
//! one device. The CLI, the tests and the benches all go through this.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::model::{Config, DistilBertForSequenceClassification, ProblemType};
use crate::source::{weights, ModelFiles};
use crate::tokenize::{pad_batch, Encoded, TextTokenizer};

/// One label and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// The classification of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The best label and its score.
    pub label: String,
    pub score: f32,
    /// Every label's score, in class order.
    pub scores: Vec<LabelScore>,
    /// Raw logits, in class order.
    pub logits: Vec<f32>,
    /// The text was longer than the model accepts and was cut.
    pub truncated: bool,
    /// Tokens the model saw, special tokens included (summed over windows).
    pub tokens: usize,
    /// Windows classified: 1 unless `--long-text window` split the text.
    pub windows: usize,
}

impl Prediction {
    /// The `k` best labels, best first (ties keep class order).
    pub fn top_k(&self, k: usize) -> Vec<&LabelScore> {
        let mut ranked: Vec<&LabelScore> = self.scores.iter().collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked.truncate(k);
        ranked
    }
}

/// How texts longer than the model's limit are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongText {
    /// Keep the first tokens, as HF does (the default).
    #[default]
    Truncate,
    /// Classify overlapping windows that cover the whole text, each with
    /// its own [CLS]/[SEP], and combine their scores.
    Window { stride: usize, aggregate: Aggregate },
}

/// How window scores combine into one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Aggregate {
    /// The mean of the windows' scores (and logits).
    #[default]
    Mean,
    /// The single most confident window decides.
    Max,
}

pub struct Classifier {
    model: DistilBertForSequenceClassification,
    tokenizer: TextTokenizer,
    config: Config,
    labels: Vec<String>,
    device: Device,
    name: String,
    long_text: LongText,
    quantized: bool,
}

impl Classifier {
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self> {
        let config_path = &files.config.origin;
        let mut config = Config::from_json(&files.config.bytes)
            .map_err(|err| Error::model(config_path, format!("invalid config: {err}")))?;
        config
            .validate()
            .map_err(|err| Error::model(config_path, format!("invalid config: {err}")))?;

        let weights_path = files.weights.origin();
        let (vb, word_table) = weights::open(&files.weights, device)?;
        config.word_table = word_table;
        let weight_error = |err: candle_core::Error| Error::model(weights_path, err);
        let num_labels = vb
            .get_unchecked("classifier.weight")
            .and_then(|w| w.dim(0))
            .map_err(weight_error)?;
        let labels = config
            .label_names(num_labels)
            .map_err(|err| Error::model(config_path, format!("invalid config: {err}")))?;
        if labels.len() != num_labels {
            return Err(Error::model(
                config_path,
                format!(
                    "id2label has {} labels but classifier.weight in {} has {num_labels} rows",
                    labels.len(),
                    weights_path.display()
                ),
            ));
        }
        let model = DistilBertForSequenceClassification::load(vb, &config, num_labels)
            .map_err(weight_error)?;

        let tokenizer = TextTokenizer::from_json(&files.tokenizer.bytes, config.max_input_tokens())
            .map_err(|err| {
                Error::model(&files.tokenizer.origin, format!("invalid tokenizer: {err}"))
            })?;

        Ok(Self {
            model,
            tokenizer,
            config,
            labels,
            device: device.clone(),
            name: files.name.clone(),
            long_text: LongText::Truncate,
            quantized: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Switches the encoder to int8 weights (`--quantize int8`): faster,
    /// no longer exact (see the README for the accuracy it keeps).
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.model.quantize_int8()?;
        self.quantized = true;
        Ok(())
    }

    pub fn is_quantized(&self) -> bool {
        self.quantized
    }

    pub fn long_text(&self) -> LongText {
        self.long_text
    }

    /// Chooses truncation (the default) or windows for long texts.
    pub fn set_long_text(&mut self, mode: LongText) -> Result<()> {
        let stride = match mode {
            LongText::Truncate => 0,
            LongText::Window { stride, .. } => stride,
        };
        self.tokenizer
            .set_stride(stride)
            .map_err(|err| Error::Usage(format!("--stride: {err}")))?;
        self.long_text = mode;
        Ok(())
    }

    /// The sequences one text becomes: one (truncated if need be), or every
    /// window in window mode.
    pub fn encode_text(&self, text: &str) -> Result<Vec<Encoded>> {
        match self.long_text {
            LongText::Truncate => Ok(vec![self.encode(text)?]),
            LongText::Window { .. } => self
                .tokenizer
                .encode_windows(text)
                .map_err(|err| Error::Inference(format!("tokenization failed: {err}"))),
        }
    }

    /// [`Classifier::encode_text`] for many texts.
    pub fn encode_texts(&self, texts: &[&str]) -> Result<Vec<Vec<Encoded>>> {
        match self.long_text {
            LongText::Truncate => Ok(self
                .encode_batch(texts)?
                .into_iter()
                .map(|e| vec![e])
                .collect()),
            LongText::Window { .. } => texts.iter().map(|t| self.encode_text(t)).collect(),
        }
    }

    /// Combines the predictions of one text's windows (a single prediction
    /// passes through unchanged).
    pub fn combine(&self, mut windows: Vec<Prediction>) -> Prediction {
        if windows.len() == 1 {
            return windows.remove(0);
        }
        let count = windows.len();
        let tokens = windows.iter().map(|p| p.tokens).sum();
        let aggregate = match self.long_text {
            LongText::Window { aggregate, .. } => aggregate,
            LongText::Truncate => Aggregate::Mean,
        };
        let mut combined = match aggregate {
            Aggregate::Max => windows
                .into_iter()
                .max_by(|a, b| a.score.total_cmp(&b.score))
                .expect("at least one window"),
            Aggregate::Mean => {
                let mean = |values: Vec<&[f32]>| -> Vec<f32> {
                    let mut sum = vec![0f32; values[0].len()];
                    for row in &values {
                        for (s, v) in sum.iter_mut().zip(row.iter()) {
                            *s += v;
                        }
                    }
                    sum.iter().map(|s| s / count as f32).collect()
                };
                let logits = mean(windows.iter().map(|p| p.logits.as_slice()).collect());
                let scores: Vec<Vec<f32>> = windows
                    .iter()
                    .map(|p| p.scores.iter().map(|s| s.score).collect())
                    .collect();
                let probabilities = mean(scores.iter().map(Vec::as_slice).collect());
                self.prediction_from(logits, probabilities)
            }
        };
        combined.tokens = tokens;
        combined.windows = count;
        combined.truncated = false;
        combined
    }

    pub fn encode(&self, text: &str) -> Result<Encoded> {
        self.tokenizer
            .encode(text)
            .map_err(|err| Error::Inference(format!("tokenization failed: {err}")))
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        self.tokenizer
            .encode_batch(texts)
            .map_err(|err| Error::Inference(format!("tokenization failed: {err}")))
    }

    /// Logits for already-encoded texts, run as one padded batch.
    pub fn logits(&self, batch: &[&Encoded]) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if batch.iter().any(|e| e.is_empty()) {
            return Err(Error::Inference(
                "the tokenizer produced no tokens for a text".into(),
            ));
        }
        let padded = pad_batch(batch, self.config.pad_token_id as u32);
        let shape = (padded.batch_size, padded.seq_len);
        let input_ids = Tensor::from_vec(padded.ids, shape, &self.device)?;
        let attention_mask = Tensor::from_vec(padded.attention_mask, shape, &self.device)?;
        let logits = self.model.forward(&input_ids, &attention_mask)?;
        Ok(logits.to_dtype(DType::F32)?.to_vec2()?)
    }

    /// Predictions for already-encoded texts, run as one padded batch.
    pub fn predict_encoded(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>> {
        let logits = self.logits(batch)?;
        Ok(batch
            .iter()
            .zip(logits)
            .map(|(encoded, logits)| self.prediction(logits, encoded))
            .collect())
    }

    /// Tokenizes and classifies `texts` as one padded batch (all windows of
    /// all texts, in window mode).
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        let documents = self.encode_texts(texts)?;
        let flat: Vec<&Encoded> = documents.iter().flatten().collect();
        let mut predictions = self.predict_encoded(&flat)?.into_iter();
        Ok(documents
            .iter()
            .map(|windows| self.combine(predictions.by_ref().take(windows.len()).collect()))
            .collect())
    }

    fn prediction(&self, logits: Vec<f32>, encoded: &Encoded) -> Prediction {
        let probabilities = scores_from_logits(&logits, self.config.problem_type());
        let mut prediction = self.prediction_from(logits, probabilities);
        prediction.truncated = encoded.truncated;
        prediction.tokens = encoded.len();
        prediction
    }

    fn prediction_from(&self, logits: Vec<f32>, probabilities: Vec<f32>) -> Prediction {
        let scores: Vec<LabelScore> = self
            .labels
            .iter()
            .zip(&probabilities)
            .map(|(label, &score)| LabelScore {
                label: label.clone(),
                score,
            })
            .collect();
        let best = scores
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.score.total_cmp(&b.score).then(j.cmp(i)))
            .map(|(_, best)| best.clone())
            .unwrap_or(LabelScore {
                label: String::new(),
                score: f32::NAN,
            });
        Prediction {
            label: best.label,
            score: best.score,
            scores,
            logits,
            truncated: false,
            tokens: 0,
            windows: 1,
        }
    }
}

/// What HF reports as scores: softmax for single-label classification,
/// sigmoid for multi-label, the raw value for regression. Computed in f32,
/// max-shifted, like transformers' pipeline.
pub fn scores_from_logits(logits: &[f32], problem_type: ProblemType) -> Vec<f32> {
    match problem_type {
        ProblemType::SingleLabelClassification => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|e| e / sum).collect()
        }
        ProblemType::MultiLabelClassification => {
            logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect()
        }
        ProblemType::Regression => logits.to_vec(),
    }
}
