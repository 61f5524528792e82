//! The command line as plain structs (clap derive). Nothing here runs a
//! command: `main` parses, then hands each subcommand's struct to its
//! module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sentiment::batch::{DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE};
use sentiment::bench::report::ReportFormat;
use sentiment::device::MAX_THREADS;
use sentiment::input::InputFormat;
use sentiment::serve::defaults;
use sentiment::DEFAULT_STRIDE;
use sentiment::{
    Aggregate, DeviceSpec, KernelChoice, KernelOptions, LongText, ModelSpec, Precision, VectorWidth,
};

use crate::exit::{UsageError, EXIT_CODES_HELP};

/// The environment variable that names the default model.
pub const MODEL_ENV: &str = "SENTIMENT_MODEL";

#[derive(Debug, Parser)]
#[command(
    name = "sentiment",
    version,
    about = "Sentiment classification with HF models, on candle",
    after_help = EXIT_CODES_HELP,
)]
pub struct Cli {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand: which model, where to run it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A model folder (config.json, tokenizer.json, model.safetensors), a
    /// HuggingFace hub id (owner/name), or `bundled` [default: the bundled
    /// model, minilm-l6-sst2].
    #[arg(long, short = 'm', global = true, env = MODEL_ENV, value_name = "FOLDER|OWNER/NAME")]
    pub model: Option<String>,

    /// Hub revision (branch, tag or commit) for a hub id.
    #[arg(long, global = true, value_name = "REV")]
    pub revision: Option<String>,

    /// Device to run on: cpu, cuda[:N] (feature `cuda`), metal (feature
    /// `metal`). `bench` takes a comma-separated list to compare devices.
    #[arg(
        long,
        global = true,
        default_value = "cpu",
        value_name = "DEVICE",
        value_delimiter = ','
    )]
    pub device: Vec<DeviceSpec>,

    /// Run the encoder with int8 weights: faster, within half a point of
    /// f32 accuracy on SST-2, but no longer bit-for-bit HF's logits.
    /// The same as `--precision int8`.
    #[arg(long, global = true, value_enum, value_name = "PRECISION")]
    pub quantize: Option<Quantize>,

    /// The encoder's precision: f32 (HF's exact logits), bf16 (CPUs with
    /// AVX512_BF16; f32 elsewhere, with a warning) or int8. `bench` takes a
    /// comma-separated list to compare them [default: f32].
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "PRECISION",
        value_delimiter = ','
    )]
    pub precision: Vec<Precision>,

    /// CPU threads for the model and tokenizer [default: RAYON_NUM_THREADS,
    /// else the CPUs this process may use (affinity, cgroup quota), at most
    /// the physical cores].
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    pub threads: Option<u16>,
}

impl ModelArgs {
    /// The model asked for; `--revision` only with a hub id, where it
    /// means something.
    pub fn spec(&self) -> anyhow::Result<ModelSpec> {
        let spec = match &self.model {
            Some(name) if name.is_empty() => {
                return Err(UsageError(
                    "--model is empty: give a model folder or a hub id (owner/name), or leave \
                     it out for the bundled model"
                        .into(),
                )
                .into())
            }
            Some(name) => ModelSpec::parse(name, self.revision.as_deref())?,
            None => ModelSpec::default(),
        };
        match (&spec, &self.revision) {
            (ModelSpec::Hub { .. }, _) | (_, None) => Ok(spec),
            (ModelSpec::Local(path), Some(_)) => Err(UsageError(format!(
                "--revision applies to hub ids, and {} is a local folder; drop --revision",
                path.display()
            ))
            .into()),
            (_, Some(_)) => Err(UsageError(
                "--revision applies to hub ids, not to the bundled model; drop --revision".into(),
            )
            .into()),
        }
    }

    /// Every precision asked for (`bench` compares them), f32 if none.
    pub fn precisions(&self) -> Result<Vec<Precision>, UsageError> {
        let mut precisions: Vec<Precision> = self.precision.to_vec();
        match self.quantize {
            Some(Quantize::Int8) if precisions.iter().any(|p| *p != Precision::Int8) => {
                return Err(UsageError(
                    "--quantize int8 contradicts --precision; give one of them".into(),
                ))
            }
            Some(Quantize::Int8) => precisions = vec![Precision::Int8],
            None if precisions.is_empty() => precisions = vec![Precision::F32],
            None => {}
        }
        precisions.dedup();
        Ok(precisions)
    }

    /// The one precision `predict`, `batch` and `serve` run in.
    pub fn precision(&self) -> Result<Precision, UsageError> {
        match self.precisions()?.as_slice() {
            [precision] => Ok(*precision),
            _ => Err(UsageError(
                "--precision takes one value here; only `bench` compares several".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quantize {
    /// int8 weights per output channel and uint8 activations per token
    /// (x86 CPUs with AVX-512 VNNI or AVX2; elsewhere candle's Q8_0, blocks
    /// of 32).
    Int8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify texts given as arguments, or one per line on stdin.
    Predict(PredictArgs),
    /// Classify a JSONL stream: one result line per input line, in order.
    Batch(BatchArgs),
    /// Measure load time, latency, throughput and accuracy.
    Bench(BenchArgs),
    /// Serve the model over HTTP (TEI-compatible /predict, /classify,
    /// /health, /info, /metrics) with dynamic batching.
    Serve(ServeArgs),
    /// Print a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// Options for how results are printed.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Show only the N best labels in `scores` [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub top_k: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LongTextMode {
    /// Keep the first 512 tokens, as HF does.
    Truncate,
    /// Keep the last 512 tokens (HF's truncation_side="left"), where a
    /// review's verdict comes at its end.
    TruncateStart,
    /// Classify overlapping 512-token windows covering the whole text.
    Window,
}

/// What to do with texts longer than the model's 512 tokens.
#[derive(Debug, Clone, Args)]
pub struct LongTextArgs {
    /// `truncate` keeps the first 512 tokens (JSON says "truncated": true),
    /// `truncate-start` the last 512; `window` classifies the whole text in
    /// overlapping windows.
    #[arg(long, value_enum, default_value_t = LongTextMode::Truncate, value_name = "MODE")]
    pub long_text: LongTextMode,

    /// Tokens each window shares with the previous one (window mode only)
    /// [default: 128].
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u16).range(0..))]
    pub stride: Option<u16>,

    /// How window scores combine: `mean` averages them, `max` lets the most
    /// confident window decide (window mode only) [default: mean].
    #[arg(long, value_enum)]
    pub aggregate: Option<Aggregate>,
}

impl BatchArgs {
    /// The JSON field that holds the text; `--field` with `--input text`,
    /// where lines are not JSON, is refused rather than ignored.
    pub fn text_field(&self) -> Result<String, UsageError> {
        match (&self.field, self.format) {
            (Some(_), InputFormat::Text) => Err(UsageError(
                "--field names a JSON field, and --input text reads plain lines; drop --field"
                    .into(),
            )),
            (field, _) => Ok(field.clone().unwrap_or_else(|| "text".into())),
        }
    }

    /// The JSON field that holds a pair's second text, if pairs are read;
    /// refused with plain-text lines, and where it is the text's own field.
    pub fn pair_field(&self) -> Result<Option<String>, UsageError> {
        let Some(pair) = &self.pair_field else {
            return Ok(None);
        };
        if self.format == InputFormat::Text {
            return Err(UsageError(
                "--pair-field names a JSON field, and --input text reads plain lines".into(),
            ));
        }
        if *pair == self.text_field()? {
            return Err(UsageError(format!(
                "--pair-field {pair:?} is the text's own field: a pair needs two fields"
            )));
        }
        Ok(Some(pair.clone()))
    }
}

impl LongTextArgs {
    /// The policy asked for. `--stride` and `--aggregate` only mean
    /// something in window mode; given without it they are refused rather
    /// than silently ignored.
    pub fn mode(&self) -> Result<LongText, UsageError> {
        let truncation = match self.long_text {
            LongTextMode::Window => {
                return Ok(LongText::Window {
                    stride: self.stride.map_or(DEFAULT_STRIDE, usize::from),
                    aggregate: self.aggregate.unwrap_or_default(),
                })
            }
            LongTextMode::Truncate => LongText::Truncate,
            LongTextMode::TruncateStart => LongText::TruncateStart,
        };
        if self.stride.is_some() || self.aggregate.is_some() {
            return Err(UsageError(
                "--stride and --aggregate apply only with --long-text window".into(),
            ));
        }
        Ok(truncation)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default: expose it deliberately).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0: any free port; the ready line says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Padded tokens per forward pass (the longest sequence times the
    /// sequences, as TEI counts them).
    #[arg(long, default_value_t = defaults::MAX_BATCH_TOKENS as u32,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
    pub max_batch_tokens: u32,

    /// Sequences per forward pass (as `batch`'s default: 64 measured no
    /// faster under load and held more memory).
    #[arg(long, default_value_t = defaults::MAX_BATCH_REQUESTS as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub max_batch_requests: u32,

    /// Requests handled at once; more are answered 429 at once.
    #[arg(long, default_value_t = defaults::MAX_CONCURRENT_REQUESTS as u32,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub max_concurrent_requests: u32,

    /// Texts in one request; more are answered 422.
    #[arg(long, default_value_t = defaults::MAX_CLIENT_BATCH_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub max_client_batch_size: u32,

    /// Tokens one request may run through the model, every long-text
    /// window counted; more are answered 422.
    #[arg(long, default_value_t = defaults::MAX_REQUEST_TOKENS as u32,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 28)))]
    pub max_request_tokens: u32,

    /// Open connections at once (kept under the open-file limit); more
    /// wait to be accepted.
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub max_connections: u32,

    /// Seconds a connection has to send a request's headers, and the
    /// longest a keep-alive connection may sit idle.
    #[arg(long, default_value_t = defaults::HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub header_timeout: u64,

    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C;
    /// then the rest are dropped and the server exits.
    #[arg(long, default_value_t = defaults::SHUTDOWN_DEADLINE_SECS,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub shutdown_timeout: u64,

    /// Request body limit in bytes; larger bodies are answered 413.
    #[arg(long, default_value_t = defaults::PAYLOAD_LIMIT as u64,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub payload_limit: u64,

    /// Seconds before a request that has not been answered gets 408.
    #[arg(long, default_value_t = defaults::REQUEST_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout: u64,

    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(
        long,
        env = "SENTIMENT_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    #[command(flatten)]
    pub long_text: LongTextArgs,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Texts to classify. With none, reads one text per line from stdin.
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,

    /// Read the TEXT arguments two at a time, as text pairs for models
    /// trained on pairs (NLI): `--pairs PREMISE HYPOTHESIS [PREMISE
    /// HYPOTHESIS ...]`, each encoded as HF's tokenizer(text, text_pair).
    #[arg(long)]
    pub pairs: bool,

    /// Print one JSON object per line: {"text","label","score","scores",...}.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub long_text: LongTextArgs,

    /// Texts per forward pass.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub batch_size: u32,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Input file; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// How to read each line.
    #[arg(long = "input", value_enum, default_value_t = InputFormat::Jsonl, value_name = "FORMAT")]
    pub format: InputFormat,

    /// The JSON field that holds the text (JSONL input only) [default: text].
    #[arg(long, value_name = "NAME")]
    pub field: Option<String>,

    /// The JSON field that holds the second text of a pair, for models
    /// trained on pairs (NLI, paraphrase): each line is classified as the
    /// pair (--field, --pair-field), as HF's tokenizer(text, text_pair)
    /// encodes it; a line without it gets an error record (JSONL input only).
    #[arg(long, value_name = "NAME")]
    pub pair_field: Option<String>,

    /// Texts per forward pass. Lines are sorted by length within a window of
    /// 16 batches, so each batch pads little, and written back in input order.
    #[arg(long, default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub batch_size: u32,

    /// Write results to FILE instead of stdout.
    #[arg(long = "output", short = 'o', value_name = "FILE")]
    pub output_file: Option<PathBuf>,

    /// Continue an interrupted run: keep the complete lines already in
    /// --output FILE, skip that many input lines, and append the rest. The
    /// input must be the same as in the interrupted run.
    #[arg(long, requires = "output_file")]
    pub resume: bool,

    /// Exit 0 when the only failures are lines that became error records
    /// (for Spark's pipe and other callers that treat exit 1 as a crash).
    #[arg(long)]
    pub errors_ok: bool,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub long_text: LongTextArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Batch-1 latency at these token counts (special tokens included; at
    /// most the model's limit, 512 for BERT-style models).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128,256,512",
          value_parser = clap::value_parser!(u32).range(2..=65536))]
    pub lengths: Vec<u32>,

    /// Throughput over the dataset at these batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32",
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub batch_sizes: Vec<u32>,

    /// Timed runs per latency figure.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub runs: u32,

    /// Untimed warm-up runs before each latency figure.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub warmup: u32,

    /// JSONL dataset with "text" and optional "label" [default: SST-2 dev, built in].
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,

    /// Timed passes over the dataset per batch size; the median is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub passes: u32,

    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Console)]
    pub format: ReportFormat,

    /// Also draw the report as an SVG chart into FILE: latency against
    /// tokens and throughput against batch size, one series per device ×
    /// precision.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// An empty variable means unset, as huggingface_hub reads its HF_*
/// variables: `SENTIMENT_MODEL=` is the bundled model, not a folder named
/// "". Removed here, before clap (which reads `SENTIMENT_MODEL` and
/// `SENTIMENT_API_KEY` itself) and every other reader sees them, for each
/// variable this program or its libraries read: `SENTIMENT_*`, `HF_*`,
/// `RAYON_NUM_THREADS`, `CANDLE_NUM_THREADS`, `TOKENIZERS_PARALLELISM`.
pub fn forget_empty_variables() {
    let ours = |name: &str| {
        name.starts_with("SENTIMENT_")
            || name.starts_with("HF_")
            || matches!(
                name,
                "RAYON_NUM_THREADS" | "CANDLE_NUM_THREADS" | "TOKENIZERS_PARALLELISM"
            )
    };
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| value.is_empty() && name.to_str().is_some_and(ours))
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        // The process has one thread yet: nothing reads the environment
        // while it changes.
        std::env::remove_var(name);
    }
}

/// The hub timeouts: `SENTIMENT_HUB_CONNECT_TIMEOUT` and
/// `SENTIMENT_HUB_READ_TIMEOUT`, whole seconds from 1 (default 10 and 30);
/// any other value is a usage error rather than silently the default.
pub fn hub_timeouts() -> Result<sentiment::HubTimeouts, UsageError> {
    let mut timeouts = sentiment::HubTimeouts::default();
    for (name, slot) in [
        ("SENTIMENT_HUB_CONNECT_TIMEOUT", &mut timeouts.connect),
        ("SENTIMENT_HUB_READ_TIMEOUT", &mut timeouts.read),
    ] {
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let seconds = value
            .to_str()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| (1..=86_400).contains(s))
            .ok_or_else(|| {
                UsageError(format!(
                    "{name}={value:?}: expected whole seconds from 1 to 86400"
                ))
            })?;
        *slot = std::time::Duration::from_secs(seconds);
    }
    Ok(timeouts)
}

/// The CPU kernels the documented environment variables allow:
/// `SENTIMENT_KERNELS` (`portable`: what a CPU without AVX-512 runs;
/// `generic`: candle's ops, as on a GPU), `SENTIMENT_VECTOR_WIDTH` (`512` or
/// `256`: skip the width probe) and `SENTIMENT_BF16=emulate` (bf16's
/// numerics on any AVX-512 CPU). Other values mean the default.
pub fn kernel_options() -> KernelOptions {
    let var = |name| std::env::var(name).unwrap_or_default();
    KernelOptions {
        kernels: match var("SENTIMENT_KERNELS").as_str() {
            "portable" => KernelChoice::Portable,
            "generic" => KernelChoice::Generic,
            _ => KernelChoice::Fastest,
        },
        vector_width: match var("SENTIMENT_VECTOR_WIDTH").as_str() {
            "512" => VectorWidth::Bits512,
            "256" => VectorWidth::Bits256,
            _ => VectorWidth::Measure,
        },
        bf16_emulation: var("SENTIMENT_BF16") == "emulate",
    }
}
